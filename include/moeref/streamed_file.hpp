// A file written atomically while its contents are still being made (a large inline
// trace: its text is formatted on every thread while what is done is already written).
#pragma once

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <mutex>
#include <string>
#include <thread>

#include "moeref/atomic_file.hpp"

namespace moeref {

// Pieces given to put() are written in order, by a thread of this object's own, to a
// temporary file beside `path` (create_temporary_file_beside); commit() waits until all
// are written and renames the file over `path`, as write_file_atomically does. Destroyed
// without commit() (an error while the contents were made), it drops what still waits,
// removes the temporary file and leaves `path` as it was. At most about 64 MiB wait to be written: put() waits
// for the writer beyond that, so the whole text is never held at once.
class StreamedFile {
 public:
  explicit StreamedFile(const std::string& path);
  ~StreamedFile();
  StreamedFile(const StreamedFile&) = delete;
  StreamedFile& operator=(const StreamedFile&) = delete;

  // Throws the writer's InputError (a full disk, ...) once it has one; never call it
  // after commit().
  void put(std::string piece);
  // Writes what is left, closes and renames; `progress` is told the bytes written and
  // the total once they are. Throws InputError, leaving `path` as it was, on any failure.
  void commit(const WriteProgressFn& progress = {});

 private:
  void write_pieces();
  void stop_writer();

  std::string path_, tmp_path_;
  int fd_ = -1;
  size_t given_ = 0;
  std::mutex mutex_;
  std::condition_variable queued_, drained_;
  std::deque<std::string> queue_;
  size_t queued_bytes_ = 0;
  bool closing_ = false;
  std::string error_;
  std::thread writer_;
};

}  // namespace moeref
