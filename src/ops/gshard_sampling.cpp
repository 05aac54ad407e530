#include "moeref/ops/gshard_sampling.hpp"

#include <cmath>
#include <limits>

namespace moeref::ops {

float gshard_very_negative_logit() { return std::numeric_limits<float>::max() * -0.7f; }

Tensor gumbel_noise(const Tensor& uniform) {
  Tensor noise = Tensor::float32(uniform.dims, uniform.shape);
  for (size_t k = 0; k < noise.f32.size(); ++k) {
    const float log_u = static_cast<float>(std::log(static_cast<double>(uniform.f32[k])));
    const float neg_log_u = -log_u;
    const float log_neg_log_u = static_cast<float>(std::log(static_cast<double>(neg_log_u)));
    noise.f32[k] = -log_neg_log_u;
  }
  return noise;
}

Tensor gshard_updated_logits(const Tensor& logits, const Tensor& mask_1) {
  const float very_negative = gshard_very_negative_logit();
  Tensor updated = Tensor::float32(logits.dims, logits.shape);
  for (size_t k = 0; k < updated.f32.size(); ++k) updated.f32[k] = mask_1.i32[k] > 0 ? very_negative : logits.f32[k];
  return updated;
}

}  // namespace moeref::ops
