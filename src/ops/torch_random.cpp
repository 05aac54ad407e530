#include "moeref/ops/torch_random.hpp"

#include <limits>

namespace moeref::ops {

Tensor torch_uniform_(const Tensor& uniform, double from, double to) {
  // uniform_kernel: auto from = static_cast<scalar_t>(from_); auto to = static_cast<scalar_t>(to_);
  const double from_f = static_cast<double>(static_cast<float>(from));
  const double to_f = static_cast<double>(static_cast<float>(to));
  Tensor out = Tensor::float32(uniform.dims, uniform.shape);
  for (size_t k = 0; k < out.f32.size(); ++k) {
    // uniform_real: (x * (to - from) + from) in dist_acctype<float>, which is double on CPU.
    out.f32[k] = static_cast<float>(static_cast<double>(uniform.f32[k]) * (to_f - from_f) + from_f);
  }
  return out;
}

Tensor torch_distributions_uniform(const Tensor& uniform, double low, double high) {
  const float low_f = static_cast<float>(low);
  const float high_f = static_cast<float>(high);
  const float range = high_f - low_f;  // (self.high - self.low), a float32 tensor op
  Tensor out = Tensor::float32(uniform.dims, uniform.shape);
  // self.low + rand * (self.high - self.low)
  for (size_t k = 0; k < out.f32.size(); ++k) out.f32[k] = low_f + uniform.f32[k] * range;
  return out;
}

Tensor torch_gumbel_uniform(const Tensor& uniform) {
  // Uniform(torch.full_like(loc, finfo.tiny), torch.full_like(loc, 1 - finfo.eps)): 1 - eps is a
  // Python double rounded to float32 (1 - 2^-23, exact).
  const float tiny = std::numeric_limits<float>::min();
  const float one_minus_eps = static_cast<float>(1.0 - static_cast<double>(std::numeric_limits<float>::epsilon()));
  return torch_distributions_uniform(uniform, static_cast<double>(tiny), static_cast<double>(one_minus_eps));
}

}  // namespace moeref::ops
