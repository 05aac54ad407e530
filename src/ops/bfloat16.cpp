#include "moeref/ops/bfloat16.hpp"

#include <cmath>
#include <cstdint>
#include <cstring>

namespace moeref::ops {

float round_to_bfloat16(float x) {
  uint32_t bits;
  std::memcpy(&bits, &x, sizeof bits);
  if (std::isnan(x)) {
    bits = (bits | 0x00400000u) & 0xffff0000u;  // a quiet NaN, sign kept
  } else {
    // Add half an ulp of bfloat16 minus one, plus the lowest kept bit: ties go to even.
    const uint32_t lowest_kept = (bits >> 16) & 1u;
    bits = (bits + 0x7fffu + lowest_kept) & 0xffff0000u;
  }
  float out;
  std::memcpy(&out, &bits, sizeof out);
  return out;
}

}  // namespace moeref::ops
