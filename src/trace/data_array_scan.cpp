#include "data_array_scan.hpp"

#include <cmath>
#include <cstdint>
#include <cstring>
#include <string_view>

namespace moeref {

// The number of ',' in [p, end), eight bytes at a time: a byte of w ^ ",,,,,,,," is zero
// exactly where w holds a comma, and ~(((v & 0x7f..) + 0x7f..) | v) sets the high bit of
// exactly the zero bytes of v (no carry crosses a byte).
size_t count_commas(const char* p, const char* end) {
  constexpr uint64_t kCommas = 0x2c2c2c2c2c2c2c2cULL, kLow7 = 0x7f7f7f7f7f7f7f7fULL, kHigh = 0x8080808080808080ULL;
  size_t count = 0;
  for (; end - p >= 8; p += 8) {
    uint64_t word;
    std::memcpy(&word, p, sizeof word);
    const uint64_t v = word ^ kCommas;
    // One bit a comma, at the top of its byte: shifted to the bottom, the multiplication
    // adds the eight bytes into the top one (at most 8: no carry out of it).
    const uint64_t ones = (~(((v & kLow7) + kLow7) | v) & kHigh) >> 7;
    count += static_cast<size_t>((ones * 0x0101010101010101ULL) >> 56);
  }
  for (; p < end; ++p) count += *p == ',' ? 1 : 0;
  return count;
}

size_t read_non_finite_word(const char* p, const char* end, float& value) {
  const bool quoted = p < end && *p == '"';
  const char* word = quoted ? p + 1 : p;
  if (word >= end || (*word != 'N' && *word != 'I' && *word != '-')) return 0;  // most values: a digit or a sign
  const std::string_view rest(word, static_cast<size_t>(end - word));
  for (const auto& [text, meaning] :
       {std::pair<std::string_view, float>{"NaN", NAN}, std::pair<std::string_view, float>{"Infinity", INFINITY},
        std::pair<std::string_view, float>{"-Infinity", -INFINITY}}) {
    if (rest.substr(0, text.size()) != text) continue;
    const char* after = word + text.size();
    if (quoted) {
      if (after >= end || *after != '"') return 0;
      ++after;
    }
    value = meaning;
    return static_cast<size_t>(after - p);
  }
  return 0;
}

}  // namespace moeref
