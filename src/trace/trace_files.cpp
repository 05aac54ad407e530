// Traces as files: the JSON with its .npy sidecars, written atomically, the packed
// archive, and the reading of sidecars from either (spec/trace-format.md, "Version 2").

#include "moeref/trace_files.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <map>
#include <set>

#include "moeref/error.hpp"
#include "moeref/mapped_text.hpp"
#include "moeref/npy.hpp"
#include "moeref/sha256.hpp"
#include "moeref/streamed_file.hpp"
#include "moeref/ustar.hpp"
#include "open_sidecar.hpp"

namespace moeref {

namespace {

constexpr const char* kPackedJsonName = "trace.json";
constexpr const char* kPackedArraysDir = "trace.arrays";

bool is_safe_name(const std::string& name) {
  return !name.empty() && std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '.' ||
           c == '-';
  });
}

// True when `dir` holds nothing but files named as sidecars are (inputs.*.npy, steps.*.npy):
// a directory an earlier trace left, which a new trace at its path may replace. Anything
// else there is the user's, and is never removed.
bool holds_only_sidecars(const std::string& dir) {
  std::error_code error;
  for (const auto& entry : std::filesystem::directory_iterator(dir, error)) {
    const std::string name = entry.path().filename().string();
    const bool sidecar_name = (name.rfind("inputs.", 0) == 0 || name.rfind("steps.", 0) == 0) && name.size() > 4 &&
                              name.compare(name.size() - 4, 4, ".npy") == 0;
    if (!sidecar_name || !entry.is_regular_file(error) || entry.is_symlink(error)) return false;
  }
  return !error;
}

std::string four_digits(size_t index) {
  char text[32];
  std::snprintf(text, sizeof(text), "%04zu", index);
  return text;
}

std::vector<const NamedTensor*> inputs_by_name(const Trace& trace) {
  std::vector<const NamedTensor*> inputs;
  for (const NamedTensor& input : trace.inputs) inputs.push_back(&input);
  std::stable_sort(inputs.begin(), inputs.end(),
                   [](const NamedTensor* a, const NamedTensor* b) { return a->name < b->name; });
  return inputs;
}

std::string parent_directory(const std::string& path) {
  const std::string parent = std::filesystem::path(path).parent_path().string();
  return parent.empty() ? "." : parent;
}

bool read_fully(int fd, char* buffer, size_t size, uint64_t offset) {
  while (size > 0) {
    const ssize_t got = ::pread(fd, buffer, std::min(size, size_t{1} << 30), static_cast<off_t>(offset));
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) return false;
    buffer += got;
    size -= static_cast<size_t>(got);
    offset += static_cast<uint64_t>(got);
  }
  return true;
}

// Writes one sidecar's header and bytes to `fd`, hashing them on the way when `hash`.
void write_sidecar_bytes(int fd, TraceSidecar& sidecar, bool hash, const std::string& what,
                         const std::function<void(size_t)>& wrote) {
  Sha256 digest;
  if (hash) digest.update(sidecar.header.data(), sidecar.header.size());
  write_all(fd, sidecar.header.data(), sidecar.header.size(), what);
  wrote(sidecar.header.size());
  const char* bytes = tensor_bytes(*sidecar.tensor);
  const size_t size = tensor_byte_size(*sidecar.tensor);
  for (size_t done = 0; done < size;) {
    const size_t chunk = std::min(kSidecarChunkSize, size - done);
    if (hash) digest.update(bytes + done, chunk);
    write_all(fd, bytes + done, chunk, what);
    done += chunk;
    wrote(chunk);
  }
  if (hash) sidecar.sha256 = digest.finish_hex();
}

void remove_quietly(const std::string& path) {
  std::error_code ignored;
  std::filesystem::remove_all(path, ignored);
}

}  // namespace

uint64_t TraceSidecar::file_size() const { return header.size() + tensor_byte_size(*tensor); }

std::string arrays_dir_name(const std::string& json_path) {
  std::string name = std::filesystem::path(json_path).filename().string();
  const std::string suffix = ".json";
  if (name.size() > suffix.size() && name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0) {
    name.resize(name.size() - suffix.size());
  }
  return name + ".arrays";
}

SidecarRule sidecars_above_rule(std::optional<int64_t> sidecars_above) {
  return [sidecars_above](const std::string&, const Tensor& tensor) {
    return sidecars_above.has_value() && tensor.num_elements() > *sidecars_above;
  };
}

SidecarRule sidecar_keys_rule(const std::vector<std::string>& keys) {
  std::set<std::string> chosen(keys.begin(), keys.end());
  return [chosen](const std::string& key, const Tensor&) { return chosen.count(key) > 0; };
}

std::vector<TraceSidecar> plan_sidecars(const Trace& trace, const SidecarRule& rule, const std::string& arrays_dir) {
  std::vector<TraceSidecar> sidecars;
  std::map<std::string, std::string> owner_of;  // file -> the tensor it holds, to refuse a second one
  const auto add = [&](const Tensor& tensor, const std::string& base_name, const std::string& key) {
    const std::string file = arrays_dir + "/" + base_name + ".npy";
    const auto [taken, fresh] = owner_of.emplace(file, key);
    if (!fresh) {
      // An input named by its position ("a b" -> inputs.0001) can meet one named so.
      fail_input(key + " (its sidecar file)", file,
                 "a file name no other tensor has; " + taken->second + " has it: rename one of the two inputs");
    }
    TraceSidecar sidecar;
    sidecar.file = arrays_dir + "/" + base_name + ".npy";
    sidecar.tensor = &tensor;
    sidecar.header = npy_header(tensor);
    sidecars.push_back(std::move(sidecar));
  };
  const std::vector<const NamedTensor*> inputs = inputs_by_name(trace);
  for (size_t i = 0; i < inputs.size(); ++i) {
    if (!rule("inputs." + inputs[i]->name, inputs[i]->tensor)) continue;
    add(inputs[i]->tensor, "inputs." + (is_safe_name(inputs[i]->name) ? inputs[i]->name : four_digits(i)),
        "inputs." + inputs[i]->name);
  }
  for (size_t i = 0; i < trace.steps.size(); ++i) {
    const NamedTensor& step = trace.steps[i];
    if (!rule("steps." + step.name, step.tensor)) continue;
    add(step.tensor, "steps." + four_digits(i) + (is_safe_name(step.name) ? "." + step.name : ""),
        "steps." + step.name);
  }
  return sidecars;
}

void hash_sidecars(std::vector<TraceSidecar>& sidecars) {
  const auto count = static_cast<int64_t>(sidecars.size());
#pragma omp parallel for schedule(dynamic)
  for (int64_t i = 0; i < count; ++i) {
    TraceSidecar& sidecar = sidecars[static_cast<size_t>(i)];
    Sha256 digest;
    digest.update(sidecar.header.data(), sidecar.header.size());
    digest.update(tensor_bytes(*sidecar.tensor), tensor_byte_size(*sidecar.tensor));
    sidecar.sha256 = digest.finish_hex();
  }
}

size_t write_trace_files(const std::string& json_path, const Trace& trace, const SidecarRule& rule,
                         const WriteProgressFn& progress, const TraceFormatProgress& formatting) {
  struct stat existing;
  const bool regular_target = ::stat(json_path.c_str(), &existing) != 0 || S_ISREG(existing.st_mode);
  const std::string arrays_name = arrays_dir_name(json_path);
  const std::string arrays_path = parent_directory(json_path) + "/" + arrays_name;
  std::vector<TraceSidecar> sidecars =
      regular_target ? plan_sidecars(trace, rule, arrays_name) : std::vector<TraceSidecar>{};
  if (sidecars.empty()) {
    if (regular_target) {
      // Written while it is formatted: the threads format the next batch while the last
      // is written, and the whole text is never held at once.
      StreamedFile file(json_path);
      write_trace_json_to(file, trace, {}, formatting);
      file.commit(progress);
    } else {
      write_file_atomically(json_path, write_trace(trace, formatting), progress);
    }
    // The sidecars of an earlier trace at this path belong to nothing now (a directory
    // holding anything else is left alone).
    if (regular_target && std::filesystem::is_directory(arrays_path) && holds_only_sidecars(arrays_path)) {
      remove_quietly(arrays_path);
    }
    return 0;
  }

  // Never move a file of the user's aside: only a directory of sidecars there is an old trace's.
  if (std::filesystem::exists(arrays_path) && !std::filesystem::is_directory(arrays_path)) {
    fail_input("output directory " + arrays_path, "an existing file that is not a directory",
               "the directory of the trace's sidecars, or no file of that name");
  }
  if (std::filesystem::is_directory(arrays_path) && !holds_only_sidecars(arrays_path)) {
    fail_input("output directory " + arrays_path, "an existing directory holding other files than sidecars",
               "the directory of an earlier trace's sidecars (inputs.*.npy, steps.*.npy only), or no file of "
               "that name");
  }
  uint64_t sidecar_total = 0;
  for (const TraceSidecar& sidecar : sidecars) sidecar_total += sidecar.file_size();
  const std::string tmp_dir = create_temporary_directory_beside(arrays_path);
  std::string json_tmp;
  std::string aside;          // the old arrays directory, moved aside while the new one goes in
  bool new_in_place = false;  // the new arrays directory is at arrays_path
  try {
    // Each sidecar is hashed while it is written; both threads write files.
    std::atomic<uint64_t> written{0};
    std::vector<std::string> errors(sidecars.size());
    const auto count = static_cast<int64_t>(sidecars.size());
#pragma omp parallel for schedule(dynamic)
    for (int64_t i = 0; i < count; ++i) {
      TraceSidecar& sidecar = sidecars[static_cast<size_t>(i)];
      const std::string base_name = sidecar.file.substr(arrays_name.size() + 1);
      const std::string path = tmp_dir + "/" + base_name;
      const std::string what = "sidecar file " + arrays_path + "/" + base_name;
      try {
        const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
        if (fd < 0) throw InputError(what + ": cannot create it (" + std::strerror(errno) + ")");
        try {
          write_sidecar_bytes(fd, sidecar, true, what, [&](size_t bytes) {
            const uint64_t so_far = written += bytes;
            if (progress) {
#pragma omp critical(moeref_trace_write_progress)
              progress(so_far, sidecar_total);
            }
          });
        } catch (...) {
          ::close(fd);
          throw;
        }
        if (::close(fd) != 0) throw InputError(what + ": cannot write it (" + std::strerror(errno) + ")");
      } catch (const std::exception& error) {
        errors[static_cast<size_t>(i)] = error.what();
      }
    }
    for (const std::string& error : errors) {
      if (!error.empty()) throw InputError(error);
    }
    const std::string json = write_trace_json(trace, sidecars, formatting);
    json_tmp = write_temporary_file_beside(json_path, json, [&](size_t done, size_t total) {
      if (progress) progress(sidecar_total + done, sidecar_total + total);
    });
    // The arrays directory first (an old one moved aside), the JSON last.
    if (std::filesystem::exists(arrays_path)) {
      aside = create_temporary_directory_beside(arrays_path + ".old");
      if (std::rename(arrays_path.c_str(), (aside + "/old").c_str()) != 0) {
        const std::string reason = std::strerror(errno);
        remove_quietly(aside);
        throw InputError("output directory " + arrays_path + ": cannot move the old one aside (" + reason + ")");
      }
    }
    if (std::rename(tmp_dir.c_str(), arrays_path.c_str()) != 0) {
      const std::string reason = std::strerror(errno);
      if (!aside.empty()) std::rename((aside + "/old").c_str(), arrays_path.c_str());
      remove_quietly(aside);
      throw InputError("output directory " + arrays_path + ": cannot rename it into place (" + reason + ")");
    }
    new_in_place = true;
    if (std::rename(json_tmp.c_str(), json_path.c_str()) != 0) {
      throw InputError("output file " + json_path + ": cannot rename it into place (" + std::strerror(errno) + ")");
    }
    if (!aside.empty()) remove_quietly(aside);
  } catch (...) {
    // Back to the old trace: the new arrays out of the way, the old ones back in place.
    if (new_in_place) std::rename(arrays_path.c_str(), tmp_dir.c_str());
    if (!aside.empty() && std::filesystem::exists(aside + "/old")) {
      std::rename((aside + "/old").c_str(), arrays_path.c_str());
    }
    if (!aside.empty()) remove_quietly(aside);
    remove_quietly(tmp_dir);
    if (!json_tmp.empty()) std::remove(json_tmp.c_str());
    throw;
  }
  return sidecars.size();
}

void write_trace_tar(const std::string& tar_path, const Trace& trace, const SidecarRule& rule,
                     const WriteProgressFn& progress) {
  struct stat existing;
  if (::stat(tar_path.c_str(), &existing) == 0 && !S_ISREG(existing.st_mode)) {
    fail_input("output file " + tar_path, "not a regular file", "a path for a new or existing regular file");
  }
  std::vector<TraceSidecar> sidecars = plan_sidecars(trace, rule, kPackedArraysDir);
  hash_sidecars(sidecars);
  const std::string json = write_trace_json(trace, sidecars);
  uint64_t total = kUstarBlock + json.size() + ustar_padding(json.size()) + 2 * kUstarBlock;
  for (const TraceSidecar& sidecar : sidecars) {
    total += kUstarBlock + sidecar.file_size() + ustar_padding(sidecar.file_size());
  }
  std::string tmp_path;
  const int fd = create_temporary_file_beside(tar_path, tmp_path);
  const std::string what = "output file " + tar_path;
  uint64_t written = 0;
  const auto wrote = [&](size_t bytes) {
    written += bytes;
    if (progress) progress(written, total);
  };
  const std::string zeros(2 * kUstarBlock, '\0');
  const auto put = [&](const std::string& bytes) {
    write_all(fd, bytes.data(), bytes.size(), what);
    wrote(bytes.size());
  };
  try {
    put(ustar_file_header(kPackedJsonName, json.size()));
    put(json);
    put(zeros.substr(0, ustar_padding(json.size())));
    for (TraceSidecar& sidecar : sidecars) {
      put(ustar_file_header(sidecar.file, sidecar.file_size()));
      write_sidecar_bytes(fd, sidecar, false, what, wrote);
      put(zeros.substr(0, ustar_padding(sidecar.file_size())));
    }
    put(zeros);
    if (::close(fd) != 0) throw InputError(what + ": cannot write it (" + std::strerror(errno) + ")");
  } catch (...) {
    ::close(fd);
    std::remove(tmp_path.c_str());
    throw;
  }
  if (std::rename(tmp_path.c_str(), tar_path.c_str()) != 0) {
    const std::string reason = std::strerror(errno);
    std::remove(tmp_path.c_str());
    throw InputError(what + ": cannot rename it into place (" + reason + ")");
  }
}

void check_sidecar_path(const std::string& file, const std::string& field) {
  const std::string allowed =
      "a relative \"/\"-separated path without \"..\" or empty parts (e.g. \"x.arrays/inputs.x.npy\")";
  if (file.empty() || file.front() == '/' || file.find('\\') != std::string::npos ||
      file.find('\0') != std::string::npos) {
    fail_input(field, "\"" + file + "\"", allowed);
  }
  size_t start = 0;
  while (start <= file.size()) {
    const size_t slash = std::min(file.find('/', start), file.size());
    const bool dot_dot = slash - start == 2 && file.compare(start, 2, "..") == 0;
    if (dot_dot || slash == start) {  // ".." leaves the directory; "a//b" and "a/" have an empty part
      fail_input(field, "\"" + file + "\"", allowed);
    }
    start = slash + 1;
  }
}

SidecarStore SidecarStore::directory(const std::string& json_path) {
  SidecarStore store;
  store.root_ = parent_directory(json_path);
  return store;
}

SidecarStore SidecarStore::tar(const std::string& tar_path) {
  SidecarStore store;
  store.root_ = tar_path;
  store.is_tar_ = true;
  for (const UstarMember& member : list_ustar_members(tar_path)) {
    store.members_[member.name] = {member.offset, member.size};
  }
  if (store.members_.count(kPackedJsonName) == 0) {
    fail_input("trace archive " + tar_path, "no member named " + std::string(kPackedJsonName),
               "an archive written by moeref pack: trace.json, then trace.arrays/*.npy");
  }
  return store;
}

std::string SidecarStore::read_tar_json() const {
  const Region region = members_.at(kPackedJsonName);
  const int fd = ::open(root_.c_str(), O_RDONLY | O_CLOEXEC);
  std::string text(region.size, '\0');
  const bool ok = fd >= 0 && read_fully(fd, text.data(), text.size(), region.offset);
  if (fd >= 0) ::close(fd);
  if (!ok) throw InputError("trace archive " + root_ + ": cannot read its trace.json");
  return text;
}

OpenSidecar::OpenSidecar(int fd, std::string field, std::string where, std::string expected_sha256)
    : fd_(fd), field_(std::move(field)), where_(std::move(where)), expected_sha256_(std::move(expected_sha256)) {}

OpenSidecar::~OpenSidecar() { ::close(fd_); }

void OpenSidecar::set_values(char* into, size_t size, uint64_t file_offset) {
  values_ = into;
  size_ = size;
  done_ = 0;
  file_offset_ = file_offset;
}

OpenSidecar::Chunk OpenSidecar::read_next(size_t most) {
  const size_t size = std::min(most, remaining());
  char* at = values_ + done_;
  if (!read_fully(fd_, at, size, file_offset_ + done_)) {
    throw InputError(field_ + ".file (" + where_ + "): cannot read it (an I/O error, or the file ends early)");
  }
  done_ += size;
  return {at, size};
}

void OpenSidecar::finish() {
  const std::string found = digest_.finish_hex();
  if (found != expected_sha256_) {
    fail_input(field_ + ".sha256", "\"" + found + "\" (the sha256 of " + where_ + ")",
               "\"" + expected_sha256_ + "\", as the trace says (the file was changed or belongs to another trace)");
  }
}

std::unique_ptr<OpenSidecar> SidecarStore::open_sidecar(const SidecarRead& read) const {
  const std::string& file = read.file;
  const std::string& field = read.field;
  Tensor& tensor = *read.tensor;
  check_sidecar_path(file, field + ".file");
  Region region;
  std::string where;
  int fd = -1;
  if (is_tar_) {
    const auto found = members_.find(file);
    if (found == members_.end()) {
      fail_input(field + ".file", "\"" + file + "\", which is not a member of the archive " + root_,
                 "the name of a member of the archive");
    }
    region = found->second;
    where = root_ + ", member " + file;
    fd = ::open(root_.c_str(), O_RDONLY | O_CLOEXEC);
  } else {
    where = root_ + "/" + file;
    fd = ::open(where.c_str(), O_RDONLY | O_CLOEXEC);
    struct stat info;
    if (fd >= 0 && (::fstat(fd, &info) != 0 || !S_ISREG(info.st_mode))) {
      ::close(fd);
      fail_input(field + ".file", "\"" + file + "\" (" + where + " is not a regular file)", "a .npy file");
    }
    if (fd >= 0) region = {0, static_cast<uint64_t>(info.st_size)};
  }
  if (fd < 0) {
    fail_input(field + ".file", "\"" + file + "\" (cannot open " + where + ": " + std::strerror(errno) + ")",
               "an existing .npy file, relative to the trace's directory");
  }
  auto opened = std::make_unique<OpenSidecar>(fd, field, where, read.sha256);  // closes fd from here on
  const std::string what = field + ".file (" + where + ")";
  // The fixed part of the header says how long the rest is.
  std::string header(std::min<uint64_t>(region.size, 12), '\0');
  if (!read_fully(fd, header.data(), header.size(), region.offset))
    throw InputError(what + ": cannot read it (an I/O error, or the file ends early)");
  const uint64_t full = npy_header_size(header.data(), header.size(), what);
  if (full > region.size || full > kMaxNpyHeaderSize) {
    fail_input(what, "a .npy header of " + std::to_string(full) + " bytes in a file of " + std::to_string(region.size),
               "a complete .npy header");
  }
  header.resize(full);
  if (!read_fully(fd, header.data(), header.size(), region.offset))
    throw InputError(what + ": cannot read it (an I/O error, or the file ends early)");
  const NpyHeader parsed = parse_npy_header(header.data(), header.size(), what);
  if (parsed.descr != npy_descr(tensor.dtype)) {
    fail_input(field + ".file", "descr '" + parsed.descr + "' in " + where,
               "'" + std::string(npy_descr(tensor.dtype)) + "', as the trace's dtype \"" + dtype_name(tensor.dtype) +
                   "\" says");
  }
  if (parsed.fortran_order) {
    fail_input(field + ".file", "fortran_order True in " + where, "fortran_order False (row-major values)");
  }
  if (parsed.shape != tensor.shape) {
    fail_input(field + ".file", "shape " + npy_shape_text(parsed.shape) + " in " + where,
               "shape " + npy_shape_text(tensor.shape) + ", as the trace's \"shape\" says");
  }
  const uint64_t count = static_cast<uint64_t>(tensor.num_elements());
  if (region.size != parsed.data_offset + 4 * count) {
    fail_input(field + ".file", std::to_string(region.size) + " bytes in " + where,
               std::to_string(parsed.data_offset + 4 * count) + " bytes (the header and " + std::to_string(count) +
                   " values of 4 bytes)");
  }
  if (tensor.dtype == DType::kFloat32) {
    tensor.f32.resize(count);
  } else {
    tensor.i32.resize(count);
  }
  opened->digest().update(header.data(), header.size());
  opened->set_values(tensor_bytes_mutable(tensor), 4 * count, region.offset + parsed.data_offset);
  return opened;
}

void SidecarStore::read_into(Tensor& tensor, const std::string& file, const std::string& sha256,
                             const std::string& field) const {
  read_all({SidecarRead{&tensor, file, sha256, field}});
}

bool is_tar_file(const std::string& path) { return is_ustar_file(path); }

TraceDocument read_trace_document(const std::string& path, const std::string& what) {
  if (!std::filesystem::is_directory(path) && is_tar_file(path)) {
    SidecarStore store = SidecarStore::tar(path);
    const std::string source_name = what + " " + path + " (" + kPackedJsonName + ")";
    ParsedDocument parsed = parse_json_document(store.read_tar_json(), source_name);
    return {std::move(parsed), std::move(store), source_name};
  }
  const std::string source_name = what + " " + path;
  // Mapped, and handed back as the reader goes: a large inline trace's text is not held
  // beside its values.
  MappedText text(path, what);
  ParsedDocument parsed =
      parse_json_document(text.text(), source_name, [&text](size_t offset) { text.release_before(offset); });
  text.check_unchanged();
  return {std::move(parsed), SidecarStore::directory(path), source_name};
}

std::vector<std::string> sidecar_keys(const nlohmann::json& doc) {
  std::vector<std::string> keys;
  if (doc.contains("inputs") && doc["inputs"].is_object()) {
    for (auto it = doc["inputs"].begin(); it != doc["inputs"].end(); ++it) {
      if (it.value().is_object() && it.value().contains("file")) keys.push_back("inputs." + it.key());
    }
  }
  if (doc.contains("steps") && doc["steps"].is_array()) {
    for (const nlohmann::json& step : doc["steps"]) {
      if (step.is_object() && step.contains("file") && step.contains("name") && step["name"].is_string()) {
        keys.push_back("steps." + step["name"].get<std::string>());
      }
    }
  }
  return keys;
}

}  // namespace moeref
