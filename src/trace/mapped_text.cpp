#include "moeref/mapped_text.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>

#include "moeref/atomic_file.hpp"
#include "moeref/error.hpp"

namespace moeref {

namespace {

bool same_version(const struct stat& a, const struct stat& b) {
  return a.st_size == b.st_size && a.st_mtim.tv_sec == b.st_mtim.tv_sec && a.st_mtim.tv_nsec == b.st_mtim.tv_nsec;
}

}  // namespace

MappedText::MappedText(const std::string& path, const std::string& what) : path_(path), what_(what) {
  std::error_code ignored;
  if (std::filesystem::is_directory(path, ignored)) {
    throw InputError(what + " " + path + ": is a directory; a file is expected");
  }
  // Only a regular file is opened here: opening a named pipe and closing it again would
  // lose what its writer sent (read_whole_file opens it once and reads it to the end).
  struct stat info;
  if (::stat(path.c_str(), &info) == 0 && S_ISREG(info.st_mode) && info.st_size > 0) {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd >= 0 && ::fstat(fd, &mapped_as_) == 0 && S_ISREG(mapped_as_.st_mode) && mapped_as_.st_size > 0) {
      void* mapping = ::mmap(nullptr, static_cast<size_t>(mapped_as_.st_size), PROT_READ, MAP_PRIVATE, fd, 0);
      if (mapping != MAP_FAILED) {
        mapping_ = mapping;
        data_ = static_cast<const char*>(mapping);
        size_ = static_cast<size_t>(mapped_as_.st_size);
        fd_ = fd;
        // Read once from start to end: ask the kernel to read ahead.
        ::madvise(mapping, size_, MADV_SEQUENTIAL);
      }
    }
    if (fd >= 0 && fd_ < 0) ::close(fd);
  }
  if (mapping_ == nullptr) {
    owned_ = read_whole_file(path, what);
    data_ = owned_.data();
    size_ = owned_.size();
  }
}

MappedText::~MappedText() {
  if (mapping_ != nullptr) ::munmap(mapping_, size_);
  if (fd_ >= 0) ::close(fd_);
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

void MappedText::check_unchanged() const {
  if (mapping_ == nullptr) return;
  struct stat now;
  if (::fstat(fd_, &now) != 0 || !same_version(now, mapped_as_)) {
    throw InputError(what_ + " " + path_ +
                     ": the file was changed while it was being read (it is read in place); read it again once "
                     "its writer is done");
  }
}

}  // namespace moeref
