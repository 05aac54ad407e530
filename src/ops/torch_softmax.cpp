#include "moeref/ops/torch_softmax.hpp"

#include <cmath>

#include "moeref/ops/tf_softmax.hpp"

namespace moeref::ops {

void torch_softmax(const float* logits, float* probs, int64_t rows, int64_t num_experts) {
  // _vec_softmax_lastdim performs tf_softmax's operations in tf_softmax's order.
  tf_softmax(logits, probs, rows, num_experts);
}

void torch_logsumexp(const float* x, float* out, int64_t rows, int64_t num_experts) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* row = x + r * num_experts;
    // maxes = at::amax(self, dims, true); maxes.masked_fill_(maxes.abs() == INFINITY, 0)
    float maxes = row[0];
    for (int64_t e = 1; e < num_experts; ++e) maxes = row[e] > maxes ? row[e] : maxes;
    if (std::isinf(maxes)) maxes = 0.0f;
    // at::sum_out(result, (self - maxes).exp_(), dims): the sum in double, rounded once.
    double sum = 0.0;
    for (int64_t e = 0; e < num_experts; ++e) {
      const float shifted = row[e] - maxes;
      sum += static_cast<double>(static_cast<float>(std::exp(static_cast<double>(shifted))));
    }
    // result.log_().add_(maxes)
    const float log_sum = static_cast<float>(std::log(static_cast<double>(static_cast<float>(sum))));
    out[r] = log_sum + maxes;
  }
}

}  // namespace moeref::ops
