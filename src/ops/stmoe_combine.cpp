#include "moeref/ops/stmoe_combine.hpp"

namespace moeref::ops {

Tensor stmoe_combine_tensor(const Tensor& gates, const Tensor& mask_flat, const Tensor& gate_indices,
                            const Tensor& positions, int64_t num_experts, int64_t capacity) {
  const int64_t K = gates.shape[0], G = gates.shape[1], S = gates.shape[2], T = G * S;
  const int64_t E = num_experts, C = capacity;
  Tensor combine = Tensor::float32({"G", "S", "E", "C"}, {G, S, E, C});
  for (int64_t n = 0; n < K; ++n) {
    for (int64_t t = 0; t < T; ++t) {
      const size_t at = static_cast<size_t>(n * T + t);
      const float weight = gates.f32[at] * static_cast<float>(mask_flat.i32[at]);
      for (int64_t e = 0; e < E; ++e) {
        for (int64_t c = 0; c < C; ++c) {
          const float term =
              (weight * (gate_indices.i32[at] == e ? 1.0f : 0.0f)) * (positions.i32[at] == c ? 1.0f : 0.0f);
          float& slot = combine.f32[static_cast<size_t>((t * E + e) * C + c)];
          slot = n == 0 ? term : slot + term;
        }
      }
    }
  }
  return combine;
}

Tensor straight_through_dispatch(const Tensor& dispatch_tensor, const Tensor& combine_tensor) {
  Tensor straight = Tensor::float32(combine_tensor.dims, combine_tensor.shape);
  for (size_t i = 0; i < straight.f32.size(); ++i) {
    straight.f32[i] = (static_cast<float>(dispatch_tensor.i32[i]) + combine_tensor.f32[i]) - combine_tensor.f32[i];
  }
  return straight;
}

}  // namespace moeref::ops
