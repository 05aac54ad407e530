#include "moeref/mapped_text.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>

#include "moeref/atomic_file.hpp"
#include "moeref/error.hpp"

namespace moeref {

MappedText::MappedText(const std::string& path, const std::string& what) {
  std::error_code ignored;
  if (std::filesystem::is_directory(path, ignored)) {
    throw InputError(what + " " + path + ": is a directory; a file is expected");
  }
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  struct stat info;
  const bool mappable = fd >= 0 && ::fstat(fd, &info) == 0 && S_ISREG(info.st_mode) && info.st_size > 0;
  if (mappable) {
    void* mapping = ::mmap(nullptr, static_cast<size_t>(info.st_size), PROT_READ, MAP_PRIVATE, fd, 0);
    if (mapping != MAP_FAILED) {
      mapping_ = mapping;
      data_ = static_cast<const char*>(mapping);
      size_ = static_cast<size_t>(info.st_size);
      // Read once from start to end: ask the kernel to read ahead.
      ::madvise(mapping, size_, MADV_SEQUENTIAL);
    }
  }
  if (fd >= 0) ::close(fd);
  if (mapping_ == nullptr) {
    owned_ = read_whole_file(path, what);
    data_ = owned_.data();
    size_ = owned_.size();
  }
}

MappedText::~MappedText() {
  if (mapping_ != nullptr) ::munmap(mapping_, size_);
}

void MappedText::release_before(size_t offset) {
  if (mapping_ == nullptr) return;
  const size_t page = static_cast<size_t>(::sysconf(_SC_PAGESIZE));
  const size_t end = std::min(offset, size_) / page * page;
  if (end <= released_) return;
  // A read-only private mapping of a file: dropped pages read back from the file.
  ::madvise(static_cast<char*>(mapping_) + released_, end - released_, MADV_DONTNEED);
  released_ = end;
}

}  // namespace moeref
