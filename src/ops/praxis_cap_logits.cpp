#include "moeref/ops/praxis_cap_logits.hpp"

#include <cmath>

namespace moeref::ops {

Tensor praxis_cap_logits(const Tensor& logits, float cap) {
  Tensor capped = Tensor::float32(logits.dims, logits.shape);
  for (size_t k = 0; k < logits.f32.size(); ++k) {
    const float scaled = logits.f32[k] / cap;                                             // logits / cap
    const float tanh_value = static_cast<float>(std::tanh(static_cast<double>(scaled)));  // jnp.tanh
    capped.f32[k] = cap * tanh_value;                                                     // cap * tanh(...)
  }
  return capped;
}

}  // namespace moeref::ops
