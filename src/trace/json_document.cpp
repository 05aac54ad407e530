// Fast reading of large JSON documents: every array under a "data" key goes
// straight into a vector of numbers (float32 while each is exactly one, else
// doubles) instead of a JSON value per number, so a trace of 50 million float32
// values reads in seconds and a few bytes per value.

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <limits>
#include <string>
#include <string_view>

#include "data_array_pieces.hpp"
#include "data_array_scan.hpp"
#include "moeref/error.hpp"
#include "moeref/json_decimal.hpp"
#include "moeref/trace.hpp"

namespace moeref {

namespace {

using DomParser = nlohmann::detail::json_sax_dom_parser<nlohmann::json>;

// The double nearest to `value` that rounds to the same float32 as `text` does:
// decimal -> double -> float32 is not always decimal -> float32 (7.038531e-26).
double float32_exact_double(double value, const std::string& text) {
  const float exact = std::strtof(text.c_str(), nullptr);
  while (static_cast<float>(value) != exact && std::isfinite(value)) {
    value = std::nextafter(value, static_cast<double>(exact));
  }
  return value;
}

// Deeper nesting than this is refused: copying, comparing and printing a JSON value
// recurse once per level, and a document nested 200000 deep overflowed the stack.
// Traces and configs nest 5 levels deep; a backend's generator record may add a few.
constexpr int kMaxJsonDepth = 256;

// The DOM parser, with every float exact (above) and the depth bounded: start_object and
// start_array return false past kMaxJsonDepth, which stops sax_parse (too_deep() says why).
class ExactFloatDomParser : public DomParser {
 public:
  using DomParser::DomParser;
  bool number_float(double value, const std::string& text) {
    return DomParser::number_float(float32_exact_double(value, text), text);
  }
  bool start_object(std::size_t size) { return deeper() && DomParser::start_object(size); }
  bool start_array(std::size_t size) { return deeper() && DomParser::start_array(size); }
  bool end_object() {
    --depth_;
    return DomParser::end_object();
  }
  bool end_array() {
    --depth_;
    return DomParser::end_array();
  }
  bool too_deep() const { return too_deep_; }

 private:
  bool deeper() {
    too_deep_ = ++depth_ > kMaxJsonDepth;
    return !too_deep_;
  }
  int depth_ = 0;
  bool too_deep_ = false;
};

[[noreturn]] void fail_too_deep(const std::string& source_name) {
  fail_input(source_name, "JSON nested more than " + std::to_string(kMaxJsonDepth) + " levels deep",
             "at most " + std::to_string(kMaxJsonDepth) + " levels of nested arrays and objects");
}

// Builds the DOM for everything except "data" arrays, which it collects into
// `arrays` and replaces by {"$data_array": index}.
class DataArraySplitter {
 public:
  DataArraySplitter(nlohmann::json& result, DataArrays& arrays) : dom_(result, true), arrays_(arrays) {}

  bool null() { return in_data() ? bad("null") : dom_.null(); }
  bool boolean(bool value) { return in_data() ? bad("a boolean") : dom_.boolean(value); }
  bool number_integer(int64_t value) {
    return in_data() ? add(static_cast<double>(value), true) : dom_.number_integer(value);
  }
  bool number_unsigned(uint64_t value) {
    return in_data() ? add(static_cast<double>(value), true) : dom_.number_unsigned(value);
  }
  bool number_float(double value, const std::string& text) {
    return in_data() ? add(float32_exact_double(value, text), false)
                     : dom_.number_float(float32_exact_double(value, text), text);
  }
  bool string(std::string& text) {
    if (!in_data()) return dom_.string(text);
    if (nested_depth_ > 0) return true;
    if (text == "NaN") return add(std::nan(""), false);
    if (text == "Infinity") return add(INFINITY, false);
    if (text == "-Infinity") return add(-INFINITY, false);
    return bad("the string \"" + text.substr(0, 40) + "\"");
  }
  bool binary(nlohmann::json::binary_t& value) { return in_data() ? bad("binary data") : dom_.binary(value); }
  bool start_object(std::size_t size) {
    pending_data_key_ = false;
    if (in_data()) {
      ++nested_depth_;
      return bad("an object");
    }
    return dom_.start_object(size);
  }
  bool key(std::string& name) {
    if (in_data()) return true;
    if (name == kDataArrayPlaceholder) ++placeholder_keys_;
    pending_data_key_ = name == "data";
    return dom_.key(name);
  }
  bool end_object() {
    if (in_data()) {
      --nested_depth_;
      return true;
    }
    return dom_.end_object();
  }
  bool start_array(std::size_t size) {
    if (in_data()) {
      ++nested_depth_;
      return bad("a nested array");
    }
    if (pending_data_key_) {
      pending_data_key_ = false;
      collecting_ = true;
      nested_depth_ = 0;
      arrays_.emplace_back();
      return true;
    }
    return dom_.start_array(size);
  }
  bool end_array() {
    if (!in_data()) return dom_.end_array();
    if (nested_depth_ > 0) {
      --nested_depth_;
      return true;
    }
    collecting_ = false;
    // The placeholder that tensor_from_json resolves against `arrays`.
    std::string placeholder_key = kDataArrayPlaceholder;
    return dom_.start_object(1) && dom_.key(placeholder_key) &&
           dom_.number_unsigned(static_cast<uint64_t>(arrays_.size() - 1)) && dom_.end_object();
  }
  bool parse_error(std::size_t position, const std::string& token, const nlohmann::detail::exception& error) {
    return dom_.parse_error(position, token, error);
  }
  // How many "$data_array" keys the text had. The placeholders end_array adds do not
  // count; the ones lift_data_arrays wrote into its text do.
  size_t placeholder_keys() const { return placeholder_keys_; }
  bool too_deep() const { return dom_.too_deep(); }

 private:
  bool in_data() const { return collecting_; }
  bool add(double value, bool is_integer) {
    if (nested_depth_ > 0) return true;
    DataArray& array = arrays_.back();
    array.push(value);
    array.all_integers = array.all_integers && is_integer;
    return true;
  }
  bool bad(const std::string& what) {
    DataArray& array = arrays_.back();
    if (array.error.empty()) {
      array.error = what + " at position " + std::to_string(array.size());
    }
    array.push(std::nan(""));
    array.all_integers = false;
    return true;
  }

  ExactFloatDomParser dom_;
  DataArrays& arrays_;
  bool pending_data_key_ = false;
  bool collecting_ = false;
  int nested_depth_ = 0;
  size_t placeholder_keys_ = 0;
};

// Reads the array body after '[' up to its ']' when it holds only numbers and the
// NaN/Infinity strings. Returns the position after ']', or nullptr to let the
// general parser handle (and report) anything else.
const char* scan_data_array(const char* p, const char* end, DataArray& array) {
  // Room for every value at once (one per comma up to the first ']'), so a large array
  // is not copied as it grows; only a hint if the array turns out malformed.
  if (const char* close = static_cast<const char*>(std::memchr(p, ']', static_cast<size_t>(end - p)))) {
    array.reserve(count_commas(p, close) + 1);
  }
  float word_value = 0.0f;
  while (true) {
    while (p < end && is_json_space(*p)) ++p;
    if (p < end && *p == ']' && array.size() == 0) return p + 1;
    if (p >= end) return nullptr;
    if (const size_t length = read_non_finite_word(p, end, word_value)) {
      array.push_float(word_value);
      array.all_integers = false;
      p += length;
    } else {
      // Straight to float32: decimal -> float32 in one rounding.
      const JsonDecimal number = read_json_decimal(p, end);
      if (number.length == 0) return nullptr;
      if (number.is_integer) {
        int64_t value = 0;
        if (std::from_chars(p, p + number.length, value).ec != std::errc()) return nullptr;
        array.push(static_cast<double>(value));
      } else {
        array.push_float(number.value);
        array.all_integers = false;
      }
      p += number.length;
    }
    while (p < end && is_json_space(*p)) ++p;
    if (p >= end) return nullptr;
    if (*p == ']') return p + 1;
    if (*p != ',') return nullptr;
    ++p;
  }
}

// One pass over the text, outside strings, that lifts every "data": [numbers]
// array into `arrays` and leaves {"$data_array": k} in a much smaller text.
// Returns false when some data array is not plain numbers (then the caller uses
// the general SAX path, which reports the problem precisely).
bool lift_data_arrays(std::string_view text, std::string& rest, DataArrays& arrays,
                      const std::function<void(size_t)>& release_before) {
  const char* p = text.data();
  const char* end = p + text.size();
  const char* copied_up_to = p;
  rest.reserve(1 << 16);
  // What `rest` holds and the arrays hold is not read from the text again: every 64 MiB
  // the part before the last array copied is released.
  constexpr size_t kReleaseEvery = size_t{64} << 20;
  size_t released = 0;
  while (p < end) {
    const size_t done = static_cast<size_t>(copied_up_to - text.data());
    if (release_before && done - released >= kReleaseEvery) {
      release_before(done);
      released = done;
    }
    const char* quote = static_cast<const char*>(std::memchr(p, '"', static_cast<size_t>(end - p)));
    if (quote == nullptr) break;
    // Find the closing quote, honouring backslash escapes.
    const char* q = quote + 1;
    while (q < end && *q != '"') q += (*q == '\\') ? 2 : 1;
    if (q >= end) break;
    const bool is_data_key = (q - quote - 1) == 4 && std::memcmp(quote + 1, "data", 4) == 0;
    p = q + 1;
    if (!is_data_key) continue;
    const char* r = p;
    while (r < end && is_json_space(*r)) ++r;
    if (r >= end || *r != ':') continue;
    ++r;
    while (r < end && is_json_space(*r)) ++r;
    if (r >= end || *r != '[') continue;
    arrays.emplace_back();
    // A large array is read by every thread at once, where it holds what they read.
    const char* body = r + 1;
    const char* close = static_cast<const char*>(std::memchr(body, ']', static_cast<size_t>(end - body)));
    const bool in_pieces = close != nullptr && static_cast<size_t>(close - body) >= kDataArrayPiecesFrom &&
                           read_data_array_in_pieces(body, close, arrays.back());
    const char* after = in_pieces ? close + 1 : scan_data_array(body, end, arrays.back());
    if (after == nullptr) return false;
    rest.append(copied_up_to, r);
    rest += "{\"";
    rest += kDataArrayPlaceholder;
    rest += "\":" + std::to_string(arrays.size() - 1) + "}";
    copied_up_to = after;
    p = after;
  }
  rest.append(copied_up_to, end);
  return true;
}

// Python's json module writes float("nan") and the infinities as the bare words NaN,
// Infinity and -Infinity, which JSON does not have. A candidate written that way is
// read as if they were the strings moeref writes ("NaN", ...). Returns the text with
// every such word outside a string quoted, or an empty string when it has none.
std::string quote_non_finite_words(std::string_view text) {
  if (text.find("NaN") == std::string_view::npos && text.find("Infinity") == std::string_view::npos) return "";
  std::string out;
  bool changed = false;
  const size_t n = text.size();
  size_t copied = 0;
  for (size_t i = 0; i < n;) {
    const char c = text[i];
    if (c == '"') {  // skip the string, honouring backslash escapes
      ++i;
      while (i < n && text[i] != '"') i += text[i] == '\\' ? 2 : 1;
      ++i;
      continue;
    }
    size_t length = 0;
    if (text.compare(i, 3, "NaN") == 0) length = 3;
    if (text.compare(i, 8, "Infinity") == 0) length = 8;
    if (text.compare(i, 9, "-Infinity") == 0) length = 9;
    if (length == 0) {
      ++i;
      continue;
    }
    if (!changed) out.reserve(n + 1024);
    changed = true;
    out.append(text, copied, i - copied);
    out += '"';
    out.append(text, i, length);
    out += '"';
    i += length;
    copied = i;
  }
  if (!changed) return "";
  out.append(text, copied, std::string::npos);
  return out;
}

}  // namespace

nlohmann::json parse_json_text(const std::string& original, const std::string& source_name) {
  const std::string quoted = quote_non_finite_words(original);
  const std::string& text = quoted.empty() ? original : quoted;
  try {
    nlohmann::json result;
    ExactFloatDomParser parser(result, true);
    if (!nlohmann::json::sax_parse(text, &parser) && parser.too_deep()) fail_too_deep(source_name);
    return result;
  } catch (const nlohmann::json::exception& error) {
    throw InputError(source_name + ": not valid JSON (" + error.what() + ")");
  }
}

ParsedDocument parse_json_document(std::string_view original, const std::string& source_name,
                                   const std::function<void(size_t)>& release_before) {
  ParsedDocument parsed;
  std::string rest;
  // The data arrays come out first (bare NaN and Infinity words included), then the
  // small rest has its bare words quoted and is parsed.
  if (lift_data_arrays(original, rest, parsed.arrays, release_before)) {
    try {
      const std::string quoted_rest = quote_non_finite_words(rest);
      const std::string& rest_text = quoted_rest.empty() ? rest : quoted_rest;
      const size_t lifted = parsed.arrays.size();
      DataArraySplitter splitter(parsed.doc, parsed.arrays);
      if (!nlohmann::json::sax_parse(rest_text, &splitter) && splitter.too_deep()) fail_too_deep(source_name);
      // One placeholder key per lifted array, and no more arrays: otherwise the text had a
      // "$data_array" key of its own (rejected below) or a "data" key spelled with escapes.
      if (splitter.placeholder_keys() == lifted && parsed.arrays.size() == lifted) return parsed;
    } catch (const nlohmann::json::exception&) {
      // Fall through: the general path below reports the error against the original text.
    }
    parsed = ParsedDocument();
  } else {
    parsed.arrays.clear();
  }
  const std::string quoted = quote_non_finite_words(original);
  const std::string_view text = quoted.empty() ? original : std::string_view(quoted);
  size_t placeholder_keys = 0;
  try {
    DataArraySplitter splitter(parsed.doc, parsed.arrays);
    if (!nlohmann::json::sax_parse(text.begin(), text.end(), &splitter) && splitter.too_deep())
      fail_too_deep(source_name);
    placeholder_keys = splitter.placeholder_keys();
  } catch (const nlohmann::json::exception& error) {
    throw InputError(source_name + ": not valid JSON (" + error.what() + ")");
  }
  // The reader stands {"$data_array": k} in for the k-th data array: a document may not say it.
  if (placeholder_keys > 0) {
    fail_input(source_name + ": a key", std::string("\"") + kDataArrayPlaceholder + "\"",
               "any key but this one, which moeref's reader reserves");
  }
  return parsed;
}

}  // namespace moeref
