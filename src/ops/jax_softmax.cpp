#include "moeref/ops/jax_softmax.hpp"

#include <cmath>
#include <limits>

namespace moeref::ops {

void jax_softmax(const float* logits, float* probs, int64_t rows, int64_t num_experts) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* x = logits + r * num_experts;
    float* y = probs + r * num_experts;
    // x_max = jnp.max(x, axis, initial=-inf, keepdims=True)
    float x_max = -std::numeric_limits<float>::infinity();
    for (int64_t e = 0; e < num_experts; ++e) x_max = x[e] > x_max ? x[e] : x_max;
    // unnormalized = jnp.exp(x - x_max); the denominator is their sum.
    double sum = 0.0;
    for (int64_t e = 0; e < num_experts; ++e) {
      const float shifted = x[e] - x_max;
      y[e] = static_cast<float>(std::exp(static_cast<double>(shifted)));
      sum += static_cast<double>(y[e]);
    }
    // result = unnormalized / jnp.sum(unnormalized): true division by the float32 sum.
    const float denominator = static_cast<float>(sum);
    for (int64_t e = 0; e < num_experts; ++e) y[e] = y[e] / denominator;
  }
}

}  // namespace moeref::ops
