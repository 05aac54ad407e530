// Writing output files so that a reader never sees a partial file.
#pragma once

#include <string>

namespace moeref {

// Writes `contents` to a temporary file next to `path`, then renames it over
// `path`. On any failure the temporary file is removed and an InputError is
// thrown; `path` is then untouched.
void write_file_atomically(const std::string& path, const std::string& contents);

// Reads a whole file; throws InputError naming the path when it cannot.
std::string read_whole_file(const std::string& path, const std::string& what);

}  // namespace moeref
