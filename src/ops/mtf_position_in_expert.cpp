#include "moeref/ops/mtf_position_in_expert.hpp"

#include <vector>

#include "moeref/ops/cumsum.hpp"

namespace moeref::ops {

void mtf_position_in_expert(const Tensor& mask, const Tensor* queued, int64_t expert_capacity, Tensor& position,
                            Tensor& mask_capacity) {
  const int64_t G = mask.shape[0], S = mask.shape[1], E = mask.shape[2];
  // less(position, expert_capacity_f): the capacity is a float32 in the source.
  const float capacity = static_cast<float>(expert_capacity);
  std::vector<int32_t> cumsum(static_cast<size_t>(S * E));
  for (int64_t g = 0; g < G; ++g) {
    const int64_t gse = g * S * E;
    exclusive_cumsum_over_s(mask.i32.data() + gse, S, E, cumsum.data());
    for (int64_t k = 0; k < S * E; ++k) {
      const int32_t ahead = queued != nullptr ? queued->i32[static_cast<size_t>(g * E + k % E)] : 0;
      position.i32[gse + k] = (cumsum[static_cast<size_t>(k)] + ahead) * mask.i32[gse + k];
      mask_capacity.i32[gse + k] = static_cast<float>(position.i32[gse + k]) < capacity ? mask.i32[gse + k] : 0;
    }
  }
}

}  // namespace moeref::ops
