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

}  // namespace moeref::ops
