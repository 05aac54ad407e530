#include "moeref/ops/cumsum.hpp"

namespace moeref::ops {

void exclusive_cumsum_over_s(const int32_t* mask, int64_t group_size, int64_t num_experts, int32_t* out) {
  for (int64_t e = 0; e < num_experts; ++e) {
    int32_t running = 0;
    for (int64_t s = 0; s < group_size; ++s) {
      out[s * num_experts + e] = running;
      running += mask[s * num_experts + e];
    }
  }
}

Tensor exclusive_cumsum_over_s(const Tensor& mask) {
  const int64_t G = mask.shape[0], S = mask.shape[1], E = mask.shape[2];
  Tensor out = Tensor::int32(mask.dims, mask.shape);  // [G, S, E]
  for (int64_t g = 0; g < G; ++g)
    exclusive_cumsum_over_s(mask.i32.data() + g * S * E, S, E, out.i32.data() + g * S * E);
  return out;
}

}  // namespace moeref::ops
