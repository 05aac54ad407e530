#include "moeref/ops/mtf_softmax.hpp"

#include <cmath>

namespace moeref::ops {

float mtf_logsumexp(const float* row, int64_t num_experts) {
  float max_logit = row[0];
  for (int64_t e = 1; e < num_experts; ++e) max_logit = row[e] > max_logit ? row[e] : max_logit;
  double sum_exp_x = 0.0;
  for (int64_t e = 0; e < num_experts; ++e) {
    const float shifted = row[e] - max_logit;                                                      // x -= max_logit
    sum_exp_x += static_cast<double>(static_cast<float>(std::exp(static_cast<double>(shifted))));  // exp(x)
  }
  const float log_sum = static_cast<float>(std::log(static_cast<double>(static_cast<float>(sum_exp_x))));
  return log_sum + max_logit;  // log(sum_exp_x) + max_logit
}

void mtf_softmax(const float* logits, float* probs, int64_t rows, int64_t num_experts) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* row = logits + r * num_experts;
    const float lse = mtf_logsumexp(row, num_experts);
    for (int64_t e = 0; e < num_experts; ++e) {
      const float log_softmax = row[e] - lse;  // log_softmax = x - reduce_logsumexp(x)
      probs[r * num_experts + e] = static_cast<float>(std::exp(static_cast<double>(log_softmax)));
    }
  }
}

}  // namespace moeref::ops
