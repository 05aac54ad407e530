// A text file read by mapping it into memory, for large inline traces: the pages a
// reader has finished with can be handed back, so the text does not sit in memory
// beside the values parsed out of it.
#pragma once

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

 private:
  const char* data_ = nullptr;
  size_t size_ = 0;
  void* mapping_ = nullptr;  // null when the text was read into `owned_`
  size_t released_ = 0;      // bytes from the start already handed back (whole pages)
  std::string owned_;
};

}  // namespace moeref
