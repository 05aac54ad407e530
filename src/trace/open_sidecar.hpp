// One .npy sidecar open for reading (src/trace/trace_files.cpp opens it, checking its
// header against the trace's dims, shape and dtype; src/trace/sidecar_reads.cpp reads
// the values of several in turn). The values go straight into the tensor's memory and
// through the file's sha256, which finish() compares with the trace's.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "moeref/sha256.hpp"

namespace moeref {

// Sidecars are hashed and written, and read and hashed, in chunks of this size: each
// chunk is hashed while it is still in the cache.
inline constexpr size_t kSidecarChunkSize = size_t{4} << 20;

class OpenSidecar {
 public:
  // Takes `fd` (closed with this object). `field` names the tensor in errors, `where`
  // the file (or the archive's member), `expected_sha256` is the trace's.
  OpenSidecar(int fd, std::string field, std::string where, std::string expected_sha256);
  ~OpenSidecar();
  OpenSidecar(const OpenSidecar&) = delete;
  OpenSidecar& operator=(const OpenSidecar&) = delete;

  // Once the header is checked: the values are `size` bytes at `file_offset`, read into
  // `into`.
  void set_values(char* into, size_t size, uint64_t file_offset);

  struct Chunk {
    const char* bytes;
    size_t size;
  };
  // Reads the next (at most `most`) bytes of the values; an I/O error or a short file
  // is an InputError naming the file.
  Chunk read_next(size_t most);
  size_t remaining() const { return size_ - done_; }

  // Everything read is given to it (the header by the opener, the values by the reader).
  Sha256& digest() { return digest_; }
  // Compares the digest with the trace's sha256: a difference is an InputError naming
  // both.
  void finish();

 private:
  int fd_ = -1;
  std::string field_, where_, expected_sha256_;
  char* values_ = nullptr;
  size_t size_ = 0, done_ = 0;
  uint64_t file_offset_ = 0;
  Sha256 digest_;
};

}  // namespace moeref
