#include "moeref/ops/gshard_random_policy.hpp"

#include <algorithm>

namespace moeref::ops {

float gshard_random_divisor(double second_expert_threshold) {
  return static_cast<float>(std::max(second_expert_threshold, 1e-9));
}

Tensor gshard_sampled_2(const Tensor& uniform, const Tensor& gate_2, double second_expert_threshold) {
  const float divisor = gshard_random_divisor(second_expert_threshold);
  Tensor sampled = Tensor::int32(gate_2.dims, gate_2.shape);
  for (size_t t = 0; t < sampled.i32.size(); ++t) sampled.i32[t] = uniform.f32[t] < gate_2.f32[t] / divisor ? 1 : 0;
  return sampled;
}

}  // namespace moeref::ops
