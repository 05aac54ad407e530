// Reading a config's dims: letters that must be given, and derived ones that may be.
//
// Dims are single capitals (spec/notation.md): B batch, L length, G groups,
// S group size, E experts, C expert capacity, M model, H hidden, N output.
#pragma once

#include <cstdint>
#include <string>

#include "moeref/config.hpp"

namespace moeref {

// Fails naming dims.LETTER and `why` when the config does not give it.
void require_dim(const Config& config, const char* letter, const std::string& why);

// A derived dim may be given (a trace's resolved config gives all of them); then it
// must equal what the source's rule derives, named in the message.
void check_derived_dim(const Config& config, const char* letter, int64_t derived, const std::string& rule);

// The given extent, or `fallback` when the config does not give it.
int64_t dim_or(const Config& config, const char* letter, int64_t fallback);

}  // namespace moeref
