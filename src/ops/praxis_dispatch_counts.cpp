#include "moeref/ops/praxis_dispatch_counts.hpp"

namespace moeref::ops {

Tensor praxis_dispatch_count(const Tensor& combine_tensor) {
  const int64_t slots = combine_tensor.shape[2] * combine_tensor.shape[3];
  Tensor count = Tensor::int32({"G", "S"}, {combine_tensor.shape[0], combine_tensor.shape[1]});
  for (size_t k = 0; k < combine_tensor.f32.size(); ++k) {
    count.i32[k / static_cast<size_t>(slots)] += combine_tensor.f32[k] != 0.0f ? 1 : 0;
  }
  return count;
}

int32_t praxis_tokens_dispatched(const Tensor& dispatch_count_tensor, int32_t k) {
  int32_t tokens = 0;
  for (int32_t count : dispatch_count_tensor.i32) tokens += count == k ? 1 : 0;
  return tokens;
}

int32_t praxis_paddings_count(const Tensor& paddings) {
  int32_t count = 0;
  for (float padding : paddings.f32) count += static_cast<int32_t>(padding);
  return count;
}

}  // namespace moeref::ops
