#include "moeref/ops/gshard_balance_loss.hpp"

namespace moeref::ops {

Tensor gshard_density_denom(const Tensor& importance) {
  const int64_t G = importance.shape[0], S = importance.shape[1];
  Tensor denom = Tensor::float32({"G"}, {G});
  for (int64_t g = 0; g < G; ++g) {
    double sum = 0.0;
    for (int64_t s = 0; s < S; ++s) sum += static_cast<double>(importance.f32[static_cast<size_t>(g * S + s)]);
    denom.f32[static_cast<size_t>(g)] = static_cast<float>(sum) / static_cast<float>(S) + 1e-6f;
  }
  return denom;
}

Tensor gshard_density(const Tensor& values, const Tensor* density_denom) {
  const int64_t G = values.shape[0], S = values.shape[1], E = values.shape[2];
  const float count_s = static_cast<float>(S);
  Tensor density = Tensor::float32({values.dims[0], values.dims[2]}, {G, E});
  for (int64_t g = 0; g < G; ++g) {
    for (int64_t e = 0; e < E; ++e) {
      float mean = 0.0f;
      if (values.dtype == DType::kInt32) {
        int64_t count = 0;
        for (int64_t s = 0; s < S; ++s) count += values.i32[static_cast<size_t>((g * S + s) * E + e)];
        mean = static_cast<float>(count) / count_s;
      } else {
        double sum = 0.0;
        for (int64_t s = 0; s < S; ++s)
          sum += static_cast<double>(values.f32[static_cast<size_t>((g * S + s) * E + e)]);
        mean = static_cast<float>(sum) / count_s;
      }
      if (density_denom != nullptr) mean = mean / density_denom->f32[static_cast<size_t>(g)];
      density.f32[static_cast<size_t>(g * E + e)] = mean;
    }
  }
  return density;
}

float gshard_aux_loss(const Tensor& density_1_proxy, const Tensor& density_1) {
  const int64_t E = density_1.shape.back();
  double sum = 0.0;
  for (size_t k = 0; k < density_1.f32.size(); ++k)
    sum += static_cast<double>(density_1_proxy.f32[k] * density_1.f32[k]);
  const float mean = static_cast<float>(sum) / static_cast<float>(density_1.num_elements());
  return mean * static_cast<float>(E * E);
}

}  // namespace moeref::ops
