#include "moeref/ops/tf_softmax.hpp"

#include <cmath>

namespace moeref::ops {

void tf_softmax(const float* logits, float* probs, int64_t rows, int64_t num_experts) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* row = logits + r * num_experts;
    float* out = probs + r * num_experts;
    float max_logit = row[0];
    for (int64_t e = 1; e < num_experts; ++e) max_logit = row[e] > max_logit ? row[e] : max_logit;
    double sum = 0.0;
    for (int64_t e = 0; e < num_experts; ++e) {
      const float shifted = row[e] - max_logit;                             // logits - max
      out[e] = static_cast<float>(std::exp(static_cast<double>(shifted)));  // shifted_logits.exp()
      sum += static_cast<double>(out[e]);
    }
    const float inverse = 1.0f / static_cast<float>(sum);                 // sum(...).inverse()
    for (int64_t e = 0; e < num_experts; ++e) out[e] = out[e] * inverse;  // softmax * inverse
  }
}

}  // namespace moeref::ops
