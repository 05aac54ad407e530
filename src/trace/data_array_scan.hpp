// What both readers of a "data" array's text share (src/trace/json_document.cpp reads
// one value after another; src/trace/data_array_pieces.cpp reads pieces side by side).
#pragma once

#include <cstddef>

namespace moeref {

inline bool is_json_space(char c) { return c == ' ' || c == '\n' || c == '\r' || c == '\t'; }

// The number of ',' in [p, end).
size_t count_commas(const char* p, const char* end);

// NaN, Infinity or -Infinity at p, as a bare word (Python's json writes them so) or as
// the string moeref writes: sets `value` and returns the word's length with its quotes,
// else 0.
size_t read_non_finite_word(const char* p, const char* end, float& value);

}  // namespace moeref
