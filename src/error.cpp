#include "moeref/error.hpp"

namespace moeref {

void fail_input(const std::string& field, const std::string& value, const std::string& allowed) {
  throw InputError(field + ": got " + value + "; allowed: " + allowed);
}

}  // namespace moeref
