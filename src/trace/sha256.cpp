// SHA-256 as FIPS 180-4 describes it: the portable compression function, and the
// same function with the x86 SHA extensions where the CPU has them.

#include "moeref/sha256.hpp"

#include <cstring>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <cpuid.h>
#include <immintrin.h>
#define MOEREF_SHA256_X86 1
#endif

namespace moeref {

namespace {

// The first 32 bits of the fractional parts of the cube roots of the first 64 primes.
alignas(16) constexpr uint32_t kRoundConstants[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2};

// The first 32 bits of the fractional parts of the square roots of the first 8 primes.
constexpr std::array<uint32_t, 8> kInitialState = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                                                   0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};

inline uint32_t rotate_right(uint32_t x, int n) { return (x >> n) | (x << (32 - n)); }

inline uint32_t load_big_endian(const uint8_t* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | uint32_t{p[3]};
}

void compress_portable(uint32_t* state, const uint8_t* data, size_t blocks) {
  for (; blocks > 0; --blocks, data += 64) {
    uint32_t w[64];
    for (int t = 0; t < 16; ++t) w[t] = load_big_endian(data + 4 * t);
    for (int t = 16; t < 64; ++t) {
      const uint32_t s0 = rotate_right(w[t - 15], 7) ^ rotate_right(w[t - 15], 18) ^ (w[t - 15] >> 3);
      const uint32_t s1 = rotate_right(w[t - 2], 17) ^ rotate_right(w[t - 2], 19) ^ (w[t - 2] >> 10);
      w[t] = w[t - 16] + s0 + w[t - 7] + s1;
    }
    uint32_t a = state[0], b = state[1], c = state[2], d = state[3];
    uint32_t e = state[4], f = state[5], g = state[6], h = state[7];
    for (int t = 0; t < 64; ++t) {
      const uint32_t sum1 = rotate_right(e, 6) ^ rotate_right(e, 11) ^ rotate_right(e, 25);
      const uint32_t choose = (e & f) ^ (~e & g);
      const uint32_t t1 = h + sum1 + choose + kRoundConstants[t] + w[t];
      const uint32_t sum0 = rotate_right(a, 2) ^ rotate_right(a, 13) ^ rotate_right(a, 22);
      const uint32_t majority = (a & b) ^ (a & c) ^ (b & c);
      const uint32_t t2 = sum0 + majority;
      h = g;
      g = f;
      f = e;
      e = d + t1;
      d = c;
      c = b;
      b = a;
      a = t1 + t2;
    }
    state[0] += a;
    state[1] += b;
    state[2] += c;
    state[3] += d;
    state[4] += e;
    state[5] += f;
    state[6] += g;
    state[7] += h;
  }
}

#ifdef MOEREF_SHA256_X86

// The SHA extensions keep the state as two registers, ABEF and CDGH; each
// sha256rnds2 does two rounds, and msg1/msg2 extend the message schedule four words
// at a time: W[t] = sigma1(W[t-2]) + W[t-7] + sigma0(W[t-15]) + W[t-16].
struct ShaRegisters {
  __m128i abef, cdgh;
};

__attribute__((target("sha,sse4.1,ssse3"))) ShaRegisters to_registers(const uint32_t* state) {
  const __m128i dcba = _mm_loadu_si128(reinterpret_cast<const __m128i*>(state));
  const __m128i hgfe = _mm_loadu_si128(reinterpret_cast<const __m128i*>(state + 4));
  const __m128i cdab = _mm_shuffle_epi32(dcba, 0xB1);
  const __m128i efgh = _mm_shuffle_epi32(hgfe, 0x1B);
  return {_mm_alignr_epi8(cdab, efgh, 8), _mm_blend_epi16(efgh, cdab, 0xF0)};
}

__attribute__((target("sha,sse4.1,ssse3"))) void from_registers(const ShaRegisters& registers, uint32_t* state) {
  const __m128i feba = _mm_shuffle_epi32(registers.abef, 0x1B);
  const __m128i dchg = _mm_shuffle_epi32(registers.cdgh, 0xB1);
  _mm_storeu_si128(reinterpret_cast<__m128i*>(state), _mm_blend_epi16(feba, dchg, 0xF0));
  _mm_storeu_si128(reinterpret_cast<__m128i*>(state + 4), _mm_alignr_epi8(dchg, feba, 8));
}

// `Streams` messages at once, `blocks` blocks of each, their rounds interleaved: one
// stream waits on the latency of each sha256rnds2, and a second fills those waits
// (1.4 against 1.9 GB/s on the Intel Xeon VM of README's Speed section).
template <int Streams>
__attribute__((target("sha,sse4.1,ssse3"))) void compress_streams(uint32_t* const* states,
                                                                  const uint8_t* const* messages, size_t blocks) {
  const __m128i byte_swap = _mm_set_epi64x(0x0c0d0e0f08090a0bLL, 0x0405060700010203LL);
  ShaRegisters registers[Streams];
  for (int s = 0; s < Streams; ++s) registers[s] = to_registers(states[s]);
  for (size_t block = 0; block < blocks; ++block) {
    ShaRegisters before[Streams];
    __m128i words[Streams][4];
    for (int s = 0; s < Streams; ++s) before[s] = registers[s];
#pragma GCC unroll 16
    for (int group = 0; group < 16; ++group) {
#pragma GCC unroll 2
      for (int s = 0; s < Streams; ++s) {
        __m128i& current = words[s][group % 4];
        if (group < 4) {
          const uint8_t* data = messages[s] + 64 * block + 16 * group;
          current = _mm_shuffle_epi8(_mm_loadu_si128(reinterpret_cast<const __m128i*>(data)), byte_swap);
        } else {
          const __m128i& previous = words[s][(group + 3) % 4];
          const __m128i seven_back = _mm_alignr_epi8(previous, words[s][(group + 2) % 4], 4);
          current = _mm_sha256msg2_epu32(
              _mm_add_epi32(_mm_sha256msg1_epu32(current, words[s][(group + 1) % 4]), seven_back), previous);
        }
        __m128i message =
            _mm_add_epi32(current, _mm_load_si128(reinterpret_cast<const __m128i*>(kRoundConstants + 4 * group)));
        registers[s].cdgh = _mm_sha256rnds2_epu32(registers[s].cdgh, registers[s].abef, message);
        message = _mm_shuffle_epi32(message, 0x0E);
        registers[s].abef = _mm_sha256rnds2_epu32(registers[s].abef, registers[s].cdgh, message);
      }
    }
    for (int s = 0; s < Streams; ++s) {
      registers[s].abef = _mm_add_epi32(registers[s].abef, before[s].abef);
      registers[s].cdgh = _mm_add_epi32(registers[s].cdgh, before[s].cdgh);
    }
  }
  for (int s = 0; s < Streams; ++s) from_registers(registers[s], states[s]);
}

void compress_sha_extensions(uint32_t* state, const uint8_t* data, size_t blocks) {
  compress_streams<1>(&state, &data, blocks);
}

bool cpu_has_sha_extensions() {
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx)) return false;
  const bool ssse3 = (ecx & (1u << 9)) != 0;
  const bool sse41 = (ecx & (1u << 19)) != 0;
  if (!__get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx)) return false;
  const bool sha = (ebx & (1u << 29)) != 0;
  return ssse3 && sse41 && sha;
}

#endif

using CompressFn = void (*)(uint32_t*, const uint8_t*, size_t);

CompressFn chosen_compress() {
#ifdef MOEREF_SHA256_X86
  static const CompressFn chosen = cpu_has_sha_extensions() ? compress_sha_extensions : compress_portable;
  return chosen;
#else
  return compress_portable;
#endif
}

// The padded tail and the digest, shared by both compressions.
std::array<uint8_t, 32> finish_with(CompressFn compress, std::array<uint32_t, 8>& state,
                                    std::array<uint8_t, 64>& pending, size_t pending_size, uint64_t total_size) {
  uint8_t tail[128] = {};
  std::memcpy(tail, pending.data(), pending_size);
  tail[pending_size] = 0x80;
  const size_t tail_size = pending_size + 9 <= 64 ? 64 : 128;
  const uint64_t bit_count = total_size * 8;
  for (int i = 0; i < 8; ++i) tail[tail_size - 1 - static_cast<size_t>(i)] = static_cast<uint8_t>(bit_count >> (8 * i));
  compress(state.data(), tail, tail_size / 64);
  std::array<uint8_t, 32> digest;
  for (size_t i = 0; i < 8; ++i) {
    for (size_t k = 0; k < 4; ++k) digest[4 * i + k] = static_cast<uint8_t>(state[i] >> (24 - 8 * k));
  }
  return digest;
}

std::string to_hex(const std::array<uint8_t, 32>& digest) {
  constexpr char kDigits[] = "0123456789abcdef";
  std::string hex;
  for (const uint8_t byte : digest) {
    hex += kDigits[byte >> 4];
    hex += kDigits[byte & 15];
  }
  return hex;
}

}  // namespace

Sha256::Sha256() : state_(kInitialState) {}

void Sha256::update(const void* data, size_t size) {
  const uint8_t* bytes = static_cast<const uint8_t*>(data);
  total_size_ += size;
  const CompressFn compress = chosen_compress();
  if (pending_size_ > 0) {
    const size_t take = std::min(size, 64 - pending_size_);
    std::memcpy(pending_.data() + pending_size_, bytes, take);
    pending_size_ += take;
    bytes += take;
    size -= take;
    if (pending_size_ < 64) return;
    compress(state_.data(), pending_.data(), 1);
    pending_size_ = 0;
  }
  compress(state_.data(), bytes, size / 64);
  bytes += size / 64 * 64;
  pending_size_ = size % 64;
  std::memcpy(pending_.data(), bytes, pending_size_);
}

void Sha256::update_both(Sha256& first, const void* first_data, size_t first_size, Sha256& second,
                         const void* second_data, size_t second_size) {
  const uint8_t* first_bytes = static_cast<const uint8_t*>(first_data);
  const uint8_t* second_bytes = static_cast<const uint8_t*>(second_data);
  // Each completes its pending block first, so that both go on from a block's start.
  auto complete_pending = [](Sha256& hash, const uint8_t*& bytes, size_t& size) {
    if (hash.pending_size_ == 0) return;
    const size_t take = std::min(size, 64 - hash.pending_size_);
    hash.update(bytes, take);
    bytes += take;
    size -= take;
  };
  complete_pending(first, first_bytes, first_size);
  complete_pending(second, second_bytes, second_size);
#ifdef MOEREF_SHA256_X86
  if (chosen_compress() == compress_sha_extensions && first.pending_size_ == 0 && second.pending_size_ == 0) {
    const size_t blocks = std::min(first_size, second_size) / 64;
    uint32_t* states[2] = {first.state_.data(), second.state_.data()};
    const uint8_t* messages[2] = {first_bytes, second_bytes};
    compress_streams<2>(states, messages, blocks);
    for (Sha256* hash : {&first, &second}) hash->total_size_ += 64 * blocks;
    first_bytes += 64 * blocks;
    second_bytes += 64 * blocks;
    first_size -= 64 * blocks;
    second_size -= 64 * blocks;
  }
#endif
  first.update(first_bytes, first_size);
  second.update(second_bytes, second_size);
}

std::array<uint8_t, 32> Sha256::finish() {
  return finish_with(chosen_compress(), state_, pending_, pending_size_, total_size_);
}

std::string Sha256::finish_hex() { return to_hex(finish()); }

std::string sha256_hex(const void* data, size_t size) {
  Sha256 hash;
  hash.update(data, size);
  return hash.finish_hex();
}

std::string sha256_hex_portable(const void* data, size_t size) {
  std::array<uint32_t, 8> state = kInitialState;
  std::array<uint8_t, 64> pending{};
  const uint8_t* bytes = static_cast<const uint8_t*>(data);
  compress_portable(state.data(), bytes, size / 64);
  std::memcpy(pending.data(), bytes + size / 64 * 64, size % 64);
  return to_hex(finish_with(compress_portable, state, pending, size % 64, size));
}

bool sha256_uses_cpu_extensions() {
#ifdef MOEREF_SHA256_X86
  return chosen_compress() == compress_sha_extensions;
#else
  return false;
#endif
}

}  // namespace moeref
