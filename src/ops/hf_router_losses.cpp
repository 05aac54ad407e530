#include "moeref/ops/hf_router_losses.hpp"

#include "moeref/ops/torch_softmax.hpp"

namespace moeref::ops {

Tensor torch_logsumexp(const Tensor& logits) {
  const int64_t E = logits.shape.back();
  std::vector<std::string> dims(logits.dims.begin(), logits.dims.end() - 1);
  std::vector<int64_t> shape(logits.shape.begin(), logits.shape.end() - 1);
  Tensor log_z = Tensor::float32(dims, shape);
  // The row kernel of ops/torch_softmax: masked_fill_ on the squeezed view writes
  // through to maxes, so x - maxes already uses 0 for an infinite max.
  torch_logsumexp(logits.f32.data(), log_z.f32.data(), logits.num_elements() / E, E);
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
