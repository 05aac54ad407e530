// read_json_decimal: the JSON number grammar and the float32 nearest each decimal, bit
// for bit what std::from_chars gives (strtof past the float32 range), on the texts a
// trace holds and on texts built to land on the exact-arithmetic path's edges.

#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "moeref/json_decimal.hpp"
#include "test_support.hpp"

using moeref::testing::bits_of;
using moeref::testing::float_of;

namespace {

float from_chars_float(const std::string& text) {
  float value = 0.0f;
  const std::from_chars_result result = std::from_chars(text.data(), text.data() + text.size(), value);
  if (result.ec == std::errc::result_out_of_range) value = std::strtof(text.c_str(), nullptr);
  return value;
}

// The text must read whole as a decimal, to from_chars's float32 bit for bit. Returns
// false (after reporting) on the first difference.
bool reads_as_from_chars(const std::string& text) {
  const moeref::JsonDecimal decimal = moeref::read_json_decimal(text.data(), text.data() + text.size());
  if (decimal.length != text.size() || decimal.is_integer) {
    FAIL_CHECK("\"" << text << "\": length " << decimal.length << ", is_integer " << decimal.is_integer);
    return false;
  }
  const float expected = from_chars_float(text);
  if (bits_of(decimal.value) != bits_of(expected)) {
    FAIL_CHECK("\"" << text << "\": read " << decimal.value << " (bits " << bits_of(decimal.value)
                    << "), from_chars gives " << expected << " (bits " << bits_of(expected) << ")");
    return false;
  }
  return true;
}

struct Counter {
  uint64_t state;
  uint32_t next() {
    state = state * 6364136223846793005ULL + 1442695040888963407ULL;
    return static_cast<uint32_t>(state >> 32);
  }
};

}  // namespace

TEST_CASE("json decimal: the shortest and the printf texts of float32 values read back to their bits",
          "[trace][json_decimal]") {
  Counter random{2026};
  int failures = 0;
  char text[64];
  for (int i = 0; i < 400000 && failures < 5; ++i) {
    uint32_t bits = random.next();
    if (i % 4 == 0) bits = (bits & 0x807fffffu) | ((112u + bits % 32u) << 23);  // exponents near 1
    const float value = float_of(bits);
    if (!std::isfinite(value)) continue;
    const std::to_chars_result shortest = std::to_chars(text, text + sizeof text, value);
    std::string written(text, shortest.ptr);
    if (written.find_first_of(".e") == std::string::npos) written += ".0";  // a JSON decimal, not an integer
    failures += reads_as_from_chars(written) ? 0 : 1;
    if (bits_of(from_chars_float(written)) != bits) FAIL("the shortest text " << written << " lost the bits");
    for (const char* format : {"%.9g", "%.8e", "%.12f", "%.17g", "%.3e"}) {
      std::snprintf(text, sizeof text, format, static_cast<double>(value));
      std::string printed = text;
      if (printed.find_first_of(".e") == std::string::npos) printed += ".0";
      if (printed.size() > 60) continue;
      failures += reads_as_from_chars(printed) ? 0 : 1;
    }
  }
  CHECK(failures == 0);
}

TEST_CASE("json decimal: random digits, points and exponents read as from_chars reads them", "[trace][json_decimal]") {
  Counter random{77};
  int failures = 0;
  for (int i = 0; i < 300000 && failures < 5; ++i) {
    std::string text = random.next() % 2 ? "-" : "";
    const int int_digits = static_cast<int>(random.next() % 12);
    const int frac_digits = static_cast<int>(random.next() % 24);
    const int leading_zeros = random.next() % 3 == 0 ? static_cast<int>(random.next() % 12) : 0;
    if (int_digits == 0) {
      text += '0';
    } else {
      text += static_cast<char>('1' + random.next() % 9);
      for (int d = 1; d < int_digits; ++d) text += static_cast<char>('0' + random.next() % 10);
    }
    const bool has_fraction = frac_digits > 0 || int_digits == 0;
    if (has_fraction) {
      text += '.';
      for (int d = 0; d < leading_zeros; ++d) text += '0';
      for (int d = 0; d < std::max(frac_digits, 1); ++d) text += static_cast<char>('0' + random.next() % 10);
    }
    if (!has_fraction || random.next() % 2) {
      text += random.next() % 2 ? 'e' : 'E';
      const uint32_t sign = random.next() % 3;
      if (sign == 1) text += '-';
      if (sign == 2) text += '+';
      text += std::to_string(random.next() % 60);
    }
    failures += reads_as_from_chars(text) ? 0 : 1;
  }
  CHECK(failures == 0);
}

TEST_CASE("json decimal: decimals on or next to a float32 midpoint, and at the range's ends", "[trace][json_decimal]") {
  // Between 2^24 and 2^26 the float32 values are 2 or 4 apart: the odd integers (and
  // f + 2 for f a multiple of 4 above 2^25) are exactly halfway, ties to even decide.
  int failures = 0;
  Counter random{5};
  for (int i = 0; i < 20000 && failures < 5; ++i) {
    const uint64_t base = (uint64_t{1} << 24) + (random.next() % (uint64_t{3} << 24));
    for (const uint64_t n : {base | 1u, (base & ~uint64_t{3}) + 2u, base}) {
      const std::string digits = std::to_string(n);
      for (const std::string& text :
           {digits + ".0", digits + ".00000", digits + "e0",
            digits.substr(0, 1) + "." + digits.substr(1) + "e" + std::to_string(digits.size() - 1), digits + ".0000001",
            digits + ".4999999", digits + ".5000001", "-" + digits + ".0"}) {
        failures += reads_as_from_chars(text) ? 0 : 1;
      }
    }
  }
  // Decimals of 16 digits (below 2^53) within 10^-15 of a midpoint 1 + (2j + 1) 2^-24
  // between two float32 values in [1, 2): for about a fifth of them the nearest double is
  // the midpoint itself though the decimal is not, and only the decimal's side of the
  // midpoint says which float32 is nearest.
  int on_midpoint = 0;
  constexpr uint64_t kFiveTo15 = 30517578125u;  // 5^15
  for (int i = 0; i < 40000 && failures < 5; ++i) {
    const uint64_t twice_j_plus_1 = 2 * (random.next() % (uint64_t{1} << 23)) + 1;
    const uint64_t midpoint_in_2_24ths = (uint64_t{1} << 24) + twice_j_plus_1;  // M = this / 2^24
    // M 10^15 = this 5^15 / 2^9: the nearest integer, then one either side.
    const uint64_t scaled = midpoint_in_2_24ths * kFiveTo15;
    const uint64_t nearest = (scaled + 256) / 512;
    for (const uint64_t digits : {nearest - 1, nearest, nearest + 1}) {
      const std::string text = std::to_string(digits).insert(1, ".");
      const double as_double = static_cast<double>(digits) / 1e15;
      on_midpoint += as_double * 16777216.0 == static_cast<double>(midpoint_in_2_24ths) ? 1 : 0;
      failures += reads_as_from_chars(text) ? 0 : 1;
    }
  }
  CHECK(on_midpoint > 1000);  // the hard case is there to be had
  for (const char* text : {"0.0",
                           "-0.0",
                           "0e0",
                           "-0e-5",
                           "0.000000000000000000000000000000000000000000001",
                           "1.17549435e-38",
                           "1.1754942e-38",
                           "1e-45",
                           "1.4e-45",
                           "7e-46",
                           "-1e-50",
                           "3.4028235e38",
                           "3.4028236e38",
                           "3.40282357e38",
                           "3.5e38",
                           "-1e39",
                           "1e400",
                           "123456789012345678901234567890.5",
                           "0.1",
                           "0.2",
                           "0.3",
                           "9007199254740993.0",
                           "9007199254740992.5",
                           "1e22",
                           "1e23",
                           "1e-22",
                           "1e-23",
                           "4.9406564584124654e-324",
                           "7.038531e-26"}) {
    failures += reads_as_from_chars(text) ? 0 : 1;
  }
  // A fraction of a million digits against an exponent past the part that is added up:
  // 10^-1000000 x 10^10000000 overflows, whatever the first million of the exponent says.
  const std::string million_zeros(999999, '0');
  for (const std::string& text : {"0." + million_zeros + "1e10000000", "0." + million_zeros + "1e1000000",
                                  "0." + million_zeros + "1e1000022", "1" + million_zeros + ".0e-10000000"}) {
    failures += reads_as_from_chars(text) ? 0 : 1;
  }
  CHECK(failures == 0);
}

TEST_CASE("json decimal: lengths follow the JSON number grammar", "[trace][json_decimal]") {
  struct Case {
    const char* text;
    size_t length;
    bool is_integer;
  };
  const std::vector<Case> cases = {{"0", 1, true},
                                   {"-0", 2, true},
                                   {"17,", 2, true},
                                   {"01", 1, true},
                                   {"-", 0, false},
                                   {"", 0, false},
                                   {"+1", 0, false},
                                   {".5", 0, false},
                                   {"1.", 0, false},
                                   {"1.e5", 0, false},
                                   {"1e", 0, false},
                                   {"1e+", 0, false},
                                   {"1.5x", 3, false},
                                   {"2e-7]", 4, false},
                                   {"-0.25,", 5, false},
                                   {"12345678901234567890123", 23, true},
                                   {"1.2345678901234567890123", 24, false},
                                   {"1E+05 ", 5, false}};
  for (const Case& c : cases) {
    CAPTURE(c.text);
    const std::string text = c.text;
    const moeref::JsonDecimal decimal = moeref::read_json_decimal(text.data(), text.data() + text.size());
    CHECK(decimal.length == c.length);
    if (c.length > 0) CHECK(decimal.is_integer == c.is_integer);
  }
  // A number that ends where the text ends is read up to there and no further.
  const std::string buffer = "0.12345678999";
  const moeref::JsonDecimal cut = moeref::read_json_decimal(buffer.data(), buffer.data() + 9);
  CHECK(cut.length == 9);
  CHECK(bits_of(cut.value) == bits_of(from_chars_float("0.1234567")));
}
