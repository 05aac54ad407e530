#include "moeref/ops/mtf_router_noise.hpp"

#include <cmath>

namespace moeref::ops {

Tensor tf_uniform_in_range(const Tensor& rnd, double minval, double maxval) {
  const float lo = static_cast<float>(minval);
  const float hi = static_cast<float>(maxval);
  const float range = hi - lo;
  Tensor out = Tensor::float32(rnd.dims, rnd.shape);
  for (size_t k = 0; k < out.f32.size(); ++k) out.f32[k] = rnd.f32[k] * range + lo;
  return out;
}

Tensor mtf_multiply(const Tensor& x, const Tensor& y) {
  Tensor out = Tensor::float32(x.dims, x.shape);
  for (size_t k = 0; k < out.f32.size(); ++k) out.f32[k] = x.f32[k] * y.f32[k];
  return out;
}

Tensor mtf_dropout(const Tensor& x, const Tensor& uniform, double keep_prob) {
  const float keep = static_cast<float>(keep_prob);
  const float inverse_keep = static_cast<float>(1.0 / keep_prob);
  Tensor out = Tensor::float32(x.dims, x.shape);
  for (size_t k = 0; k < out.f32.size(); ++k) {
    const float noise = (uniform.f32[k] < keep ? 1.0f : 0.0f) * inverse_keep;
    out.f32[k] = x.f32[k] * noise;
  }
  return out;
}

Tensor mtf_gumbel(const Tensor& u) {
  Tensor out = Tensor::float32(u.dims, u.shape);
  for (size_t k = 0; k < out.f32.size(); ++k) {
    const float inner = -static_cast<float>(std::log(static_cast<double>(u.f32[k])));
    out.f32[k] = -static_cast<float>(std::log(static_cast<double>(inner)));
  }
  return out;
}

Tensor mtf_add_scaled(const Tensor& logits, const Tensor& g, double temperature) {
  const float t = static_cast<float>(temperature);
  Tensor out = Tensor::float32(logits.dims, logits.shape);
  for (size_t k = 0; k < out.f32.size(); ++k) out.f32[k] = logits.f32[k] + g.f32[k] * t;
  return out;
}

}  // namespace moeref::ops
