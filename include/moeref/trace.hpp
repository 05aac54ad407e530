// The golden trace: everything a run read, computed and returned, in order.
//
// Format (spec/trace-format.md, spec/trace.schema.json):
//   {"format": "moeref-trace", "format_version": 1, "generator": {...},
//    "config": {resolved config}, "capacity": {...}, "losses": {...},
//    "inputs": {name: tensor, ...}, "steps": [{"name": ..., tensor}, ...]}
// A tensor is {"dims": [...], "shape": [...], "dtype": "float32"|"int32",
// "data": [flat row-major]}; float32 values are written exactly. Format version 2 puts
// large tensors into .npy sidecar files ("file" and "sha256" instead of "data"; see
// trace_files.hpp); readers take both versions.
#pragma once

#include <deque>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "moeref/tensor.hpp"

namespace moeref {

class SidecarStore;

inline constexpr const char* kTraceFormat = "moeref-trace";
inline constexpr int kTraceFormatVersion = 1;

struct Trace {
  nlohmann::json generator = nlohmann::json::object();
  nlohmann::json config = nlohmann::json::object();    // resolved: every hparam, every dim
  nlohmann::json capacity = nlohmann::json::object();  // the capacity used and how it was found
  // Optional, written by backends into candidates: {"precision": "float32"|"bfloat16",
  // "tolerances": {step: {"atol": a, "rtol": r}}}. Empty in moeref's own traces.
  nlohmann::json check = nlohmann::json::object();
  std::vector<std::pair<std::string, float>> losses;  // in the order the source computes them
  // Deques: references to recorded tensors stay valid while more are added.
  std::deque<NamedTensor> inputs;  // supplied or generated, random draws included
  std::deque<NamedTensor> steps;   // every intermediate, in source order
  // What each step read, by step name: earlier steps, and inputs as "inputs.NAME"
  // (spec/trace-format.md, "Step dependencies"). A step absent here says nothing.
  std::map<std::string, std::vector<std::string>> reads;

  void add_step(const std::string& name, Tensor tensor);
  // A step with the names it reads (earlier steps, and inputs as "inputs.NAME").
  void add_step(const std::string& name, Tensor tensor, std::vector<std::string> reads);
  void add_loss(const std::string& name, float value);
  const Tensor* find_step(const std::string& name) const;
  const Tensor* find_input(const std::string& name) const;
};

// Called while a trace is formatted: the tensor ("inputs.x" or a step's name), and
// how many of its elements are formatted out of how many.
using TraceFormatProgress = std::function<void(const std::string& tensor, size_t done, size_t total)>;

// The exact text of a trace (byte-identical for identical traces, on any thread
// count: long data arrays are formatted on every thread, trace_data_text.hpp).
std::string write_trace(const Trace& trace, const TraceFormatProgress& progress = {});

// Appends one tensor object: {"dims":...,"shape":...,"dtype":...,"data":[...]}.
void append_tensor_json(std::string& out, const Tensor& tensor);

// The numbers of one "data" array, read by parse_json_document straight into numbers
// (each exactly the float32 its text denotes, or an integer), not one JSON value each.
struct DataArray {
  // The values, as float32 while every one is exactly a float32 (a trace's floats, small
  // integers; half the memory of doubles), else all as doubles.
  FloatBuffer floats;
  std::vector<double> values;
  bool in_floats = true;
  bool all_integers = true;
  std::string error;  // the first value that is not a number or a NaN/Infinity string

  size_t size() const { return in_floats ? floats.size() : values.size(); }
  double at(size_t i) const { return in_floats ? static_cast<double>(floats[i]) : values[i]; }
  void reserve(size_t count) { in_floats ? floats.reserve(count) : values.reserve(count); }
  void push(double value) {
    if (in_floats) {
      const float narrow = static_cast<float>(value);
      if (static_cast<double>(narrow) == value || value != value) {  // exact, or NaN
        floats.push_back(narrow);
        return;
      }
      values.reserve(floats.capacity());
      values.assign(floats.begin(), floats.end());
      floats = FloatBuffer();
      in_floats = false;
    }
    values.push_back(value);
  }
  // push of a value parsed as float32: always exact as one.
  void push_float(float value) {
    if (in_floats) {
      floats.push_back(value);
    } else {
      values.push_back(static_cast<double>(value));
    }
  }
};
using DataArrays = std::vector<DataArray>;

// In a parsed document, a "data" array is replaced by {"$data_array": index}.
inline constexpr const char* kDataArrayPlaceholder = "$data_array";

struct ParsedDocument {
  nlohmann::json doc;
  DataArrays arrays;
};

// Parses JSON text, moving every array under a "data" key into `arrays`: a
// trace of 50 million values reads in seconds with 4 bytes per float32 value.
// `release_before`, when given, is told from time to time that the text before an
// offset will not be read again unless the document turns out malformed (a
// MappedText hands those pages back).
ParsedDocument parse_json_document(std::string_view text, const std::string& source_name,
                                   const std::function<void(size_t)>& release_before = {});

// Reads a tensor object; `field` names it in error messages ("inputs.x").
// `arrays` resolves data placeholders left by parse_json_document; `sidecars` reads a
// tensor given by "file" and "sha256" (without it such a tensor is an error).
Tensor tensor_from_json(const nlohmann::json& value, const std::string& field, const DataArrays* arrays = nullptr,
                        const SidecarStore* sidecars = nullptr);

// True when `doc` says it is a moeref trace.
bool looks_like_trace(const nlohmann::json& doc);

// Reads and validates a trace document; throws InputError naming what is wrong.
Trace trace_from_json(const nlohmann::json& doc, const std::string& source_name, const DataArrays* arrays = nullptr,
                      const SidecarStore* sidecars = nullptr);
// The same, moving each tensor's values out of `arrays` instead of copying them (each
// array has one placeholder): for a document read once, whose arrays are then spent.
Trace trace_from_json_consuming(const nlohmann::json& doc, const std::string& source_name, DataArrays& arrays,
                                const SidecarStore* sidecars = nullptr);

// Parses JSON text into a full DOM (every float exact as float32, see
// parse_json_document); throws InputError naming `source_name` and the parse error.
nlohmann::json parse_json_text(const std::string& text, const std::string& source_name);

// Reads a trace in any form: a .json (format_version 1, or 2 with sidecars beside it) or
// a packed .tar (told by its ustar magic, not its name).
Trace read_trace_file(const std::string& path);

}  // namespace moeref
