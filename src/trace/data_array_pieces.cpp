// A large "data" array of an inline trace read by all threads: its text is cut at commas
// into pieces of about 4 MiB, each piece's values are counted (its commas), and each
// piece then reads its values straight into its own stretch of the array's float32
// buffer. Every value is read by itself (read_json_decimal), so the array holds the same
// float32 values, in the same order, as one reader going from start to end would give.

#include "data_array_pieces.hpp"

#include <algorithm>
#include <charconv>
#include <cstring>
#include <vector>

#include "data_array_scan.hpp"
#include "moeref/json_decimal.hpp"

namespace moeref {

namespace {

constexpr size_t kPieceBytes = size_t{4} << 20;

// The number at p: a float32 (an integer only when it is exactly one, as a double first,
// as the one-by-one reader takes it), and whether it was written as an integer. nullptr
// when there is no number, or an integer needs a double.
const char* read_number(const char* p, const char* end, float& value, bool& is_integer) {
  const JsonDecimal number = read_json_decimal(p, end);
  if (number.length == 0) return nullptr;
  is_integer = number.is_integer;
  if (number.is_integer) {
    int64_t integer = 0;
    if (std::from_chars(p, p + number.length, integer).ec != std::errc()) return nullptr;
    const double as_double = static_cast<double>(integer);
    value = static_cast<float>(as_double);
    if (static_cast<double>(value) != as_double) return nullptr;
  } else {
    value = number.value;
  }
  return p + number.length;
}

// The value at p (after any space): NaN / Infinity / -Infinity, bare or as a string, or
// a number (read_number). Returns the position after it, or nullptr.
const char* read_value(const char* p, const char* end, float& value, bool& is_integer) {
  while (p < end && is_json_space(*p)) ++p;
  if (p >= end) return nullptr;
  if (const size_t length = read_non_finite_word(p, end, value)) {
    is_integer = false;
    return p + length;
  }
  return read_number(p, end, value, is_integer);
}

// Reads the `count` comma-separated values of [p, end) into out[0, count). False on
// anything but exactly that.
bool read_piece(const char* p, const char* end, float* out, size_t count, bool& all_integers) {
  for (size_t i = 0; i < count; ++i) {
    bool is_integer = false;
    p = read_value(p, end, out[i], is_integer);
    if (p == nullptr) return false;
    all_integers = all_integers && is_integer;
    while (p < end && is_json_space(*p)) ++p;
    if (i + 1 < count) {
      if (p >= end || *p != ',') return false;
      ++p;
    }
  }
  return p == end;
}

}  // namespace

bool read_data_array_in_pieces(const char* body, const char* close, DataArray& array) {
  // Pieces end just before a comma; the next one starts after it.
  std::vector<std::pair<const char*, const char*>> pieces;
  const char* start = body;
  while (start < close) {
    const char* nominal = start + std::min(kPieceBytes, static_cast<size_t>(close - start));
    const char* comma = nominal < close
                            ? static_cast<const char*>(std::memchr(nominal, ',', static_cast<size_t>(close - nominal)))
                            : nullptr;
    const char* piece_end = comma != nullptr ? comma : close;
    pieces.emplace_back(start, piece_end);
    start = comma != nullptr ? comma + 1 : close;
  }
  // A comma just before ']' ends the last piece and starts none: a trailing comma, which
  // JSON does not allow (the one-by-one reader reports it).
  if (pieces.empty() || pieces.back().second != close) return false;
  const int64_t n_pieces = static_cast<int64_t>(pieces.size());
  std::vector<size_t> first(pieces.size() + 1, 0);
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n_pieces; ++i) {
    const auto& [begin, end] = pieces[static_cast<size_t>(i)];
    first[static_cast<size_t>(i) + 1] = count_commas(begin, end) + 1;
  }
  for (size_t i = 0; i < pieces.size(); ++i) first[i + 1] += first[i];
  array = DataArray();
  array.floats.resize(first.back());
  std::vector<char> read(pieces.size(), 0), integers(pieces.size(), 1);
#pragma omp parallel for schedule(dynamic)
  for (int64_t i = 0; i < n_pieces; ++i) {
    const size_t k = static_cast<size_t>(i);
    bool all_integers = true;
    read[k] = read_piece(pieces[k].first, pieces[k].second, array.floats.data() + first[k], first[k + 1] - first[k],
                         all_integers)
                  ? 1
                  : 0;
    integers[k] = all_integers ? 1 : 0;
  }
  if (std::find(read.begin(), read.end(), 0) != read.end()) {
    array = DataArray();
    return false;
  }
  array.all_integers = std::find(integers.begin(), integers.end(), 0) == integers.end();
  return true;
}

}  // namespace moeref
