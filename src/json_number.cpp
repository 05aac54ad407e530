#include "moeref/json_number.hpp"

#include <charconv>
#include <cmath>

#include "moeref/error.hpp"

namespace moeref {

void append_float32(std::string& out, float value) {
  if (std::isnan(value)) {
    out += "\"NaN\"";
    return;
  }
  if (std::isinf(value)) {
    out += value > 0 ? "\"Infinity\"" : "\"-Infinity\"";
    return;
  }
  if (value == 0.0f) {
    out += std::signbit(value) ? "-0.0" : "0";
    return;
  }
  char buffer[32];
  // std::to_chars without a precision gives the shortest round-trip text.
  const std::to_chars_result result = std::to_chars(buffer, buffer + sizeof(buffer), value);
  out.append(buffer, result.ptr);
}

float read_float32(const nlohmann::json& value, const std::string& field) {
  if (value.is_number_float()) return static_cast<float>(value.get<double>());
  if (value.is_number_integer()) return static_cast<float>(value.get<int64_t>());
  if (value.is_number_unsigned()) return static_cast<float>(value.get<uint64_t>());
  if (value.is_string()) {
    const std::string& text = value.get_ref<const std::string&>();
    if (text == "NaN") return std::nanf("");
    if (text == "Infinity") return INFINITY;
    if (text == "-Infinity") return -INFINITY;
  }
  fail_input(field, value.dump(), "a JSON number or one of \"NaN\", \"Infinity\", \"-Infinity\"");
}

}  // namespace moeref
