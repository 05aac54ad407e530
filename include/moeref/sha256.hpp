// SHA-256 (FIPS 180-4), for the checksums of .npy sidecar files (spec/trace-format.md,
// "Version 2: sidecars"). Streamed: update() any number of times, then finish.
// On x86-64 CPUs with the SHA extensions the blocks are compressed with them (chosen at
// run time, same digests); elsewhere by the portable code.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>

namespace moeref {

class Sha256 {
 public:
  Sha256();
  void update(const void* data, size_t size);
  // first.update(first_data, first_size) and second.update(second_data, second_size),
  // the same digests; with the SHA extensions their whole blocks are compressed side by
  // side, which keeps the core busier than one message alone (a sidecar reader hashes
  // two files at once).
  static void update_both(Sha256& first, const void* first_data, size_t first_size, Sha256& second,
                          const void* second_data, size_t second_size);
  // The digest of everything given to update(); the object is spent afterwards.
  std::array<uint8_t, 32> finish();
  // finish(), as 64 lowercase hex digits.
  std::string finish_hex();

 private:
  std::array<uint32_t, 8> state_;
  std::array<uint8_t, 64> pending_{};  // the bytes of a block not yet complete
  size_t pending_size_ = 0;
  uint64_t total_size_ = 0;
};

// The hex digest of one buffer.
std::string sha256_hex(const void* data, size_t size);

// The portable compression only (tests compare it with the one chosen at run time).
std::string sha256_hex_portable(const void* data, size_t size);

// True when the SHA extensions compress the blocks on this machine.
bool sha256_uses_cpu_extensions();

}  // namespace moeref
