#include "moeref/ops/tutel_losses.hpp"

#include <cmath>
#include <vector>

namespace moeref::ops {

namespace {

// Tensor.var() (unbiased) / (Tensor.mean() ** 2 + 1e-10) of a float32 vector.
float cv_squared(const std::vector<float>& values) {
  const double n = static_cast<double>(values.size());
  double sum = 0.0;
  for (float v : values) sum += static_cast<double>(v);
  const float mean = static_cast<float>(sum / n);
  double squares = 0.0;
  for (float v : values) squares += static_cast<double>(v - mean) * static_cast<double>(v - mean);
  const float var = static_cast<float>(squares / (n - 1.0));
  return var / (mean * mean + 1e-10f);
}

}  // namespace

float tutel_gshard_loss(const Tensor& scores, const Tensor& top1) {
  const int64_t S = scores.shape[1], E = scores.shape[2];
  // hot_value = num_global_experts / num_samples: a Python float, float32 in the tensor.
  const float hot = static_cast<float>(static_cast<double>(E) / static_cast<double>(S));
  double total = 0.0;
  for (int64_t e = 0; e < E; ++e) {
    double me = 0.0, ce = 0.0;
    for (int64_t s = 0; s < S; ++s) {
      me += static_cast<double>(scores.f32[static_cast<size_t>(s * E + e)]);
      ce += top1.i32[static_cast<size_t>(s)] == e ? static_cast<double>(hot) : 0.0;
    }
    total += static_cast<double>(static_cast<float>(me) * static_cast<float>(ce));
  }
  return static_cast<float>(total) / static_cast<float>(S);
}

float tutel_load_importance_loss(const Tensor& scores_wo_noise, const Tensor& threshold, double gate_noise) {
  const int64_t S = scores_wo_noise.shape[1], E = scores_wo_noise.shape[2];
  const float scale = static_cast<float>(gate_noise / static_cast<double>(E));
  const float inverse = 1.0f / scale;                      // self.scale.reciprocal()
  const float sqrt2 = static_cast<float>(std::sqrt(2.0));  // math.sqrt(2)
  std::vector<float> importance(static_cast<size_t>(E)), load(static_cast<size_t>(E));
  for (int64_t e = 0; e < E; ++e) {
    double imp = 0.0, ld = 0.0;
    for (int64_t s = 0; s < S; ++s) {
      const float score = scores_wo_noise.f32[static_cast<size_t>(s * E + e)];
      imp += static_cast<double>(score);
      const float diff = score - threshold.f32[static_cast<size_t>(s)];
      const float z = (diff - 0.0f) * inverse / sqrt2;
      const float erf = static_cast<float>(std::erf(static_cast<double>(z)));
      ld += static_cast<double>(0.5f * (1.0f + erf));
    }
    importance[static_cast<size_t>(e)] = static_cast<float>(imp);
    load[static_cast<size_t>(e)] = static_cast<float>(ld);
  }
  return (cv_squared(importance) + cv_squared(load)) / 2.0f;
}

}  // namespace moeref::ops
