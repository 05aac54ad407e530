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

// Element i of a stream is word (i mod 4) of the block at counter
// (b mod 2^32, b div 2^32, stream, 0) with b = i div 4, and key
// (seed mod 2^32, seed div 2^32), turned into U[0,1) float32 with 24 random
// bits: (word >> 8) * 2^-24.
float uniform_01(uint64_t seed, uint32_t stream, uint64_t index);

// The four consecutive elements 4*block .. 4*block+3 of a stream at once.
std::array<float, 4> uniform_01_block(uint64_t seed, uint32_t stream, uint64_t block);

// lo + (hi - lo) * u computed in double and rounded once to float32.
float scale_uniform(float u, double lo, double hi);

// scale_uniform(uniform_01(seed, stream, index), lo, hi).
float uniform_range(uint64_t seed, uint32_t stream, uint64_t index, double lo, double hi);

}  // namespace moeref
