#include "moeref/config_reader.hpp"

#include <limits>

#include "moeref/atomic_file.hpp"
#include "moeref/error.hpp"
#include "moeref/registry.hpp"
#include "moeref/step_selection.hpp"
#include "moeref/trace.hpp"
#include "moeref/trace_files.hpp"

namespace moeref {

namespace {

// The largest extent moeref accepts for one dim; keeps every index in int32 and
// stops a typo from asking for terabytes.
constexpr int64_t kMaxDimExtent = 1 << 24;

const char* const kDimLetters[] = {"B", "L", "G", "S", "E", "C", "M", "H", "N", "K", "F"};

std::string registered_ids() {
  std::string out;
  for (const VariantSpec& spec : all_variants()) {
    if (!out.empty()) out += ", ";
    out += spec.id;
  }
  return out;
}

std::map<std::string, int64_t> read_dims(const nlohmann::json& dims) {
  if (!dims.is_object()) fail_input("dims", dims.dump(), "an object such as {\"G\": 2, \"S\": 8, \"E\": 4}");
  std::map<std::string, int64_t> out;
  for (auto it = dims.begin(); it != dims.end(); ++it) {
    bool known = false;
    for (const char* letter : kDimLetters) known = known || it.key() == letter;
    if (!known) fail_input("dims." + it.key(), "an unknown dim", "B, L, G, S, E, C, M, H, N, K, F");
    // C may be 0 (a capacity rule can give 0); every other extent is at least 1.
    const int64_t minimum = it.key() == "C" ? 0 : 1;
    const std::string allowed =
        "an integer in [" + std::to_string(minimum) + ", " + std::to_string(kMaxDimExtent) + "]";
    if (!it.value().is_number_integer()) fail_input("dims." + it.key(), it.value().dump(), allowed);
    const int64_t extent = it.value().get<int64_t>();
    if (extent < minimum || extent > kMaxDimExtent) {
      fail_input("dims." + it.key(), it.value().dump(), allowed);
    }
    out[it.key()] = extent;
  }
  return out;
}

}  // namespace

Config config_from_json(const nlohmann::json& input_doc, const std::string& source_name, const DataArrays* arrays,
                        const SidecarStore* sidecars) {
  if (!input_doc.is_object()) {
    fail_input(source_name, "a JSON " + std::string(input_doc.type_name()), "a JSON object (a config or a trace)");
  }
  nlohmann::json doc = input_doc;
  nlohmann::json inputs = doc.contains("inputs") ? doc["inputs"] : nlohmann::json(nullptr);
  if (looks_like_trace(doc)) {
    // Replaying a trace: its resolved config plus every input it recorded.
    if (!doc.contains("config")) fail_input(source_name + ": config", "missing", "the trace's resolved config object");
    doc = doc["config"];
    if (!doc.is_object()) fail_input("config", doc.dump(), "an object");
    if (doc.contains("inputs")) fail_input("config.inputs", "present", "inputs at the trace's top level only");
  } else {
    doc.erase("inputs");
  }

  if (doc.contains("groups")) {
    // A shard's config says which groups it holds; its inputs are cut to them.
    fail_input(source_name + ": config.groups", doc["groups"].dump(),
               "no \"groups\" in a config (moeref run --groups FIRST:END makes a shard); a shard's trace cannot be "
               "replayed: join the shards with moeref merge and replay the merged trace (spec/sharding.md)");
  }
  for (auto it = doc.begin(); it != doc.end(); ++it) {
    const std::string& key = it.key();
    if (key != "variant" && key != "scope" && key != "train" && key != "seed" && key != "dims" && key != "hparams" &&
        key != "steps" && key != "fast") {
      fail_input(key, "an unknown config field", "variant, scope, train, seed, dims, hparams, steps, fast, inputs");
    }
  }

  Config config;
  if (!doc.contains("variant") || !doc["variant"].is_string()) {
    fail_input("variant", doc.contains("variant") ? doc["variant"].dump() : "missing", registered_ids());
  }
  config.variant = doc["variant"].get<std::string>();
  config.spec = find_variant(config.variant);
  if (config.spec == nullptr) fail_input("variant", "\"" + config.variant + "\"", registered_ids());

  if (doc.contains("scope")) {
    const nlohmann::json& scope = doc["scope"];
    if (!scope.is_string() || (scope != "layer" && scope != "gating")) {
      fail_input("scope", scope.dump(), "\"layer\" (the whole MoE layer) or \"gating\" (the gating function only)");
    }
    config.scope = scope.get<std::string>();
  }
  if (doc.contains("train")) {
    if (!doc["train"].is_boolean()) fail_input("train", doc["train"].dump(), "true or false");
    config.train = doc["train"].get<bool>();
  }
  if (doc.contains("seed")) {
    const nlohmann::json& seed = doc["seed"];
    if (!seed.is_number_unsigned() && !(seed.is_number_integer() && seed.get<int64_t>() >= 0)) {
      fail_input("seed", seed.dump(), "an integer in [0, 2^64 - 1]");
    }
    config.seed = seed.get<uint64_t>();
  }
  if (!doc.contains("dims")) fail_input("dims", "missing", "an object of dim sizes");
  config.dims = read_dims(doc["dims"]);
  config.hparams = resolve_hparams(config.spec->hparams, doc.contains("hparams") ? doc["hparams"] : nlohmann::json(),
                                   &config.warnings);

  if (doc.contains("fast")) {
    if (!doc["fast"].is_boolean()) fail_input("fast", doc["fast"].dump(), "true or false");
    config.fast = doc["fast"].get<bool>();
  }
  if (doc.contains("steps")) {
    const nlohmann::json& steps = doc["steps"];
    if (!steps.is_array()) fail_input("steps", steps.dump().substr(0, 60), "an array of step names");
    for (const nlohmann::json& name : steps) {
      if (!name.is_string()) fail_input("steps", name.dump().substr(0, 60), "step names (strings)");
      config.steps.push_back(name.get<std::string>());
    }
    check_step_list(config.steps, "steps");
  }

  if (!inputs.is_null()) {
    if (!inputs.is_object()) fail_input("inputs", inputs.dump().substr(0, 60), "an object of named tensors");
    for (auto it = inputs.begin(); it != inputs.end(); ++it) {
      config.inputs[it.key()] = tensor_from_json(it.value(), "inputs." + it.key(), arrays, sidecars);
    }
  }
  return config;
}

Config load_config_file(const std::string& path) {
  const TraceDocument document = read_trace_document(path, "config file");
  return config_from_json(document.parsed.doc, document.source_name, &document.parsed.arrays, &document.sidecars);
}

}  // namespace moeref

namespace moeref {

Config config_from_trace(const Trace& trace, const std::string& source_name) {
  Config config = config_from_json(trace.config, source_name);
  for (const NamedTensor& input : trace.inputs) config.inputs[input.name] = input.tensor;
  return config;
}

}  // namespace moeref
