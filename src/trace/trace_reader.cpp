#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <optional>
#include <string>

#include "moeref/atomic_file.hpp"
#include "moeref/error.hpp"
#include "moeref/json_number.hpp"
#include "moeref/trace.hpp"
#include "moeref/trace_files.hpp"

namespace moeref {

namespace {

// More elements than this in one tensor is taken as a corrupt file, not a request.
constexpr int64_t kMaxTensorElements = int64_t{1} << 31;

const nlohmann::json& required(const nlohmann::json& object, const char* key, const std::string& field) {
  if (!object.contains(key)) fail_input(field + "." + key, "missing", "a required field");
  return object[key];
}

// The array that a {"$data_array": k} placeholder, as parse_json_document leaves it, stands
// for; nullptr for any other value (a hand-written placeholder with a bad index included).
const DataArray* placeholder_array(const nlohmann::json& value, const DataArrays* arrays) {
  if (arrays == nullptr || !value.is_object() || value.size() != 1 || !value.contains(kDataArrayPlaceholder)) {
    return nullptr;
  }
  const nlohmann::json& index = value[kDataArrayPlaceholder];
  if (!index.is_number_unsigned() || index.get<uint64_t>() >= arrays->size()) return nullptr;
  return &(*arrays)[index.get<size_t>()];
}

// parse_json_document lifts every array under a "data" key, wherever it is. Outside tensors
// (a backend's generator, say) the numbers go back into the JSON, as moeref reads any JSON
// number: integers, or floats rounded to float32, with NaN and infinities as strings.
nlohmann::json with_data_arrays_restored(const nlohmann::json& value, const DataArrays* arrays,
                                         const std::string& field) {
  if (const DataArray* array = placeholder_array(value, arrays)) {
    if (!array->error.empty()) {
      fail_input(field, array->error,
                 "numbers, or \"NaN\", \"Infinity\", \"-Infinity\" (an array under a \"data\" key)");
    }
    nlohmann::json numbers = nlohmann::json::array();
    for (size_t i = 0; i < array->size(); ++i) {
      const double item = array->at(i);
      if (std::isnan(item)) {
        numbers.push_back("NaN");
      } else if (std::isinf(item)) {
        numbers.push_back(item > 0 ? "Infinity" : "-Infinity");
      } else if (array->all_integers && std::fabs(item) < 9.2e18) {
        numbers.push_back(static_cast<int64_t>(item));
      } else {
        numbers.push_back(item);
      }
    }
    return numbers;
  }
  if (value.is_object()) {
    nlohmann::json restored = nlohmann::json::object();
    for (auto it = value.begin(); it != value.end(); ++it) {
      restored[it.key()] = with_data_arrays_restored(it.value(), arrays, field + "." + it.key());
    }
    return restored;
  }
  if (value.is_array()) {
    nlohmann::json restored = nlohmann::json::array();
    for (size_t i = 0; i < value.size(); ++i) {
      restored.push_back(with_data_arrays_restored(value[i], arrays, field + "[" + std::to_string(i) + "]"));
    }
    return restored;
  }
  return value;
}

}  // namespace

namespace {

// A tensor's data read by parse_json_document: same checks as the DOM path.
// `owned`, when given, is `array` itself, which the reader may empty: its float32 values
// move into the tensor, and int32 or double ones are freed once converted.
void fill_from_data_array(Tensor& tensor, int64_t count, const DataArray& array, const std::string& field,
                          DataArray* owned) {
  if (!array.error.empty())
    fail_input(field + ".data", array.error, "numbers, or \"NaN\", \"Infinity\", \"-Infinity\"");
  if (static_cast<int64_t>(array.size()) != count) {
    fail_input(field + ".data", std::to_string(array.size()) + " values",
               "an array of " + std::to_string(count) + " values (the product of shape)");
  }
  if (tensor.dtype == DType::kFloat32) {
    if (array.in_floats) {
      if (owned != nullptr) {
        tensor.f32 = std::move(owned->floats);
      } else {
        tensor.f32 = array.floats;
      }
      return;
    }
    tensor.f32.resize(static_cast<size_t>(count));
    for (int64_t i = 0; i < count; ++i)
      tensor.f32[static_cast<size_t>(i)] = static_cast<float>(array.values[static_cast<size_t>(i)]);
    if (owned != nullptr) *owned = DataArray();
    return;
  }
  if (!array.all_integers) {
    fail_input(field + ".data", "a value written with a fraction, an exponent or as a string", "int32 integers");
  }
  tensor.i32.resize(static_cast<size_t>(count));
  for (int64_t i = 0; i < count; ++i) {
    const double item = array.at(static_cast<size_t>(i));
    if (item < std::numeric_limits<int32_t>::min() || item > std::numeric_limits<int32_t>::max()) {
      // The value may be beyond int64 (an unsigned JSON integer): print the double, not a cast of it.
      char text[64];
      std::snprintf(text, sizeof(text), "%.0f", item);
      fail_input(field + tensor.named_index(i), text, "an int32 integer");
    }
    tensor.i32[static_cast<size_t>(i)] = static_cast<int32_t>(item);
  }
  if (owned != nullptr) *owned = DataArray();
}

}  // namespace

namespace {

bool is_sha256_hex(const std::string& text) {
  return text.size() == 64 &&
         std::all_of(text.begin(), text.end(), [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}

}  // namespace

namespace {

// tensor_from_json; with `owned` (the same arrays as `arrays`) the values are moved out
// of the data arrays (trace_from_json_consuming). With `deferred`, a sidecar is not read
// here: the tensor comes back with no values, and `deferred` says what to read into it.
Tensor read_tensor(const nlohmann::json& value, const std::string& field, const DataArrays* arrays, DataArrays* owned,
                   const SidecarStore* sidecars, std::optional<SidecarRead>* deferred = nullptr) {
  if (!value.is_object()) {
    fail_input(field, std::string("a JSON ") + value.type_name(), "a tensor object {dims, shape, dtype, data}");
  }
  for (auto it = value.begin(); it != value.end(); ++it) {
    if (it.key() != "dims" && it.key() != "shape" && it.key() != "dtype" && it.key() != "data" && it.key() != "name" &&
        it.key() != "reads" && it.key() != "file" && it.key() != "sha256") {
      fail_input(field + "." + it.key(), "an unknown tensor field",
                 "name, reads, dims, shape, dtype, data (or file, sha256)");
    }
  }
  // Neither is reported below as a missing "data".
  if (value.contains("data") && value.contains("file")) {
    fail_input(field, "both \"data\" and \"file\"",
               "exactly one of \"data\" (the values inline) and \"file\" (a .npy sidecar with its \"sha256\")");
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
  if (value.contains("file")) {
    const nlohmann::json& file = value["file"];
    if (!file.is_string()) fail_input(field + ".file", file.dump().substr(0, 80), "a relative path string");
    const nlohmann::json& sha256 = required(value, "sha256", field);
    if (!sha256.is_string() || !is_sha256_hex(sha256.get<std::string>())) {
      fail_input(field + ".sha256", sha256.dump().substr(0, 80), "64 lowercase hex digits");
    }
    check_sidecar_path(file.get<std::string>(), field + ".file");
    if (sidecars == nullptr) {
      fail_input(field + ".file", file.dump(),
                 "inline \"data\" here (this text was not read from a trace file, so "
                 "there is no directory to find sidecars in)");
    }
    if (deferred != nullptr) {
      *deferred = SidecarRead{nullptr, file.get<std::string>(), sha256.get<std::string>(), field};
    } else {
      sidecars->read_into(tensor, file.get<std::string>(), sha256.get<std::string>(), field);
    }
    return tensor;
  }
  if (value.contains("sha256")) {
    fail_input(field + ".sha256", "present without \"file\"", "a sha256 only beside \"file\"");
  }
  const nlohmann::json& data = required(value, "data", field);
  if (const DataArray* array = placeholder_array(data, arrays)) {
    DataArray* mine = owned != nullptr ? &(*owned)[static_cast<size_t>(array - arrays->data())] : nullptr;
    fill_from_data_array(tensor, count, *array, field, mine);
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

}  // namespace

bool looks_like_trace(const nlohmann::json& doc) {
  return doc.is_object() && doc.contains("format") && doc["format"] == kTraceFormat;
}

Tensor tensor_from_json(const nlohmann::json& value, const std::string& field, const DataArrays* arrays,
                        const SidecarStore* sidecars) {
  return read_tensor(value, field, arrays, nullptr, sidecars);
}

namespace {

// trace_from_json, moving the tensors' values out of `owned` when given.
Trace read_trace(const nlohmann::json& doc, const std::string& source_name, const DataArrays* arrays, DataArrays* owned,
                 const SidecarStore* sidecars) {
  if (!looks_like_trace(doc)) {
    throw InputError(source_name + ": not a moeref trace (field \"format\" must be \"" + kTraceFormat + "\")");
  }
  const std::string versions = "1 (every tensor inline) or 2 (sidecars)";
  if (!doc.contains("format_version")) fail_input(source_name + ": format_version", "missing", versions);
  const nlohmann::json& version = doc["format_version"];
  if (!version.is_number_integer() ||
      (version.get<int64_t>() != kTraceFormatVersion && version.get<int64_t>() != kTraceFormatVersionSidecars)) {
    fail_input(source_name + ": format_version", version.dump(), versions);
  }
  // Version 1 has no sidecars: a "file" there is a mislabelled trace.
  const SidecarStore* store = version.get<int64_t>() == kTraceFormatVersionSidecars ? sidecars : nullptr;
  const auto check_no_file = [&](const nlohmann::json& tensor, const std::string& field) {
    if (version.get<int64_t>() == kTraceFormatVersion && tensor.is_object() && tensor.contains("file")) {
      fail_input(field + ".file", "a sidecar in a format_version 1 trace",
                 "inline \"data\" (sidecars need \"format_version\": 2)");
    }
  };
  Trace trace;
  // The sidecars are read once every tensor is in place (two at a time: read_all), each
  // found by its list and position, as the lists still grow until then.
  struct Deferred {
    bool input;
    size_t index;
    SidecarRead read;
  };
  std::vector<Deferred> deferred;
  std::optional<SidecarRead> sidecar;
  if (doc.contains("generator"))
    trace.generator = with_data_arrays_restored(doc["generator"], arrays, source_name + ": generator");
  if (doc.contains("check")) {
    if (!doc["check"].is_object())
      fail_input(source_name + ": check", doc["check"].dump(), "an object {precision, tolerances}");
    trace.check = with_data_arrays_restored(doc["check"], arrays, source_name + ": check");
  }
  if (doc.contains("config")) {
    if (!doc["config"].is_object()) fail_input(source_name + ": config", doc["config"].dump(), "an object");
    trace.config = with_data_arrays_restored(doc["config"], arrays, source_name + ": config");
    if (trace.config.contains("variant") && !trace.config["variant"].is_string()) {
      fail_input(source_name + ": config.variant", trace.config["variant"].dump(), "a variant id string");
    }
  }
  if (doc.contains("capacity"))
    trace.capacity = with_data_arrays_restored(doc["capacity"], arrays, source_name + ": capacity");
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
      check_no_file(it.value(), "inputs." + it.key());
      sidecar.reset();
      trace.inputs.push_back({it.key(), read_tensor(it.value(), "inputs." + it.key(), arrays, owned, store, &sidecar)});
      if (sidecar) deferred.push_back({true, trace.inputs.size() - 1, std::move(*sidecar)});
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
      // A sidecar's errors name the step by position too, as a file's name does.
      const std::string tensor_field = steps[i].contains("file") ? field + " (" + name + ")" : "steps." + name;
      check_no_file(steps[i], tensor_field);
      sidecar.reset();
      Tensor tensor = read_tensor(steps[i], tensor_field, arrays, owned, store, &sidecar);
      if (sidecar) deferred.push_back({false, trace.steps.size(), std::move(*sidecar)});
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
  if (!deferred.empty()) {
    std::vector<SidecarRead> reads;
    for (Deferred& item : deferred) {
      item.read.tensor = item.input ? &trace.inputs[item.index].tensor : &trace.steps[item.index].tensor;
      reads.push_back(std::move(item.read));
    }
    store->read_all(reads);
  }
  return trace;
}

}  // namespace

Trace trace_from_json(const nlohmann::json& doc, const std::string& source_name, const DataArrays* arrays,
                      const SidecarStore* sidecars) {
  return read_trace(doc, source_name, arrays, nullptr, sidecars);
}

Trace trace_from_json_consuming(const nlohmann::json& doc, const std::string& source_name, DataArrays& arrays,
                                const SidecarStore* sidecars) {
  return read_trace(doc, source_name, &arrays, &arrays, sidecars);
}

Trace read_trace_file(const std::string& path) {
  TraceDocument document = read_trace_document(path, "trace file");
  return trace_from_json_consuming(document.parsed.doc, document.source_name, document.parsed.arrays,
                                   &document.sidecars);
}

}  // namespace moeref
