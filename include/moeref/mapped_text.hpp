// A text file read by mapping it into memory, for large inline traces: the pages a
// reader has finished with can be handed back, so the text does not sit in memory
// beside the values parsed out of it.
#pragma once

#include <sys/stat.h>

#include <cstddef>
#include <string>
#include <string_view>

namespace moeref {

class MappedText {
 public:
  // Maps a regular file (read-only); a pipe or an empty file is read into memory
  // instead. Throws InputError naming `what` and the path when it cannot be read.
  MappedText(const std::string& path, const std::string& what);
  ~MappedText();
  MappedText(const MappedText&) = delete;
  MappedText& operator=(const MappedText&) = delete;

  std::string_view text() const { return {data_, size_}; }
  // The reader is done with text()[0, offset): its whole pages leave this process's
  // memory. Reading them again is still correct (they come back from the file), only slower.
  void release_before(size_t offset);
  // Throws InputError when the mapped file's size or modification time is no longer what
  // it was when mapped: it was written in place while being read, so the text may mix
  // two versions. (A file replaced by a rename, as moeref writes, is unaffected: the
  // mapping keeps the old one. A file truncated while mapped ends the process with SIGBUS
  // when a page past its new end is read; only a writer that rewrites in place can do that.)
  void check_unchanged() const;

 private:
  std::string path_, what_;
  const char* data_ = nullptr;
  size_t size_ = 0;
  void* mapping_ = nullptr;  // null when the text was read into `owned_`
  int fd_ = -1;              // the mapped file, kept open to ask whether it changed
  struct stat mapped_as_ {};
  size_t released_ = 0;  // bytes from the start already handed back (whole pages)
  std::string owned_;
};

}  // namespace moeref
