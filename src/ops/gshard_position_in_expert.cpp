#include "moeref/ops/gshard_position_in_expert.hpp"

#include "moeref/ops/cumsum.hpp"

namespace moeref::ops {

Tensor gshard_position_in_expert(const Tensor& mask, const Tensor* queued) {
  const int64_t G = mask.shape[0], S = mask.shape[1], E = mask.shape[2];
  Tensor position = Tensor::int32(mask.dims, mask.shape);
  for (int64_t g = 0; g < G; ++g) {
    exclusive_cumsum_over_s(mask.i32.data() + g * S * E, S, E, position.i32.data() + g * S * E);
    if (queued == nullptr) continue;
    for (int64_t k = g * S * E; k < (g + 1) * S * E; ++k) {
      position.i32[static_cast<size_t>(k)] += queued->i32[static_cast<size_t>(g * E + k % E)];
    }
  }
  return position;
}

Tensor gshard_within_capacity(const Tensor& mask, const Tensor& position_in_expert, int64_t capacity) {
  Tensor kept = mask;
  for (size_t k = 0; k < kept.i32.size(); ++k)
    kept.i32[k] = mask.i32[k] * (position_in_expert.i32[k] < capacity ? 1 : 0);
  return kept;
}

Tensor gshard_flat_position(const Tensor& position_in_expert, const Tensor& mask) {
  const int64_t E = mask.shape.back();
  Tensor flat = Tensor::int32({mask.dims.begin(), mask.dims.end() - 1}, {mask.shape.begin(), mask.shape.end() - 1});
  for (size_t k = 0; k < mask.i32.size(); ++k) {
    flat.i32[k / static_cast<size_t>(E)] += position_in_expert.i32[k] * mask.i32[k];
  }
  return flat;
}

Tensor gshard_expert_count(const Tensor& mask) {
  const int64_t S = mask.shape[1], E = mask.shape[2];
  Tensor count = Tensor::int32({mask.dims[0], mask.dims[2]}, {mask.shape[0], E});
  for (size_t k = 0; k < mask.i32.size(); ++k) {
    const size_t g = k / static_cast<size_t>(S * E);
    count.i32[g * static_cast<size_t>(E) + k % static_cast<size_t>(E)] += mask.i32[k];
  }
  return count;
}

}  // namespace moeref::ops
