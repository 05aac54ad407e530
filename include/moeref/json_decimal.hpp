// Reading one JSON number of a trace's "data" array in one pass over its characters:
// its length (the JSON grammar checked), and, for a decimal with a fraction or an
// exponent, the float32 nearest to it (ties to even), as std::from_chars gives.
//
// Most decimals a trace holds (the shortest text of a float32: at most 9 significant
// digits and a small exponent) are read exactly without from_chars: the digits as an
// integer m < 2^53 and a power of ten 10^k with |k| <= 22 are both doubles exactly, so
// m * 10^k (or m / 10^-k) rounds once, to the double d nearest the decimal. Rounding d
// to float32 then gives the float32 nearest the decimal, unless d lies exactly halfway
// between two float32 values (the decimal may lie on either side of that midpoint, or
// on it): those, and everything else (more digits, larger exponents), go to
// std::from_chars. (Such d lie between 1e-22 and 1e38, where every float32 is normal.)
#pragma once

#include <cstddef>

namespace moeref {

struct JsonDecimal {
  size_t length = 0;        // 0: no JSON number starts here
  bool is_integer = false;  // no fraction and no exponent: `value` is not set
  float value = 0.0f;
};

// The JSON number -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)? at [p, end).
JsonDecimal read_json_decimal(const char* p, const char* end);

}  // namespace moeref
