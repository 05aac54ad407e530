#include <cmath>
#include <cstdlib>
#include <limits>
#include <string>

#include "moeref/atomic_file.hpp"
#include "moeref/error.hpp"
#include "moeref/json_number.hpp"
#include "moeref/trace.hpp"

namespace moeref {

namespace {

// More elements than this in one tensor is taken as a corrupt file, not a request.
constexpr int64_t kMaxTensorElements = int64_t{1} << 31;

const nlohmann::json& required(const nlohmann::json& object, const char* key, const std::string& field) {
  if (!object.contains(key)) fail_input(field + "." + key, "missing", "a required field");
  return object[key];
}

}  // namespace

namespace {

// nlohmann's DOM builder, except that a number with a fraction or exponent is
// stored as a double that rounds to the same float32 as the text itself.
// Rounding decimal -> double -> float32 differs from decimal -> float32 for a
// few texts (an exhaustive run over all float32 found 7.038531e-26 and its
// negative); nudging the double by an ulp keeps float32 data exact while
// hyperparameters read as doubles move by at most that ulp.
class ExactFloatDomParser : public nlohmann::detail::json_sax_dom_parser<nlohmann::json> {
 public:
  using json_sax_dom_parser::json_sax_dom_parser;

  bool number_float(double value, const std::string& text) {
    const float exact = std::strtof(text.c_str(), nullptr);
    while (static_cast<float>(value) != exact && std::isfinite(value)) {
      value = std::nextafter(value, static_cast<double>(exact));
    }
    return json_sax_dom_parser::number_float(value, text);
  }
};

}  // namespace

nlohmann::json parse_json_text(const std::string& text, const std::string& source_name) {
  try {
    nlohmann::json result;
    ExactFloatDomParser parser(result, true);
    nlohmann::json::sax_parse(text, &parser);
    return result;
  } catch (const nlohmann::json::exception& error) {
    throw InputError(source_name + ": not valid JSON (" + error.what() + ")");
  }
}

Tensor tensor_from_json(const nlohmann::json& value, const std::string& field) {
  if (!value.is_object()) {
    fail_input(field, std::string("a JSON ") + value.type_name(), "a tensor object {dims, shape, dtype, data}");
  }
  for (auto it = value.begin(); it != value.end(); ++it) {
    if (it.key() != "dims" && it.key() != "shape" && it.key() != "dtype" && it.key() != "data" && it.key() != "name") {
      fail_input(field + "." + it.key(), "an unknown tensor field", "name, dims, shape, dtype, data");
    }
  }
  Tensor tensor;
  const nlohmann::json& dims = required(value, "dims", field);
  if (!dims.is_array()) fail_input(field + ".dims", dims.dump(), "an array of dim names");
  for (const nlohmann::json& dim : dims) {
    if (!dim.is_string() || dim.get_ref<const std::string&>().empty()) {
      fail_input(field + ".dims", dims.dump(), "an array of non-empty dim names");
    }
    tensor.dims.push_back(dim.get<std::string>());
  }
  const nlohmann::json& shape = required(value, "shape", field);
  if (!shape.is_array() || shape.size() != dims.size()) {
    fail_input(field + ".shape", shape.dump(), "an array of " + std::to_string(dims.size()) + " extents, one per dim");
  }
  for (const nlohmann::json& extent : shape) {
    if (!extent.is_number_integer() || extent.get<int64_t>() < 0 ||
        extent.get<int64_t>() > std::numeric_limits<int32_t>::max()) {
      fail_input(field + ".shape", shape.dump(), "non-negative integer extents");
    }
    tensor.shape.push_back(extent.get<int64_t>());
  }
  const int64_t count = checked_num_elements(tensor.shape, field + ".shape");
  if (count > kMaxTensorElements) {
    fail_input(field + ".shape", shape.dump(), "at most 2^31 elements");
  }
  const nlohmann::json& dtype = required(value, "dtype", field);
  if (dtype == "float32") {
    tensor.dtype = DType::kFloat32;
  } else if (dtype == "int32") {
    tensor.dtype = DType::kInt32;
  } else {
    fail_input(field + ".dtype", dtype.dump(), "\"float32\" or \"int32\"");
  }
  const nlohmann::json& data = required(value, "data", field);
  if (!data.is_array() || static_cast<int64_t>(data.size()) != count) {
    fail_input(field + ".data", data.is_array() ? std::to_string(data.size()) + " values" : data.type_name(),
               "an array of " + std::to_string(count) + " values (the product of shape)");
  }
  if (tensor.dtype == DType::kFloat32) {
    tensor.f32.resize(static_cast<size_t>(count));
    for (int64_t i = 0; i < count; ++i) {
      tensor.f32[static_cast<size_t>(i)] = read_float32(data[static_cast<size_t>(i)], field + tensor.named_index(i));
    }
  } else {
    tensor.i32.resize(static_cast<size_t>(count));
    for (int64_t i = 0; i < count; ++i) {
      const nlohmann::json& item = data[static_cast<size_t>(i)];
      if (!item.is_number_integer() || item.get<int64_t>() < std::numeric_limits<int32_t>::min() ||
          item.get<int64_t>() > std::numeric_limits<int32_t>::max()) {
        fail_input(field + tensor.named_index(i), item.dump(), "an int32 integer");
      }
      tensor.i32[static_cast<size_t>(i)] = static_cast<int32_t>(item.get<int64_t>());
    }
  }
  return tensor;
}

bool looks_like_trace(const nlohmann::json& doc) {
  return doc.is_object() && doc.contains("format") && doc["format"] == kTraceFormat;
}

Trace trace_from_json(const nlohmann::json& doc, const std::string& source_name) {
  if (!looks_like_trace(doc)) {
    throw InputError(source_name + ": not a moeref trace (field \"format\" must be \"" + kTraceFormat + "\")");
  }
  const nlohmann::json& version = doc["format_version"];
  if (!version.is_number_integer() || version.get<int64_t>() != kTraceFormatVersion) {
    fail_input(source_name + ": format_version", version.dump(), std::to_string(kTraceFormatVersion));
  }
  Trace trace;
  if (doc.contains("generator")) trace.generator = doc["generator"];
  if (doc.contains("config")) {
    if (!doc["config"].is_object()) fail_input(source_name + ": config", doc["config"].dump(), "an object");
    trace.config = doc["config"];
  }
  if (doc.contains("capacity")) trace.capacity = doc["capacity"];
  if (doc.contains("losses")) {
    const nlohmann::json& losses = doc["losses"];
    if (!losses.is_object()) fail_input(source_name + ": losses", losses.dump(), "an object of named scalars");
    for (auto it = losses.begin(); it != losses.end(); ++it) {
      trace.add_loss(it.key(), read_float32(it.value(), "losses." + it.key()));
    }
  }
  if (doc.contains("inputs")) {
    const nlohmann::json& inputs = doc["inputs"];
    if (!inputs.is_object()) fail_input(source_name + ": inputs", inputs.type_name(), "an object of named tensors");
    for (auto it = inputs.begin(); it != inputs.end(); ++it) {
      trace.inputs.push_back({it.key(), tensor_from_json(it.value(), "inputs." + it.key())});
    }
  }
  if (doc.contains("steps")) {
    const nlohmann::json& steps = doc["steps"];
    if (!steps.is_array()) fail_input(source_name + ": steps", steps.type_name(), "an array of named tensors");
    for (size_t i = 0; i < steps.size(); ++i) {
      const std::string field = "steps[" + std::to_string(i) + "]";
      if (!steps[i].is_object() || !steps[i].contains("name") || !steps[i]["name"].is_string()) {
        fail_input(field + ".name",
                   steps[i].is_object() && steps[i].contains("name") ? steps[i]["name"].dump() : "missing",
                   "a step name string");
      }
      const std::string name = steps[i]["name"].get<std::string>();
      if (trace.find_step(name) != nullptr)
        fail_input(field + ".name", "\"" + name + "\"", "a name not used by an earlier step");
      trace.add_step(name, tensor_from_json(steps[i], "steps." + name));
    }
  }
  return trace;
}

Trace read_trace_file(const std::string& path) {
  const std::string text = read_whole_file(path, "trace file");
  return trace_from_json(parse_json_text(text, "trace file " + path), "trace file " + path);
}

}  // namespace moeref
