#include "moeref/rng.hpp"

namespace moeref {

namespace {

constexpr uint32_t kPhiloxM0 = 0xD2511F53u;
constexpr uint32_t kPhiloxM1 = 0xCD9E8D57u;
constexpr uint32_t kPhiloxW0 = 0x9E3779B9u;
constexpr uint32_t kPhiloxW1 = 0xBB67AE85u;

void mulhilo(uint32_t a, uint32_t b, uint32_t& hi, uint32_t& lo) {
  const uint64_t product = static_cast<uint64_t>(a) * static_cast<uint64_t>(b);
  hi = static_cast<uint32_t>(product >> 32);
  lo = static_cast<uint32_t>(product);
}

}  // namespace

std::array<uint32_t, 4> philox4x32_10(std::array<uint32_t, 4> counter, std::array<uint32_t, 2> key) {
  for (int round = 0; round < 10; ++round) {
    uint32_t hi0, lo0, hi1, lo1;
    mulhilo(kPhiloxM0, counter[0], hi0, lo0);
    mulhilo(kPhiloxM1, counter[2], hi1, lo1);
    counter = {hi1 ^ counter[1] ^ key[0], lo1, hi0 ^ counter[3] ^ key[1], lo0};
    key[0] += kPhiloxW0;
    key[1] += kPhiloxW1;
  }
  return counter;
}

uint32_t stream_id(const std::string& input_name) {
  uint32_t hash = 2166136261u;
  for (unsigned char ch : input_name) {
    hash ^= ch;
    hash *= 16777619u;
  }
  return hash;
}

std::array<float, 4> uniform_01_block(uint64_t seed, uint32_t stream, uint64_t block) {
  const std::array<uint32_t, 4> words =
      philox4x32_10({static_cast<uint32_t>(block), static_cast<uint32_t>(block >> 32), stream, 0u},
                    {static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32)});
  // 24 bits fill a float32 mantissa exactly, so every value is exact and < 1.
  return {static_cast<float>(words[0] >> 8) * 0x1.0p-24f, static_cast<float>(words[1] >> 8) * 0x1.0p-24f,
          static_cast<float>(words[2] >> 8) * 0x1.0p-24f, static_cast<float>(words[3] >> 8) * 0x1.0p-24f};
}

float uniform_01(uint64_t seed, uint32_t stream, uint64_t index) {
  return uniform_01_block(seed, stream, index / 4)[index % 4];
}

float scale_uniform(float u, double lo, double hi) {
  return static_cast<float>(lo + (hi - lo) * static_cast<double>(u));
}

float uniform_range(uint64_t seed, uint32_t stream, uint64_t index, double lo, double hi) {
  return scale_uniform(uniform_01(seed, stream, index), lo, hi);
}

}  // namespace moeref
