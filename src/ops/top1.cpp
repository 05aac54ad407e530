#include "moeref/ops/top1.hpp"

#include <vector>

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

Tensor argmax_lowest_index(const Tensor& values) {
  const int64_t E = values.shape.back();
  Tensor index =
      Tensor::int32({values.dims.begin(), values.dims.end() - 1}, {values.shape.begin(), values.shape.end() - 1});
  std::vector<float> max_value(index.i32.size());
  top_1_lowest_index(values.f32.data(), index.num_elements(), E, max_value.data(), index.i32.data());
  return index;
}

}  // namespace moeref::ops
