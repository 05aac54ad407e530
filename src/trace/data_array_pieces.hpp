// Reading one large "data" array of an inline trace with every thread
// (src/trace/data_array_pieces.cpp).
#pragma once

#include "moeref/trace.hpp"

namespace moeref {

// Arrays whose text is at least this long are read in pieces.
inline constexpr size_t kDataArrayPiecesFrom = size_t{8} << 20;

// Reads the array body [body, close) (close: its ']') into `array` as float32 values,
// as the one-by-one reader would: true when every value is a number, or NaN /
// Infinity / -Infinity (bare or as strings), that is exactly a float32. Otherwise
// leaves `array` empty and returns false: the caller reads it one by one, which keeps
// the values that need doubles and reports what is wrong.
bool read_data_array_in_pieces(const char* body, const char* close, DataArray& array);

}  // namespace moeref
