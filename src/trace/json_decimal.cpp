#include "moeref/json_decimal.hpp"

#include <charconv>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>

namespace moeref {

namespace {

bool is_digit(char c) { return c >= '0' && c <= '9'; }

// 10^0 .. 10^22: every one a double exactly (5^22 < 2^53).
constexpr double kPowersOfTen[] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,  1e8,  1e9,  1e10, 1e11,
                                   1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};
constexpr int kLargestExactPower = 22;

// Below these, ten or 10^8 times the digits so far plus more digits stays below 10^18.
constexpr uint64_t kBelowTen18Over10 = 100000000000000000u;  // 10^17
constexpr uint64_t kBelowTen18Over1e8 = 10000000000u;        // 10^10

// When the eight characters at p are all digits, sets `value` to the number they write
// and returns true. Eight bytes as one little-endian word: a byte is a digit when its
// high nibble is 3 and adding 6 leaves it 3 (so 0x30..0x39). The value is then summed
// pairwise: adjacent digits into 2-digit numbers, those into 4-digit ones, then 8.
bool eight_digits(const char* p, uint64_t& value) {
  uint64_t word;
  std::memcpy(&word, p, sizeof word);
  constexpr uint64_t kHighNibbles = 0xF0F0F0F0F0F0F0F0u, kThrees = 0x3333333333333333u;
  if ((((word & kHighNibbles) | (((word + 0x0606060606060606u) & kHighNibbles) >> 4))) != kThrees) return false;
  word -= 0x3030303030303030u;                               // each byte its digit, the first lowest
  word = (word * 10 + (word >> 8)) & 0x00FF00FF00FF00FFu;    // pairs: 10 d0 + d1 in the low byte of each
  word = (word * 100 + (word >> 16)) & 0x0000FFFF0000FFFFu;  // quads
  value = (word * 10000 + (word >> 32)) & 0xFFFFFFFFu;       // all eight
  return true;
}

// The float32 nearest the decimal text, as std::from_chars gives it (strtof past the
// float32 range: an infinity, or 0 / a subnormal).
float float32_by_from_chars(const char* p, size_t length) {
  float value = 0.0f;
  const std::from_chars_result result = std::from_chars(p, p + length, value);
  if (result.ec == std::errc::result_out_of_range) value = std::strtof(std::string(p, length).c_str(), nullptr);
  return value;
}

// True when the double d (positive, in float32's normal range) lies
// exactly halfway between two float32 values: of its 52 fraction bits, the 29 a float32
// lacks hold 1 followed by zeros.
bool halfway_between_floats(double d) {
  uint64_t bits;
  std::memcpy(&bits, &d, sizeof bits);
  constexpr uint64_t kDropped = (uint64_t{1} << 29) - 1;
  return (bits & kDropped) == uint64_t{1} << 28;
}

}  // namespace

JsonDecimal read_json_decimal(const char* p, const char* end) {
  JsonDecimal decimal;
  const char* q = p;
  const bool negative = q < end && *q == '-';
  if (negative) ++q;
  if (q >= end || !is_digit(*q)) return decimal;
  // The digits as one integer while it stays below 10^18 (leading zeros add nothing), and
  // the power of ten it is scaled by. A digit that does not fit leaves `all_digits_kept`
  // false: such a number is read by from_chars.
  uint64_t digits = 0;
  bool all_digits_kept = true;
  int64_t exponent = 0;
  // Reads the run of digits at q, eight at a time where it can; returns how many.
  auto take_digits = [&]() {
    const char* start = q;
    // (Eight at a time reads the bytes as one little-endian word.)
    const bool little_endian = __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__;
    for (uint64_t eight = 0; little_endian && end - q >= 8 && eight_digits(q, eight); q += 8) {
      if (digits < kBelowTen18Over1e8) {
        digits = digits * 100000000u + eight;
      } else {
        all_digits_kept = false;
      }
    }
    for (; q < end && is_digit(*q); ++q) {
      if (digits < kBelowTen18Over10) {
        digits = digits * 10u + static_cast<uint64_t>(*q - '0');
      } else {
        all_digits_kept = false;
      }
    }
    return static_cast<int64_t>(q - start);
  };
  if (*q == '0') {
    ++q;
  } else {
    take_digits();
  }
  decimal.is_integer = true;
  if (q < end && *q == '.') {
    decimal.is_integer = false;
    ++q;
    if (q >= end || !is_digit(*q)) return JsonDecimal{};
    exponent -= take_digits();
  }
  if (q < end && (*q == 'e' || *q == 'E')) {
    decimal.is_integer = false;
    ++q;
    const bool negative_exponent = q < end && *q == '-';
    if (q < end && (*q == '+' || *q == '-')) ++q;
    if (q >= end || !is_digit(*q)) return JsonDecimal{};
    // An exponent past a million is beyond any float32 (whatever the digits), and is not
    // added up further: from_chars decides such a number.
    int64_t written = 0;
    for (; q < end && is_digit(*q); ++q) {
      if (written < 1000000) {
        written = written * 10 + (*q - '0');
      } else {
        all_digits_kept = false;
      }
    }
    exponent += negative_exponent ? -written : written;
  }
  decimal.length = static_cast<size_t>(q - p);
  if (decimal.is_integer) return decimal;
  if (all_digits_kept && digits < (uint64_t{1} << 53) && exponent >= -kLargestExactPower &&
      exponent <= kLargestExactPower) {
    const double scale = kPowersOfTen[exponent < 0 ? -exponent : exponent];
    const double nearest = exponent < 0 ? static_cast<double>(digits) / scale : static_cast<double>(digits) * scale;
    if (nearest == 0.0) {
      decimal.value = negative ? -0.0f : 0.0f;
      return decimal;
    }
    // Here 1e-22 <= nearest < 2^53 1e22 < 1e38: well inside float32's normal range.
    if (!halfway_between_floats(nearest)) {
      const float magnitude = static_cast<float>(nearest);
      decimal.value = negative ? -magnitude : magnitude;
      return decimal;
    }
  }
  decimal.value = float32_by_from_chars(p, decimal.length);
  return decimal;
}

}  // namespace moeref
