#include "moeref/ops/hf_router_losses.hpp"

#include <cmath>

namespace moeref::ops {

Tensor torch_logsumexp(const Tensor& logits) {
  const int64_t E = logits.shape.back();
  const int64_t rows = logits.num_elements() / E;
  std::vector<std::string> dims(logits.dims.begin(), logits.dims.end() - 1);
  std::vector<int64_t> shape(logits.shape.begin(), logits.shape.end() - 1);
  Tensor log_z = Tensor::float32(dims, shape);
  for (int64_t r = 0; r < rows; ++r) {
    const float* row = logits.f32.data() + r * E;
    // maxes = at::amax(self, dims, true)
    float maxes = row[0];
    for (int64_t e = 1; e < E; ++e) maxes = row[e] > maxes ? row[e] : maxes;
    // at::sum_out(result, (self - maxes).exp_(), dims): the subtraction uses the unfilled maxes.
    double sum = 0.0;
    for (int64_t e = 0; e < E; ++e) {
      const float shifted = row[e] - maxes;
      sum += static_cast<double>(static_cast<float>(std::exp(static_cast<double>(shifted))));
    }
    // maxes_squeezed.masked_fill_(maxes_squeezed.abs() == INFINITY, 0); result.log_().add_(maxes_squeezed)
    const float added = std::isinf(maxes) ? 0.0f : maxes;
    log_z.f32[static_cast<size_t>(r)] =
        static_cast<float>(std::log(static_cast<double>(static_cast<float>(sum)))) + added;
  }
  return log_z;
}

Tensor torch_square(const Tensor& x) {
  Tensor out = Tensor::float32(x.dims, x.shape);
  for (size_t k = 0; k < out.f32.size(); ++k) out.f32[k] = x.f32[k] * x.f32[k];
  return out;
}

float hf_router_z_loss(const Tensor& z_loss) {
  double sum = 0.0;
  for (float value : z_loss.f32) sum += static_cast<double>(value);
  return static_cast<float>(sum) / static_cast<float>(z_loss.num_elements());
}

float hf_load_balancing_loss(const Tensor& tokens_per_group_and_expert,
                             const Tensor& router_prob_per_group_and_expert) {
  const int64_t E = tokens_per_group_and_expert.shape.back();
  double sum = 0.0;
  for (size_t k = 0; k < tokens_per_group_and_expert.f32.size(); ++k) {
    sum += static_cast<double>(tokens_per_group_and_expert.f32[k] * router_prob_per_group_and_expert.f32[k]);
  }
  const float mean = static_cast<float>(sum) / static_cast<float>(tokens_per_group_and_expert.num_elements());
  return mean * static_cast<float>(E * E);
}

float hf_load_balancing_loss_per_token(const Tensor& tokens_per_group_and_expert,
                                       const Tensor& router_prob_per_group_and_expert) {
  const int64_t G = tokens_per_group_and_expert.shape[0], S = tokens_per_group_and_expert.shape[1];
  const int64_t E = tokens_per_group_and_expert.shape[2];
  double sum = 0.0;
  for (int64_t i = 0; i < G * S * E; ++i) {
    const float prob = router_prob_per_group_and_expert.f32[static_cast<size_t>((i / (S * E)) * E + i % E)];
    sum += static_cast<double>(tokens_per_group_and_expert.f32[static_cast<size_t>(i)] * prob);
  }
  const float mean = static_cast<float>(sum) / static_cast<float>(G * S * E);
  return mean * static_cast<float>(E * E);
}

}  // namespace moeref::ops
