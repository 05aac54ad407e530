#include <cmath>
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

// A tensor's data read by parse_json_document: same checks as the DOM path.
void fill_from_data_array(Tensor& tensor, int64_t count, const DataArray& array, const std::string& field) {
  if (!array.error.empty())
    fail_input(field + ".data", array.error, "numbers, or \"NaN\", \"Infinity\", \"-Infinity\"");
  if (static_cast<int64_t>(array.values.size()) != count) {
    fail_input(field + ".data", std::to_string(array.values.size()) + " values",
               "an array of " + std::to_string(count) + " values (the product of shape)");
  }
  if (tensor.dtype == DType::kFloat32) {
    tensor.f32.resize(static_cast<size_t>(count));
    for (int64_t i = 0; i < count; ++i)
      tensor.f32[static_cast<size_t>(i)] = static_cast<float>(array.values[static_cast<size_t>(i)]);
    return;
  }
  if (!array.all_integers) {
    fail_input(field + ".data", "a value written with a fraction, an exponent or as a string", "int32 integers");
  }
  tensor.i32.resize(static_cast<size_t>(count));
  for (int64_t i = 0; i < count; ++i) {
    const double item = array.values[static_cast<size_t>(i)];
    if (item < std::numeric_limits<int32_t>::min() || item > std::numeric_limits<int32_t>::max()) {
      fail_input(field + tensor.named_index(i), std::to_string(static_cast<int64_t>(item)), "an int32 integer");
    }
    tensor.i32[static_cast<size_t>(i)] = static_cast<int32_t>(item);
  }
}

}  // namespace

Tensor tensor_from_json(const nlohmann::json& value, const std::string& field, const DataArrays* arrays) {
  if (!value.is_object()) {
    fail_input(field, std::string("a JSON ") + value.type_name(), "a tensor object {dims, shape, dtype, data}");
  }
  for (auto it = value.begin(); it != value.end(); ++it) {
    if (it.key() != "dims" && it.key() != "shape" && it.key() != "dtype" && it.key() != "data" && it.key() != "name" &&
        it.key() != "reads") {
      fail_input(field + "." + it.key(), "an unknown tensor field", "name, reads, dims, shape, dtype, data");
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
  if (data.is_object() && data.contains(kDataArrayPlaceholder) && arrays != nullptr) {
    fill_from_data_array(tensor, count, (*arrays)[data[kDataArrayPlaceholder].get<size_t>()], field);
    return tensor;
  }
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
      // An unsigned JSON integer above INT64_MAX would wrap in get<int64_t>(): test it first.
      const bool fits = item.is_number_unsigned()
                            ? item.get<uint64_t>() <= static_cast<uint64_t>(std::numeric_limits<int32_t>::max())
                            : item.is_number_integer() && item.get<int64_t>() >= std::numeric_limits<int32_t>::min() &&
                                  item.get<int64_t>() <= std::numeric_limits<int32_t>::max();
      if (!fits) {
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

Trace trace_from_json(const nlohmann::json& doc, const std::string& source_name, const DataArrays* arrays) {
  if (!looks_like_trace(doc)) {
    throw InputError(source_name + ": not a moeref trace (field \"format\" must be \"" + kTraceFormat + "\")");
  }
  if (!doc.contains("format_version")) {
    fail_input(source_name + ": format_version", "missing", std::to_string(kTraceFormatVersion));
  }
  const nlohmann::json& version = doc["format_version"];
  if (!version.is_number_integer() || version.get<int64_t>() != kTraceFormatVersion) {
    fail_input(source_name + ": format_version", version.dump(), std::to_string(kTraceFormatVersion));
  }
  Trace trace;
  if (doc.contains("generator")) trace.generator = doc["generator"];
  if (doc.contains("check")) {
    if (!doc["check"].is_object())
      fail_input(source_name + ": check", doc["check"].dump(), "an object {precision, tolerances}");
    trace.check = doc["check"];
  }
  if (doc.contains("config")) {
    if (!doc["config"].is_object()) fail_input(source_name + ": config", doc["config"].dump(), "an object");
    trace.config = doc["config"];
    if (trace.config.contains("variant") && !trace.config["variant"].is_string()) {
      fail_input(source_name + ": config.variant", trace.config["variant"].dump(), "a variant id string");
    }
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
      trace.inputs.push_back({it.key(), tensor_from_json(it.value(), "inputs." + it.key(), arrays)});
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
      Tensor tensor = tensor_from_json(steps[i], "steps." + name, arrays);
      if (!steps[i].contains("reads")) {
        trace.add_step(name, std::move(tensor));
        continue;
      }
      // reads: the steps and "inputs.NAME" this step read (spec/trace-format.md). A
      // candidate edited from a golden may have dropped some of them: names are
      // not required to exist.
      const nlohmann::json& reads = steps[i]["reads"];
      std::vector<std::string> names;
      const std::string allowed = "an array of step names and \"inputs.NAME\" strings";
      if (!reads.is_array()) fail_input("steps." + name + ".reads", reads.dump().substr(0, 80), allowed);
      for (const nlohmann::json& read : reads) {
        if (!read.is_string()) fail_input("steps." + name + ".reads", read.dump().substr(0, 80), allowed);
        names.push_back(read.get<std::string>());
      }
      trace.add_step(name, std::move(tensor), std::move(names));
    }
  }
  return trace;
}

Trace read_trace_file(const std::string& path) {
  const ParsedDocument parsed = parse_json_document(read_whole_file(path, "trace file"), "trace file " + path);
  return trace_from_json(parsed.doc, "trace file " + path, &parsed.arrays);
}

}  // namespace moeref
