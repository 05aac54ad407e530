#include "moeref/ops/switch_balance_loss.hpp"

namespace moeref::ops {

Tensor mean_over_s_by_division(const Tensor& values) {
  const int64_t G = values.shape[0], S = values.shape[1], E = values.shape[2];
  Tensor out = Tensor::float32({values.dims[0], values.dims[2]}, {G, E});  // [G, E]
  const bool integer = values.dtype == DType::kInt32;
  for (int64_t g = 0; g < G; ++g) {
    for (int64_t e = 0; e < E; ++e) {
      double sum = 0.0;
      for (int64_t s = 0; s < S; ++s) {
        const size_t at = static_cast<size_t>((g * S + s) * E + e);
        sum += integer ? static_cast<double>(values.i32[at]) : static_cast<double>(values.f32[at]);
      }
      out.f32[static_cast<size_t>(g * E + e)] = static_cast<float>(sum) / static_cast<float>(S);
    }
  }
  return out;
}

float switch_balance_loss(const Tensor& density_proxy, const Tensor& density, int64_t num_experts) {
  double sum = 0.0;
  for (size_t i = 0; i < density.f32.size(); ++i) sum += static_cast<double>(density_proxy.f32[i] * density.f32[i]);
  const float mean = static_cast<float>(sum) / static_cast<float>(density.f32.size());
  return mean * static_cast<float>(num_experts * num_experts);
}

}  // namespace moeref::ops
