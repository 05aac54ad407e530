#include <algorithm>
#include <map>
#include <string>
#include <vector>

#include "moeref/json_number.hpp"
#include "moeref/streamed_file.hpp"
#include "moeref/trace.hpp"
#include "moeref/trace_data_text.hpp"
#include "moeref/trace_files.hpp"

namespace moeref {

void Trace::add_step(const std::string& name, Tensor tensor) { steps.push_back({name, std::move(tensor)}); }

void Trace::add_step(const std::string& name, Tensor tensor, std::vector<std::string> step_reads) {
  steps.push_back({name, std::move(tensor)});
  reads[name] = std::move(step_reads);
}

void Trace::add_loss(const std::string& name, float value) { losses.emplace_back(name, value); }

const Tensor* Trace::find_step(const std::string& name) const {
  for (const NamedTensor& step : steps) {
    if (step.name == name) return &step.tensor;
  }
  return nullptr;
}

const Tensor* Trace::find_input(const std::string& name) const {
  for (const NamedTensor& input : inputs) {
    if (input.name == name) return &input.tensor;
  }
  return nullptr;
}

namespace {

void append_json_string(std::string& out, const std::string& text) { out += nlohmann::json(text).dump(); }

void append_tensor_fields(std::string& out, const Tensor& tensor, const TraceSidecar* sidecar = nullptr,
                          const FormatProgress& progress = {}, const std::function<void()>& after_batch = {}) {
  out += "\"dims\":[";
  for (size_t i = 0; i < tensor.dims.size(); ++i) {
    if (i > 0) out += ',';
    append_json_string(out, tensor.dims[i]);
  }
  out += "],\"shape\":[";
  for (size_t i = 0; i < tensor.shape.size(); ++i) {
    if (i > 0) out += ',';
    out += std::to_string(tensor.shape[i]);
  }
  out += "],\"dtype\":\"";
  out += dtype_name(tensor.dtype);
  if (sidecar != nullptr) {
    out += "\",\"file\":";
    append_json_string(out, sidecar->file);
    out += ",\"sha256\":\"" + sidecar->sha256 + '"';
    return;
  }
  out += "\",\"data\":[";
  append_data_values(out, tensor, progress, after_batch);
  out += ']';
}

// The formatting progress of one tensor, reported under its name.
FormatProgress tensor_progress(const TraceFormatProgress& progress, const std::string& name) {
  if (!progress) return {};
  return [&progress, name](size_t done, size_t total) { progress(name, done, total); };
}

}  // namespace

void append_tensor_json(std::string& out, const Tensor& tensor) {
  out += '{';
  append_tensor_fields(out, tensor);
  out += '}';
}

std::string write_trace(const Trace& trace, const TraceFormatProgress& progress) {
  return write_trace_json(trace, {}, progress);
}

namespace {

// The trace's JSON text, appended to `out`; `hand_over(out)`, when given, is called
// whenever `out` has grown past a few MiB and takes (moves out) what it holds.
void format_trace_json(const Trace& trace, const std::vector<TraceSidecar>& sidecars,
                       const TraceFormatProgress& progress, std::string& out,
                       const std::function<void(std::string&)>& hand_over) {
  constexpr size_t kHandOverBytes = size_t{4} << 20;
  const std::function<void()> after_batch = [&out, &hand_over]() {
    if (hand_over && out.size() >= kHandOverBytes) hand_over(out);
  };
  std::map<const Tensor*, const TraceSidecar*> sidecar_of;
  for (const TraceSidecar& sidecar : sidecars) sidecar_of[sidecar.tensor] = &sidecar;
  const auto find_sidecar = [&sidecar_of](const Tensor& tensor) -> const TraceSidecar* {
    const auto found = sidecar_of.find(&tensor);
    return found == sidecar_of.end() ? nullptr : found->second;
  };
  // Fixed key order and one tensor per line: stable bytes, readable diffs.
  out += "{\n";
  out += "\"format\": \"" + std::string(kTraceFormat) + "\",\n";
  out += "\"format_version\": " + std::to_string(sidecars.empty() ? kTraceFormatVersion : kTraceFormatVersionSidecars) +
         ",\n";
  out += "\"generator\": " + trace.generator.dump() + ",\n";
  out += "\"config\": " + trace.config.dump() + ",\n";
  out += "\"capacity\": " + trace.capacity.dump() + ",\n";
  if (!trace.check.empty()) out += "\"check\": " + trace.check.dump() + ",\n";
  // JSON objects have no order, and readers (nlohmann's included) sort keys: write
  // losses and inputs sorted by name so that write(read(trace)) == trace.
  std::vector<std::pair<std::string, float>> losses = trace.losses;
  std::stable_sort(losses.begin(), losses.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  std::vector<const NamedTensor*> inputs;
  for (const NamedTensor& input : trace.inputs) inputs.push_back(&input);
  std::stable_sort(inputs.begin(), inputs.end(),
                   [](const NamedTensor* a, const NamedTensor* b) { return a->name < b->name; });
  out += "\"losses\": {";
  for (size_t i = 0; i < losses.size(); ++i) {
    out += i > 0 ? ", " : "";
    append_json_string(out, losses[i].first);
    out += ": ";
    append_float32(out, losses[i].second);
  }
  out += "},\n\"inputs\": {";
  for (size_t i = 0; i < inputs.size(); ++i) {
    out += i > 0 ? ",\n  " : "\n  ";
    append_json_string(out, inputs[i]->name);
    out += ": {";
    append_tensor_fields(out, inputs[i]->tensor, find_sidecar(inputs[i]->tensor),
                         tensor_progress(progress, "inputs." + inputs[i]->name), after_batch);
    out += '}';
    after_batch();  // many small tensors add up too
  }
  out += trace.inputs.empty() ? "},\n" : "\n},\n";
  out += "\"steps\": [";
  for (size_t i = 0; i < trace.steps.size(); ++i) {
    out += i > 0 ? ",\n  {\"name\":" : "\n  {\"name\":";
    append_json_string(out, trace.steps[i].name);
    out += ',';
    const auto step_reads = trace.reads.find(trace.steps[i].name);
    if (step_reads != trace.reads.end()) {
      out += "\"reads\":[";
      for (size_t k = 0; k < step_reads->second.size(); ++k) {
        if (k > 0) out += ',';
        append_json_string(out, step_reads->second[k]);
      }
      out += "],";
    }
    append_tensor_fields(out, trace.steps[i].tensor, find_sidecar(trace.steps[i].tensor),
                         tensor_progress(progress, trace.steps[i].name), after_batch);
    out += '}';
    after_batch();
  }
  out += trace.steps.empty() ? "]\n}\n" : "\n]\n}\n";
}

}  // namespace

std::string write_trace_json(const Trace& trace, const std::vector<TraceSidecar>& sidecars,
                             const TraceFormatProgress& progress) {
  std::string out;
  format_trace_json(trace, sidecars, progress, out, {});
  return out;
}

void write_trace_json_to(StreamedFile& file, const Trace& trace, const std::vector<TraceSidecar>& sidecars,
                         const TraceFormatProgress& progress) {
  std::string out;
  format_trace_json(trace, sidecars, progress, out, [&file](std::string& text) {
    file.put(std::move(text));
    text.clear();
  });
  file.put(std::move(out));
}

}  // namespace moeref
