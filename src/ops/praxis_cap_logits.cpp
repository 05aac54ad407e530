#include "moeref/ops/praxis_cap_logits.hpp"

#include <cmath>

namespace moeref::ops {

Tensor praxis_cap_logits(const Tensor& logits, double gating_logit_cap) {
  const float cap = static_cast<float>(gating_logit_cap);
  Tensor capped = Tensor::float32(logits.dims, logits.shape);
  for (size_t k = 0; k < capped.f32.size(); ++k) {
    const float scaled = logits.f32[k] / cap;
    capped.f32[k] = cap * static_cast<float>(std::tanh(static_cast<double>(scaled)));
  }
  return capped;
}

}  // namespace moeref::ops
