// Errors at the boundary of moeref: bad configs, bad traces, bad command lines.
//
// An InputError always names the field, the value and what is allowed, so the
// CLI can print it as is and exit with status 2.
#pragma once

#include <stdexcept>
#include <string>

namespace moeref {

class InputError : public std::runtime_error {
 public:
  explicit InputError(const std::string& message) : std::runtime_error(message) {}
};

// Builds "FIELD: got VALUE; allowed: ALLOWED" and throws it as an InputError.
[[noreturn]] void fail_input(const std::string& field, const std::string& value, const std::string& allowed);

}  // namespace moeref
