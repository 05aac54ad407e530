#include "moeref/ops/gshard_combine.hpp"

namespace moeref::ops {

Tensor gshard_combine_tensor(const GshardRank& first, const GshardRank& second, int64_t E, int64_t C) {
  const int64_t tokens = first.gate.num_elements();
  Tensor combine = Tensor::float32({"G", "S", "E", "C"}, {first.gate.shape[0], first.gate.shape[1], E, C});
#pragma omp parallel for schedule(static)
  for (int64_t t = 0; t < tokens; ++t) {
    const size_t at = static_cast<size_t>(t);
    const float weight_1 = first.gate.f32[at] * static_cast<float>(first.mask_flat.i32[at]);
    const float weight_2 = second.gate.f32[at] * static_cast<float>(second.mask_flat.i32[at]);
    for (int64_t e = 0; e < E; ++e) {
      const float a_1 = weight_1 * (first.index.i32[at] == e ? 1.0f : 0.0f);
      const float a_2 = weight_2 * (second.index.i32[at] == e ? 1.0f : 0.0f);
      for (int64_t c = 0; c < C; ++c) {
        const float part_1 = a_1 * (first.position_flat.i32[at] == c ? 1.0f : 0.0f);
        const float part_2 = a_2 * (second.position_flat.i32[at] == c ? 1.0f : 0.0f);
        combine.f32[static_cast<size_t>((t * E + e) * C + c)] = part_1 + part_2;
      }
    }
  }
  return combine;
}

}  // namespace moeref::ops
