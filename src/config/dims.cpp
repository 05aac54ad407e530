#include "moeref/dims.hpp"

#include "moeref/error.hpp"

namespace moeref {

void require_dim(const Config& config, const char* letter, const std::string& why) {
  if (config.dims.count(letter) == 0) fail_input(std::string("dims.") + letter, "missing", why);
}

void check_derived_dim(const Config& config, const char* letter, int64_t derived, const std::string& rule) {
  auto it = config.dims.find(letter);
  if (it != config.dims.end() && it->second != derived) {
    fail_input(std::string("dims.") + letter, std::to_string(it->second), std::to_string(derived) + " (" + rule + ")");
  }
}

int64_t dim_or(const Config& config, const char* letter, int64_t fallback) {
  auto it = config.dims.find(letter);
  return it == config.dims.end() ? fallback : it->second;
}

}  // namespace moeref
