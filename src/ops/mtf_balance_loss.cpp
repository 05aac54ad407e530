#include "moeref/ops/mtf_balance_loss.hpp"

namespace moeref::ops {

Tensor mtf_density(const Tensor& values) {
  const int64_t G = values.shape[0], S = values.shape[1], E = values.shape[2];
  const float inverse_group_size = static_cast<float>(1.0 / static_cast<double>(S));
  Tensor density = Tensor::float32({"G", "E"}, {G, E});
  for (int64_t g = 0; g < G; ++g) {
    for (int64_t e = 0; e < E; ++e) {
      double sum = 0.0;
      for (int64_t s = 0; s < S; ++s) {
        const size_t at = static_cast<size_t>((g * S + s) * E + e);
        sum +=
            values.dtype == DType::kInt32 ? static_cast<double>(values.i32[at]) : static_cast<double>(values.f32[at]);
      }
      density.f32[static_cast<size_t>(g * E + e)] = static_cast<float>(sum) * inverse_group_size;
    }
  }
  return density;
}

float mtf_balance_loss(const Tensor& density_proxy, const Tensor& density) {
  const int64_t E = density.shape.back();
  double sum = 0.0;
  for (size_t k = 0; k < density.f32.size(); ++k) sum += static_cast<double>(density_proxy.f32[k] * density.f32[k]);
  const float mean = static_cast<float>(sum) * static_cast<float>(1.0 / static_cast<double>(density.f32.size()));
  return mean * static_cast<float>(E * E);
}

}  // namespace moeref::ops
