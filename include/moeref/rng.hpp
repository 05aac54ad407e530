// Counter-based random numbers: Philox-4x32-10 (Salmon et al., SC'11).
//
// Every generated value is a pure function of (seed, stream, element index),
// so no value depends on loop order or thread count. A stream is named after
// the input it fills (see stream_id), so adding an input never shifts the
// values of another one.
#pragma once

#include <array>
#include <cstdint>
#include <string>

namespace moeref {

// Name written into traces so that a reader knows how generated inputs were made.
inline constexpr const char* kGeneratorVersion = "philox4x32-10/moeref-v1";

// One Philox-4x32 block with 10 rounds.
std::array<uint32_t, 4> philox4x32_10(std::array<uint32_t, 4> counter, std::array<uint32_t, 2> key);

// 32-bit FNV-1a of an input name: the stream id of that input.
uint32_t stream_id(const std::string& input_name);

// U[0,1) float32 with 24 random bits: (word0 >> 8) * 2^-24, where word0 is the
// first output word of the block at counter (index_lo, index_hi, stream, 0) and
// key (seed_lo, seed_hi).
float uniform_01(uint64_t seed, uint32_t stream, uint64_t index);

// lo + (hi - lo) * u computed in double and rounded once to float32.
float uniform_range(uint64_t seed, uint32_t stream, uint64_t index, double lo, double hi);

}  // namespace moeref
