#include "moeref/ops/top1.hpp"

namespace moeref::ops {

void top_1_lowest_index(const float* values, int64_t rows, int64_t num_experts, float* max_value, int32_t* max_index) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* row = values + r * num_experts;
    int64_t best = 0;
    // Strictly greater: a later equal value never displaces an earlier one.
    for (int64_t e = 1; e < num_experts; ++e) {
      if (row[e] > row[best]) best = e;
    }
    max_value[r] = row[best];
    max_index[r] = static_cast<int32_t>(best);
  }
}

}  // namespace moeref::ops
