#include "moeref/ops/router.hpp"

namespace moeref::ops {

void router_logits(const float* x, const float* router_weights, int64_t tokens, int64_t model_dim, int64_t num_experts,
                   float* logits) {
  for (int64_t t = 0; t < tokens; ++t) {
    for (int64_t e = 0; e < num_experts; ++e) {
      double sum = 0.0;
      for (int64_t m = 0; m < model_dim; ++m) {
        sum += static_cast<double>(x[t * model_dim + m]) * static_cast<double>(router_weights[m * num_experts + e]);
      }
      logits[t * num_experts + e] = static_cast<float>(sum);
    }
  }
}

Tensor router_logits(const Tensor& x, const Tensor& router_weights) {
  const int64_t G = x.shape[0], S = x.shape[1], M = x.shape[2], E = router_weights.shape[1];
  Tensor logits = Tensor::float32({"G", "S", "E"}, {G, S, E});  // [G, S, E]
#pragma omp parallel for schedule(static)
  for (int64_t g = 0; g < G; ++g) {
    router_logits(x.f32.data() + g * S * M, router_weights.f32.data(), S, M, E, logits.f32.data() + g * S * E);
  }
  return logits;
}

}  // namespace moeref::ops
