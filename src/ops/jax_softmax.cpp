#include "moeref/ops/jax_softmax.hpp"

#include <cmath>

namespace moeref::ops {

namespace {

float unchanged(float x) { return x; }

}  // namespace

void jax_softmax(const float* logits, float* probs, int64_t rows, int64_t num_experts, float (*round_to)(float)) {
  float (*round)(float) = round_to != nullptr ? round_to : unchanged;
  for (int64_t r = 0; r < rows; ++r) {
    const float* row = logits + r * num_experts;
    float* out = probs + r * num_experts;
    float x_max = row[0];
    for (int64_t e = 1; e < num_experts; ++e) x_max = row[e] > x_max ? row[e] : x_max;
    double sum = 0.0;
    for (int64_t e = 0; e < num_experts; ++e) {
      const float shifted = round(row[e] - x_max);                                 // x - x_max
      out[e] = round(static_cast<float>(std::exp(static_cast<double>(shifted))));  // unnormalized
      sum += static_cast<double>(out[e]);
    }
    const float denominator = round(static_cast<float>(sum));                        // jnp.sum(unnormalized)
    for (int64_t e = 0; e < num_experts; ++e) out[e] = round(out[e] / denominator);  // unnormalized / sum
  }
}

}  // namespace moeref::ops
