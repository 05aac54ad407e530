#include "moeref/ops/cumsum.hpp"

namespace moeref::ops {

void exclusive_cumsum_over_s(const int32_t* mask, int64_t group_size, int64_t num_experts, int32_t* out) {
  for (int64_t e = 0; e < num_experts; ++e) {
    int32_t running = 0;
    for (int64_t s = 0; s < group_size; ++s) {
      out[s * num_experts + e] = running;
      running += mask[s * num_experts + e];
    }
  }
}

}  // namespace moeref::ops
