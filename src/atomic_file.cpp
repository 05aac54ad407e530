#include "moeref/atomic_file.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>

#include "moeref/error.hpp"

namespace moeref {

namespace {

// Writes to an existing non-regular file (/dev/null, /dev/stdout, a FIFO) in place:
// renaming a temporary file over it would replace the device itself.
void write_in_place(const std::string& path, const std::string& contents) {
  std::ofstream out(path, std::ios::binary);
  out.write(contents.data(), static_cast<std::streamsize>(contents.size()));
  out.flush();
  if (!out) throw InputError("output file " + path + ": cannot write it");
}

}  // namespace

void write_file_atomically(const std::string& path, const std::string& contents) {
  struct stat existing;
  if (::stat(path.c_str(), &existing) == 0 && !S_ISREG(existing.st_mode)) {
    if (S_ISDIR(existing.st_mode)) throw InputError("output file " + path + ": is a directory");
    write_in_place(path, contents);
    return;
  }
  std::string tmp_template = path + ".tmp.XXXXXX";
  int fd = mkstemp(tmp_template.data());
  if (fd < 0) {
    throw InputError("output file " + path + ": cannot create a temporary file beside it (" + std::strerror(errno) +
                     ")");
  }
  const char* data = contents.data();
  size_t left = contents.size();
  bool ok = true;
  while (left > 0) {
    ssize_t written = ::write(fd, data, left);
    if (written < 0) {
      if (errno == EINTR) continue;
      ok = false;
      break;
    }
    data += written;
    left -= static_cast<size_t>(written);
  }
  if (::close(fd) != 0) ok = false;
  if (!ok || std::rename(tmp_template.c_str(), path.c_str()) != 0) {
    std::string reason = std::strerror(errno);
    std::remove(tmp_template.c_str());
    throw InputError("output file " + path + ": cannot write it (" + reason + ")");
  }
}

std::string read_whole_file(const std::string& path, const std::string& what) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    throw InputError(what + " " + path + ": cannot open it for reading");
  }
  std::ostringstream buffer;
  buffer << in.rdbuf();
  if (in.bad()) {
    throw InputError(what + " " + path + ": read error");
  }
  return buffer.str();
}

}  // namespace moeref
