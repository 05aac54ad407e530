// Test data from splitmix64, a portable generator: the same seed gives the same
// numbers with any compiler and standard library (std::uniform_*_distribution
// does not promise that).
#pragma once

#include <cstdint>

namespace moeref::testing {

// splitmix64 (Steele, Lea and Flood 2014): advances `state` and returns the next 64 bits.
inline uint64_t splitmix64(uint64_t& state) {
  uint64_t z = (state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

// A double in [0, 1) with 24 random bits (so it is exact in float32 too).
inline double unit_interval(uint64_t& state) { return static_cast<double>(splitmix64(state) >> 40) / 16777216.0; }

// A float32 in [lo, hi) with 24 random bits.
inline float uniform_float(uint64_t& state, double lo, double hi) {
  return static_cast<float>(lo + (hi - lo) * unit_interval(state));
}

// An integer in [lo, hi], both ends included.
inline int64_t pick(uint64_t& state, int64_t lo, int64_t hi) {
  return lo + static_cast<int64_t>(splitmix64(state) % static_cast<uint64_t>(hi - lo + 1));
}

}  // namespace moeref::testing
