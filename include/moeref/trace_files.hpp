// Traces on disk in either form (spec/trace-format.md, "Version 2: sidecars"):
//   - one JSON file with every tensor inline (format_version 1);
//   - a JSON file plus .npy sidecars in NAME.arrays/ beside it (format_version 2), for
//     tensors of more than a threshold of elements, each with its sha256 in the JSON;
//   - a packed POSIX ustar archive: trace.json first, then trace.arrays/*.npy.
// Every reader takes all three.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "moeref/atomic_file.hpp"
#include "moeref/trace.hpp"

namespace moeref {

inline constexpr int kTraceFormatVersionSidecars = 2;
// `moeref run` puts tensors of more than this many elements into sidecars.
inline constexpr int64_t kDefaultSidecarsAbove = int64_t{1} << 20;

// One tensor written as a .npy file.
struct TraceSidecar {
  std::string file;  // relative to the JSON's directory, "/"-separated: "x.trace.arrays/inputs.x.npy"
  const Tensor* tensor = nullptr;
  std::string header;  // the .npy header; the tensor's bytes follow it
  std::string sha256;  // of header + bytes, lowercase hex (empty until computed)
  uint64_t file_size() const;
};

// "out/x.trace.json" -> "x.trace.arrays"; a name not ending in ".json" gets ".arrays" added.
std::string arrays_dir_name(const std::string& json_path);

// Which tensors go to sidecars, by key ("inputs.NAME" or "steps.NAME") and tensor.
using SidecarRule = std::function<bool(const std::string& key, const Tensor& tensor)>;
// Tensors of more than `sidecars_above` elements; std::nullopt: none (all inline).
SidecarRule sidecars_above_rule(std::optional<int64_t> sidecars_above);
// The tensors listed (as sidecar_keys returns them).
SidecarRule sidecar_keys_rule(const std::vector<std::string>& keys);

// The sidecars `rule` picks, in trace order (inputs sorted by name, then steps), named
// under `arrays_dir`: inputs.NAME.npy, steps.0012.NAME.npy (the index alone when the
// name has a character outside [A-Za-z0-9_.-]).
std::vector<TraceSidecar> plan_sidecars(const Trace& trace, const SidecarRule& rule, const std::string& arrays_dir);

// Fills in every sidecar's sha256 (in parallel; the digests do not depend on it).
void hash_sidecars(std::vector<TraceSidecar>& sidecars);

// The JSON text, with the (hashed) sidecars referenced by "file" and "sha256";
// format_version 2 when there are any, else exactly write_trace(trace).
std::string write_trace_json(const Trace& trace, const std::vector<TraceSidecar>& sidecars,
                             const TraceFormatProgress& formatting = {});
class StreamedFile;  // moeref/streamed_file.hpp
// The same text into `file`, handed over a few MiB at a time while the rest is formatted.
void write_trace_json_to(StreamedFile& file, const Trace& trace, const std::vector<TraceSidecar>& sidecars,
                         const TraceFormatProgress& formatting = {});

// Writes the trace to `json_path` with its sidecars in arrays_dir_name(json_path) beside
// it, atomically: sidecars go into a temporary directory and the JSON into a temporary
// file; then the directory is renamed into place (an old one moved aside, then removed)
// and the JSON renamed last. A trace with no sidecar is one JSON file (format_version 1),
// and an arrays directory left by an earlier trace at that path is removed. An output
// that is not a regular file (/dev/null) gets the all-inline JSON. `progress` is told
// the bytes written so far of the total (an all-inline JSON is written while it is
// formatted, StreamedFile: it is told once, when the file is complete). Returns the
// number of sidecars written. `formatting` is told how far the JSON's text is formatted
// (write_trace).
size_t write_trace_files(const std::string& json_path, const Trace& trace, const SidecarRule& rule,
                         const WriteProgressFn& progress = {}, const TraceFormatProgress& formatting = {});

// Writes the packed form: a ustar archive with trace.json, then trace.arrays/*.npy, every
// header with mtime 0, uid/gid 0 and mode 0644 (the same trace gives the same bytes).
void write_trace_tar(const std::string& tar_path, const Trace& trace, const SidecarRule& rule,
                     const WriteProgressFn& progress = {});

class OpenSidecar;  // src/trace/open_sidecar.hpp

// One sidecar tensor to read: its dims, shape and dtype already set from the JSON.
struct SidecarRead {
  Tensor* tensor = nullptr;
  std::string file, sha256;
  std::string field;  // names the tensor in errors, e.g. "steps[12] (combine_tensor)"
};

// Where the "file" of a sidecar tensor is read from: the directory holding the trace's
// JSON, or the members of a packed archive.
class SidecarStore {
 public:
  static SidecarStore directory(const std::string& json_path);
  static SidecarStore tar(const std::string& tar_path);

  // Reads the sidecar `file` into `tensor` (dims, shape and dtype already set from the
  // JSON), checking the path, the .npy header against them, the size and the sha256.
  // Errors name `field` (e.g. "steps[12] (combine_tensor)"), the file and what was found.
  void read_into(Tensor& tensor, const std::string& file, const std::string& sha256, const std::string& field) const;

  // read_into for each of `reads`, two files at a time: the largest go first into two
  // lanes of about equal bytes, each lane reads its files in the order given, and the
  // lanes' chunks are hashed side by side (Sha256::update_both). The errors are
  // read_into's; of several bad files, the one reported is the first the lanes reach.
  void read_all(const std::vector<SidecarRead>& reads) const;

  // The packed archive's trace.json (tar stores only).
  std::string read_tar_json() const;

 private:
  struct Region {
    uint64_t offset = 0;
    uint64_t size = 0;
  };
  // Opens a sidecar: checks its path, its .npy header against the tensor and its size,
  // sizes the tensor and hashes the header.
  std::unique_ptr<OpenSidecar> open_sidecar(const SidecarRead& read) const;

  std::string root_;  // the JSON's directory, or the archive's path
  bool is_tar_ = false;
  std::map<std::string, Region> members_;
};

// Checks a sidecar "file" value: relative, "/"-separated, no ".." component.
void check_sidecar_path(const std::string& file, const std::string& field);

// True when `path` starts like a ustar archive (the magic "ustar" at offset 257).
bool is_tar_file(const std::string& path);

// A trace file read in either form: the parsed JSON, and where its sidecars are.
struct TraceDocument {
  ParsedDocument parsed;
  SidecarStore sidecars;
  std::string source_name;  // "trace file PATH"
};
TraceDocument read_trace_document(const std::string& path, const std::string& what = "trace file");

// Which tensors of a trace document are sidecars: "inputs.NAME" and "steps.NAME".
std::vector<std::string> sidecar_keys(const nlohmann::json& doc);

}  // namespace moeref
