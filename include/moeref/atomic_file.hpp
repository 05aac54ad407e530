// Writing output files so that a reader never sees a partial file.
#pragma once

#include <cstddef>
#include <functional>
#include <string>

namespace moeref {

// Writes `contents` to a temporary file next to `path` (PATH.tmp.XXXXXX), then
// renames it over `path`. On any failure the temporary file is removed and an
// InputError is thrown; `path` is then untouched. A process killed mid-write leaves
// `path` as it was (absent, or the previous complete file) and the temporary file
// behind. The new file has mode 0666 & ~umask, like any other file the process
// creates. The data is not fsync'ed: the guarantee is against the process dying,
// not against the machine losing power.
// `progress`, when given, is told the bytes written so far and the total after each
// chunk of at most 16 MiB (a progress line for large traces).
using WriteProgressFn = std::function<void(size_t written, size_t total)>;
void write_file_atomically(const std::string& path, const std::string& contents, const WriteProgressFn& progress = {});

// The pieces of write_file_atomically, for outputs of several files (a trace with its
// sidecars, spec/trace-format.md "Atomic writes"); the caller renames or removes them.
// A new file PATH.tmp.XXXXXX beside `path`, mode 0666 & ~umask, open for writing;
// returns the descriptor and sets `tmp_path`, or throws InputError naming `path`.
int create_temporary_file_beside(const std::string& path, std::string& tmp_path);
// A new empty directory PATH.tmp.XXXXXX beside `path`, mode 0777 & ~umask.
std::string create_temporary_directory_beside(const std::string& path);
// Writes all of `size` bytes (retrying short writes); throws InputError naming `what`.
void write_all(int fd, const char* data, size_t size, const std::string& what);
// Writes `contents` to a new temporary file beside `path` and returns its name.
std::string write_temporary_file_beside(const std::string& path, const std::string& contents,
                                        const WriteProgressFn& progress = {});

// Reads a whole file; throws InputError naming the path when it cannot.
std::string read_whole_file(const std::string& path, const std::string& what);

}  // namespace moeref
