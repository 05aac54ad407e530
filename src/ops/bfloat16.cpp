#include "moeref/ops/bfloat16.hpp"

#include <cmath>
#include <cstdint>
#include <cstring>

#include "moeref/ops/jax_softmax.hpp"

namespace moeref::ops {

float round_to_bfloat16(float x) {
  uint32_t bits;
  std::memcpy(&bits, &x, sizeof bits);
  if (std::isnan(x)) {
    bits = (bits | 0x00400000u) & 0xffff0000u;  // a quiet NaN, sign kept
  } else {
    // Add half an ulp of bfloat16 minus one, plus the lowest kept bit: ties go to even.
    const uint32_t lowest_kept = (bits >> 16) & 1u;
    bits = (bits + 0x7fffu + lowest_kept) & 0xffff0000u;
  }
  float out;
  std::memcpy(&out, &bits, sizeof out);
  return out;
}

void bfloat16_matmul(const float* x, const float* w, int64_t rows, int64_t model_dim, int64_t num_experts, float* out) {
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t e = 0; e < num_experts; ++e) {
      double sum = 0.0;
      for (int64_t m = 0; m < model_dim; ++m) {
        sum += static_cast<double>(x[r * model_dim + m]) * static_cast<double>(w[m * num_experts + e]);
      }
      out[r * num_experts + e] = round_to_bfloat16(static_cast<float>(sum));
    }
  }
}

void jax_softmax_bfloat16(const float* logits, float* probs, int64_t rows, int64_t num_experts) {
  jax_softmax(logits, probs, rows, num_experts, round_to_bfloat16);
}

void jax_logsumexp_bfloat16(const float* x, float* out, int64_t rows, int64_t num_experts) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* row = x + r * num_experts;
    float amax = row[0];
    for (int64_t e = 1; e < num_experts; ++e) amax = row[e] > amax ? row[e] : amax;
    if (!std::isfinite(amax)) amax = 0.0f;
    double sum = 0.0;
    for (int64_t e = 0; e < num_experts; ++e) {
      const float shifted = round_to_bfloat16(row[e] - amax);
      sum += static_cast<double>(round_to_bfloat16(static_cast<float>(std::exp(static_cast<double>(shifted)))));
    }
    const float sumexp = round_to_bfloat16(static_cast<float>(sum));
    const float log_sum = round_to_bfloat16(static_cast<float>(std::log(static_cast<double>(sumexp))));
    out[r] = round_to_bfloat16(log_sum + amax);
  }
}

}  // namespace moeref::ops
