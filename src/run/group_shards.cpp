#include "moeref/group_shards.hpp"

#include <algorithm>
#include <cstring>
#include <deque>
#include <limits>

#include "moeref/error.hpp"
#include "moeref/frame/group_slices.hpp"
#include "moeref/registry.hpp"

namespace moeref {

namespace {

const char* const kRangeAllowed = "FIRST:END, two integers with 0 <= FIRST < END <= G (the groups [FIRST, END))";

// A non-negative decimal integer, or -1.
int64_t parse_count(const std::string& text) {
  if (text.empty() || text.size() > 12) return -1;
  int64_t value = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return -1;
    value = value * 10 + (c - '0');
  }
  return value;
}

std::string range_text(int64_t first, int64_t end) {
  return "[" + std::to_string(first) + ", " + std::to_string(end) + ")";
}

// The shard's groups, read from its config "groups" record.
struct ShardGroups {
  int64_t first = 0;
  int64_t end = 0;
  int64_t of = 0;
  std::string inputs_digest;  // of the run's whole inputs (inputs_digest)
};

ShardGroups read_shard_groups(const GroupShard& shard) {
  const nlohmann::json& config = shard.trace.config;
  const std::string field = shard.source + ": config.groups";
  if (!config.is_object() || !config.contains("groups")) {
    fail_input(field, "missing",
               "a shard written by moeref run --groups FIRST:END (this trace is not a shard: it needs no merge)");
  }
  const nlohmann::json& groups = config["groups"];
  auto integer = [&](const char* key) -> int64_t {
    if (!groups.is_object() || !groups.contains(key) || !groups[key].is_number_integer()) {
      fail_input(field, groups.dump().substr(0, 200), "{\"first\": FIRST, \"end\": END, \"of\": G, ...}, integers");
    }
    return groups[key].get<int64_t>();
  };
  ShardGroups read{integer("first"), integer("end"), integer("of"), ""};
  if (groups.size() != 4 || !groups.contains("inputs_digest") || !groups["inputs_digest"].is_string() ||
      !(read.first >= 0 && read.first < read.end && read.end <= read.of)) {
    fail_input(field, groups.dump().substr(0, 200),
               "{\"first\": FIRST, \"end\": END, \"of\": G, \"inputs_digest\": TEXT} with 0 <= FIRST < END <= G");
  }
  read.inputs_digest = groups["inputs_digest"].get<std::string>();
  return read;
}

// The first place two JSON values differ, as a path below `path` ("config.hparams.x").
std::string first_difference(const nlohmann::json& a, const nlohmann::json& b, const std::string& path) {
  if (a.is_object() && b.is_object()) {
    for (auto it = a.begin(); it != a.end(); ++it) {
      if (!b.contains(it.key())) return path + "." + it.key();
      if (it.value() != b[it.key()]) return first_difference(it.value(), b[it.key()], path + "." + it.key());
    }
    for (auto it = b.begin(); it != b.end(); ++it) {
      if (!a.contains(it.key())) return path + "." + it.key();
    }
  }
  return path;
}

// The value at a path made by first_difference, or "absent".
std::string value_at(const nlohmann::json& root, const std::string& path, const std::string& root_name) {
  const nlohmann::json* at = &root;
  std::string rest = path.substr(root_name.size());
  while (!rest.empty()) {
    const size_t next = rest.find('.', 1);
    const std::string key = rest.substr(1, next == std::string::npos ? std::string::npos : next - 1);
    if (!at->is_object() || !at->contains(key)) return "absent";
    at = &(*at)[key];
    rest = next == std::string::npos ? "" : rest.substr(next);
  }
  return at->dump().substr(0, 120);
}

// Fails unless `value` is the same JSON in `shard` as in `first` (field "config", ...).
void require_same_json(const nlohmann::json& value, const nlohmann::json& expected, const std::string& field,
                       const GroupShard& shard, const GroupShard& first) {
  if (value == expected) return;
  const std::string path = first_difference(expected, value, field);
  fail_input(
      shard.source + ": " + path, value_at(value, path, field),
      value_at(expected, path, field) + " as in " + first.source + " (shards of one run differ only in config.groups)");
}

bool same_bits(const Tensor& a, const Tensor& b) {
  if (a.dims != b.dims || a.shape != b.shape || a.dtype != b.dtype) return false;
  if (a.dtype == DType::kInt32) return a.i32 == b.i32;
  return a.f32.size() == b.f32.size() &&
         (a.f32.empty() || std::memcmp(a.f32.data(), b.f32.data(), a.f32.size() * sizeof(float)) == 0);
}

// The first element at which two tensors of one shape differ, named ("[e=2]").
std::string first_different_element(const Tensor& a, const Tensor& b) {
  if (a.dims != b.dims || a.shape != b.shape || a.dtype != b.dtype) {
    return "dims, shape or dtype " + b.shape_string() + " " + dtype_name(b.dtype);
  }
  for (int64_t i = 0; i < a.num_elements(); ++i) {
    const size_t k = static_cast<size_t>(i);
    const bool differs =
        a.dtype == DType::kInt32 ? a.i32[k] != b.i32[k] : std::memcmp(&a.f32[k], &b.f32[k], sizeof(float)) != 0;
    if (differs) return "element " + (a.rank() == 0 ? std::string("[]") : a.named_index(i));
  }
  return "nothing";
}

// Joins one tensor, `field`, from its pieces (one per shard, in group order): along G
// when it has one, else the one value every shard agrees on. Frees the pieces.
Tensor merge_pieces(const std::vector<GroupShard>& shards, const std::vector<ShardGroups>& groups,
                    const std::vector<Tensor*>& pieces, const std::string& field) {
  Tensor& first = *pieces.front();
  const int64_t axis = group_axis(first);
  for (size_t s = 0; s < pieces.size(); ++s) {
    const Tensor& piece = *pieces[s];
    if (axis < 0) {
      if (!same_bits(first, piece)) {
        fail_input(shards[s].source + ": " + field, first_different_element(first, piece) + " differs",
                   "bit for bit the value in " + shards.front().source +
                       " (it has no G dim: every shard computes it over all groups)");
      }
      continue;
    }
    const int64_t expected = groups[s].end - groups[s].first;
    std::vector<int64_t> others = piece.shape, first_others = first.shape;
    if (group_axis(piece) == axis && others.size() == first_others.size()) {
      others[static_cast<size_t>(axis)] = first_others[static_cast<size_t>(axis)] = 0;
    }
    if (piece.dims != first.dims || piece.dtype != first.dtype || others != first_others ||
        piece.shape[static_cast<size_t>(axis)] != expected) {
      fail_input(shards[s].source + ": " + field, piece.shape_string() + " " + dtype_name(piece.dtype),
                 "the dims and dtype of " + shards.front().source + "'s, " + std::to_string(expected) + " groups (G " +
                     range_text(groups[s].first, groups[s].end) + ")");
    }
  }
  Tensor merged;
  if (axis < 0) {
    merged = std::move(first);
  } else {
    merged = concat_groups(std::vector<const Tensor*>(pieces.begin(), pieces.end()));
  }
  for (Tensor* piece : pieces) *piece = Tensor();
  return merged;
}

std::vector<std::string> names_of(const std::deque<NamedTensor>& list, bool only_with_groups) {
  std::vector<std::string> names;
  for (const NamedTensor& named : list) {
    if (!only_with_groups || group_axis(named.tensor) >= 0) names.push_back(named.name);
  }
  return names;
}

// "a, b, c", at most 200 characters, for messages.
std::string listed(const std::vector<std::string>& names) {
  std::string out;
  for (const std::string& name : names) out += (out.empty() ? "" : ", ") + name;
  return out.substr(0, 200);
}

// Fails unless every shard holds the same steps, by name and order, and the inputs
// with a G dim of the shard that holds group 0 (which alone holds the others).
void require_same_names(const std::vector<GroupShard>& shards) {
  const GroupShard& head = shards.front();
  for (size_t s = 0; s < shards.size(); ++s) {
    const std::vector<std::string> steps = names_of(shards[s].trace.steps, false);
    const std::vector<std::string> expected_steps = names_of(head.trace.steps, false);
    if (steps != expected_steps) {
      fail_input(shards[s].source + ": steps", listed(steps), listed(expected_steps) + " as in " + head.source);
    }
    const std::vector<std::string> inputs = names_of(shards[s].trace.inputs, s > 0);
    const std::vector<std::string> expected_inputs = names_of(head.trace.inputs, s > 0);
    if (inputs != expected_inputs) {
      fail_input(shards[s].source + ": inputs", listed(inputs),
                 listed(expected_inputs) + " as in " + head.source +
                     (s > 0 ? " (with a G dim; only the shard of group 0 holds the others)" : ""));
    }
  }
}

}  // namespace

GroupRange parse_group_range(const std::string& text, const std::string& field) {
  const size_t colon = text.find(':');
  if (colon == std::string::npos) fail_input(field, "\"" + text + "\"", kRangeAllowed);
  const int64_t first = parse_count(text.substr(0, colon));
  const int64_t end = parse_count(text.substr(colon + 1));
  if (first < 0 || end < 0 || first >= end || end > std::numeric_limits<int32_t>::max()) {
    fail_input(field, "\"" + text + "\"", kRangeAllowed);
  }
  return {first, end};
}

void check_group_shards_supported(const Config& config) {
  if (config.spec == nullptr || config.spec->group_shards) return;
  std::string supported;
  for (const VariantSpec& spec : all_variants()) {
    if (spec.group_shards) supported += (supported.empty() ? "" : ", ") + spec.id;
  }
  fail_input("--groups", "variant \"" + config.variant + "\"",
             "a variant whose groups stay independent from its gating to its outputs, so that shards merge exactly: " +
                 supported + " (spec/sharding.md says why the others cannot be split)");
}

Trace merge_group_shards(std::vector<GroupShard> shards) {
  if (shards.empty()) fail_input("shards", "none", "at least one shard trace");
  std::vector<ShardGroups> groups;
  for (const GroupShard& shard : shards) groups.push_back(read_shard_groups(shard));

  // One config, every part but "groups".
  auto without_groups = [](nlohmann::json config) {
    config.erase("groups");
    return config;
  };
  const GroupShard& reference = shards.front();
  const nlohmann::json config = without_groups(reference.trace.config);
  for (size_t s = 0; s < shards.size(); ++s) {
    const GroupShard& shard = shards[s];
    require_same_json(without_groups(shard.trace.config), config, "config", shard, reference);
    if (groups[s].of != groups.front().of) {
      fail_input(shard.source + ": config.groups.of", std::to_string(groups[s].of),
                 std::to_string(groups.front().of) + " as in " + reference.source +
                     " (shards of one run split the same G groups)");
    }
    if (groups[s].inputs_digest != groups.front().inputs_digest) {
      fail_input(shard.source + ": config.groups.inputs_digest", groups[s].inputs_digest,
                 groups.front().inputs_digest + " as in " + reference.source +
                     " (shards of one run are made from the same inputs; supplied inputs differ)");
    }
    require_same_json(shard.trace.generator, reference.trace.generator, "generator", shard, reference);
    require_same_json(shard.trace.capacity, reference.trace.capacity, "capacity", shard, reference);
    require_same_json(shard.trace.check, reference.trace.check, "check", shard, reference);
  }

  // Every group exactly once, shards in group order.
  std::vector<size_t> order(shards.size());
  for (size_t s = 0; s < order.size(); ++s) order[s] = s;
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return groups[a].first < groups[b].first; });
  std::string coverage;
  for (size_t s : order) {
    coverage += (coverage.empty() ? "" : ", ") + shards[s].source + " " + range_text(groups[s].first, groups[s].end);
  }
  const std::string allowed = "shards that hold each of the groups [0, " + std::to_string(groups.front().of) +
                              ") exactly once; given: " + coverage;
  int64_t covered = 0;
  for (size_t i = 0; i < order.size(); ++i) {
    const ShardGroups& at = groups[order[i]];
    if (at.first > covered) fail_input("shards", "groups " + range_text(covered, at.first) + " in no shard", allowed);
    if (at.first < covered) {
      fail_input("shards",
                 "groups " + range_text(at.first, std::min(covered, at.end)) + " in both " +
                     shards[order[i - 1]].source + " and " + shards[order[i]].source,
                 allowed);
    }
    covered = at.end;
  }
  if (covered != groups.front().of) {
    fail_input("shards", "groups " + range_text(covered, groups.front().of) + " in no shard", allowed);
  }
  std::vector<GroupShard> sorted;
  std::vector<ShardGroups> sorted_groups;
  for (size_t s : order) {
    sorted.push_back(std::move(shards[s]));
    sorted_groups.push_back(groups[s]);
  }

  // The same tensors, reads and losses in every shard.
  require_same_names(sorted);
  for (const GroupShard& shard : sorted) {
    if (shard.trace.reads != sorted.front().trace.reads) {
      fail_input(shard.source + ": reads", "different step dependencies", "those of " + sorted.front().source);
    }
    const auto& losses = shard.trace.losses;
    const auto& expected = sorted.front().trace.losses;
    for (size_t i = 0; i < std::max(losses.size(), expected.size()); ++i) {
      const bool same = i < losses.size() && i < expected.size() && losses[i].first == expected[i].first &&
                        std::memcmp(&losses[i].second, &expected[i].second, sizeof(float)) == 0;
      if (!same) {
        fail_input(
            shard.source + ": losses", i < losses.size() ? losses[i].first : "fewer losses",
            "bit for bit the losses of " + sorted.front().source + " (every shard computes them over all groups)");
      }
    }
  }

  Trace merged;
  merged.generator = sorted.front().trace.generator;
  merged.config = config;
  merged.capacity = sorted.front().trace.capacity;
  merged.check = sorted.front().trace.check;
  merged.losses = sorted.front().trace.losses;
  merged.reads = sorted.front().trace.reads;
  // Inputs: those with a G dim from every shard (in the same order in each), the
  // others from the shard of group 0 alone.
  std::vector<std::vector<Tensor*>> grouped_inputs(sorted.size());  // each shard's inputs with a G dim, in order
  for (size_t s = 0; s < sorted.size(); ++s) {
    for (NamedTensor& input : sorted[s].trace.inputs) {
      if (group_axis(input.tensor) >= 0) grouped_inputs[s].push_back(&input.tensor);
    }
  }
  std::vector<size_t> next_input(sorted.size(), 0);
  for (NamedTensor& input : sorted.front().trace.inputs) {
    std::vector<Tensor*> pieces = {&input.tensor};
    if (group_axis(input.tensor) >= 0) {
      for (size_t s = 1; s < sorted.size(); ++s) pieces.push_back(grouped_inputs[s][next_input[s]++]);
    }
    merged.inputs.push_back({input.name, merge_pieces(sorted, sorted_groups, pieces, "inputs." + input.name)});
  }
  for (size_t i = 0; i < sorted.front().trace.steps.size(); ++i) {
    std::vector<Tensor*> pieces;
    for (GroupShard& shard : sorted) pieces.push_back(&shard.trace.steps[i].tensor);
    const std::string name = sorted.front().trace.steps[i].name;
    merged.steps.push_back({name, merge_pieces(sorted, sorted_groups, pieces, "steps." + name)});
  }
  // The joined inputs are the ones every shard was made from.
  const std::string digest = inputs_digest(merged.inputs);
  if (digest != sorted_groups.front().inputs_digest) {
    fail_input("shards: the joined inputs' digest", digest,
               sorted_groups.front().inputs_digest +
                   ", the digest of the inputs every shard recorded (a shard's inputs were edited): " + coverage);
  }
  return merged;
}

}  // namespace moeref
