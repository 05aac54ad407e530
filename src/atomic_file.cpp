#include "moeref/atomic_file.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>

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

// Creates PATH.tmp.XXXXXX beside `path` with mode 0666, which the kernel reduces by the
// process umask, so the final file gets the permissions any other new file would (0644
// under umask 022). mkstemp would create it 0600, and rename keeps that mode. Returns the
// open descriptor and sets `tmp_path`; -1 with errno set when no name could be created.
int create_temporary_beside(const std::string& path, std::string& tmp_path) {
  static std::atomic<uint64_t> counter{0};
  constexpr char kLetters[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
  constexpr uint64_t kLetterCount = sizeof(kLetters) - 1;
  for (int attempt = 0; attempt < 100; ++attempt) {
    // Unique within this process by the counter; across processes by the pid and the clock.
    uint64_t bits = static_cast<uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());
    bits ^= (static_cast<uint64_t>(::getpid()) << 32) ^ (counter.fetch_add(1) * 0x9E3779B97F4A7C15ull);
    std::string suffix;
    for (int i = 0; i < 6; ++i) {
      suffix += kLetters[bits % kLetterCount];
      bits /= kLetterCount;
    }
    tmp_path = path + ".tmp." + suffix;
    const int fd = ::open(tmp_path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (fd >= 0 || errno != EEXIST) return fd;
  }
  errno = EEXIST;
  return -1;
}

}  // namespace

int create_temporary_file_beside(const std::string& path, std::string& tmp_path) {
  const int fd = create_temporary_beside(path, tmp_path);
  if (fd < 0) {
    throw InputError("output file " + path + ": cannot create a temporary file beside it (" + std::strerror(errno) +
                     ")");
  }
  return fd;
}

std::string create_temporary_directory_beside(const std::string& path) {
  // A temporary file's name reserves a unique name; the directory takes the name with
  // ".d" added, created with mode 0777 so that the umask decides, as for any new directory.
  std::string reserved;
  const int fd = create_temporary_file_beside(path, reserved);
  ::close(fd);
  const std::string dir = reserved + ".d";
  const bool made = ::mkdir(dir.c_str(), 0777) == 0;
  const int error = errno;
  std::remove(reserved.c_str());
  if (!made) {
    throw InputError("output directory " + dir + ": cannot create it (" + std::strerror(error) + ")");
  }
  return dir;
}

void write_all(int fd, const char* data, size_t size, const std::string& what) {
  while (size > 0) {
    // At most 1 GiB per call: Linux writes at most about 2 GiB at once anyway.
    const ssize_t written = ::write(fd, data, std::min(size, size_t{1} << 30));
    if (written < 0) {
      if (errno == EINTR) continue;
      throw InputError(what + ": cannot write it (" + std::strerror(errno) + ")");
    }
    data += written;
    size -= static_cast<size_t>(written);
  }
}

std::string write_temporary_file_beside(const std::string& path, const std::string& contents,
                                        const WriteProgressFn& progress) {
  std::string tmp_path;
  const int fd = create_temporary_file_beside(path, tmp_path);
  const char* data = contents.data();
  size_t left = contents.size();
  try {
    while (left > 0) {
      // Chunks, so that a progress line moves while a large trace is written.
      constexpr size_t kChunk = size_t{16} << 20;
      const size_t chunk = std::min(left, kChunk);
      write_all(fd, data, chunk, "output file " + path);
      data += chunk;
      left -= chunk;
      if (progress) progress(contents.size() - left, contents.size());
    }
  } catch (...) {
    ::close(fd);
    std::remove(tmp_path.c_str());
    throw;
  }
  if (::close(fd) != 0) {
    const std::string reason = std::strerror(errno);
    std::remove(tmp_path.c_str());
    throw InputError("output file " + path + ": cannot write it (" + reason + ")");
  }
  return tmp_path;
}

void write_file_atomically(const std::string& path, const std::string& contents, const WriteProgressFn& progress) {
  struct stat existing;
  if (::stat(path.c_str(), &existing) == 0 && !S_ISREG(existing.st_mode)) {
    if (S_ISDIR(existing.st_mode)) throw InputError("output file " + path + ": is a directory");
    write_in_place(path, contents);
    if (progress) progress(contents.size(), contents.size());
    return;
  }
  const std::string tmp_path = write_temporary_file_beside(path, contents, progress);
  if (std::rename(tmp_path.c_str(), path.c_str()) != 0) {
    const std::string reason = std::strerror(errno);
    std::remove(tmp_path.c_str());
    throw InputError("output file " + path + ": cannot write it (" + reason + ")");
  }
}

std::string read_whole_file(const std::string& path, const std::string& what) {
  // An ifstream opens a directory and reads nothing from it: say what it is instead.
  std::error_code ignored;
  if (std::filesystem::is_directory(path, ignored)) {
    throw InputError(what + " " + path + ": is a directory; a file is expected");
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    throw InputError(what + " " + path + ": cannot open it for reading");
  }
  // Read into one buffer of the file's size (a stream buffer would grow by copies and
  // then be copied once more: three times a 600 MB trace's size); a pipe, whose size
  // is unknown, and a file that grew meanwhile are read on in chunks.
  std::string text;
  std::error_code size_error;
  const uintmax_t size =
      std::filesystem::is_regular_file(path, size_error) ? std::filesystem::file_size(path, size_error) : 0;
  if (!size_error && size > 0) {
    text.resize(static_cast<size_t>(size));
    in.read(text.data(), static_cast<std::streamsize>(size));
    text.resize(static_cast<size_t>(in.gcount()));
  }
  char chunk[1 << 16];
  while (in && !in.eof()) {
    in.read(chunk, sizeof chunk);
    text.append(chunk, static_cast<size_t>(in.gcount()));
  }
  if (in.bad()) {
    throw InputError(what + " " + path + ": read error");
  }
  return text;
}

}  // namespace moeref
