// Exact float32 text: the shortest decimal that reads back to the same float32.
//
// JSON has no NaN or infinities; traces write them as the strings "NaN",
// "Infinity" and "-Infinity". Negative zero is written "-0.0" so that JSON
// readers which parse "-0" as the integer 0 keep the sign.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

namespace moeref {

// Appends the exact text of `value` (a JSON number, or one of the strings above).
void append_float32(std::string& out, float value);

// Reads a float32 written by append_float32 or by any JSON writer: a number is
// rounded to the nearest double, then to the nearest float32 (for the shortest
// float32 decimals that moeref writes this is exact; see spec/trace-format.md).
// Throws InputError naming `field` for anything else.
float read_float32(const nlohmann::json& value, const std::string& field);

}  // namespace moeref
