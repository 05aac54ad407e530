#include "moeref/ops/gshard_over_capacity.hpp"

#include <algorithm>

namespace moeref::ops {

GshardOverCapacity gshard_over_capacity(const Tensor& mask, const Tensor& position_in_expert, int64_t capacity) {
  int64_t over = 0, total = 0;
  for (size_t k = 0; k < mask.i32.size(); ++k) {
    over += int64_t{mask.i32[k]} * position_in_expert.i32[k] >= capacity ? 1 : 0;
    total += mask.i32[k];
  }
  GshardOverCapacity result;
  result.count = static_cast<int32_t>(over);
  result.ratio = static_cast<float>(over) / std::max(1.0f, static_cast<float>(total));
  return result;
}

}  // namespace moeref::ops
