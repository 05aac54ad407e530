#include "moeref/ops/deepspeed_capacity.hpp"

#include <cmath>

namespace moeref::ops {

DeepspeedCapacity deepspeed_capacity(int64_t S, int64_t E, double factor, int64_t min_capacity) {
  DeepspeedCapacity capacity;
  // (num_tokens / num_experts): a Python float; it meets the float32 tensor as float32.
  const float share = static_cast<float>(static_cast<double>(S) / static_cast<double>(E));
  capacity.scaled = share * static_cast<float>(factor);
  capacity.expert_capacity = static_cast<int64_t>(std::ceil(static_cast<double>(capacity.scaled)));
  if (capacity.expert_capacity < min_capacity) {
    capacity.expert_capacity = min_capacity;
    capacity.raised_to_min = true;
  }
  return capacity;
}

}  // namespace moeref::ops
