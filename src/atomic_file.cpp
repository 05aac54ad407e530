#include "moeref/atomic_file.hpp"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>
#include <unistd.h>

#include "moeref/error.hpp"

namespace moeref {

void write_file_atomically(const std::string& path, const std::string& contents) {
  std::string tmp_template = path + ".tmp.XXXXXX";
  int fd = mkstemp(tmp_template.data());
  if (fd < 0) {
    throw InputError("output file " + path + ": cannot create a temporary file beside it (" +
                     std::strerror(errno) + ")");
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
