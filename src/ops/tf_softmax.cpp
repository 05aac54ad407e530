#include "moeref/ops/tf_softmax.hpp"

#include <cmath>

namespace moeref::ops {

void tf_softmax(const float* logits, float* probs, int64_t rows, int64_t num_experts) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* row = logits + r * num_experts;
    float* out = probs + r * num_experts;
    // logits.maximum(along_class)
    float max_logit = row[0];
    for (int64_t e = 1; e < num_experts; ++e) max_logit = row[e] > max_logit ? row[e] : max_logit;
    // softmax = exp(logits - max); sum(softmax along classes) accumulated in double.
    double sum = 0.0;
    for (int64_t e = 0; e < num_experts; ++e) {
      const float shifted = row[e] - max_logit;
      out[e] = static_cast<float>(std::exp(static_cast<double>(shifted)));
      sum += static_cast<double>(out[e]);
    }
    // softmax = softmax * sum.inverse(): one float32 reciprocal, then one multiply per class.
    const float inverse = 1.0f / static_cast<float>(sum);
    for (int64_t e = 0; e < num_experts; ++e) out[e] = out[e] * inverse;
  }
}

}  // namespace moeref::ops
