#include "moeref/ops/megablocks_router.hpp"

#include <cmath>
#include <vector>

#include "moeref/ops/torch_routing.hpp"

namespace moeref::ops {

Tensor megablocks_jitter(const Tensor& uniform, double eps) {
  const double low = 1.0 - eps, high = 1.0 + eps;
  const float low_f = static_cast<float>(low), range = static_cast<float>(high - low);
  Tensor out = Tensor::float32(uniform.dims, uniform.shape);
  for (size_t i = 0; i < out.f32.size(); ++i) out.f32[i] = low_f + uniform.f32[i] * range;
  return out;
}

Tensor torch_norm_p(const Tensor& weights, double p) {
  const int64_t K = weights.shape.back();
  Tensor norm =
      Tensor::float32({weights.dims.begin(), weights.dims.end() - 1}, {weights.shape.begin(), weights.shape.end() - 1});
  for (size_t t = 0; t < norm.f32.size(); ++t) {
    double sum = 0.0;
    for (int64_t k = 0; k < K; ++k) {
      const double w = std::fabs(static_cast<double>(weights.f32[t * static_cast<size_t>(K) + static_cast<size_t>(k)]));
      sum += p == 1.0 ? w : p == 2.0 ? w * w : std::pow(w, p);
    }
    norm.f32[t] = static_cast<float>(p == 1.0 ? sum : p == 2.0 ? std::sqrt(sum) : std::pow(sum, 1.0 / p));
  }
  return norm;
}

Tensor megablocks_uniform_assignment(const Tensor& indices, int64_t num_experts) {
  Tensor out = Tensor::int32(indices.dims, indices.shape);
  for (size_t i = 0; i < out.i32.size(); ++i) out.i32[i] = static_cast<int32_t>(static_cast<int64_t>(i) % num_experts);
  return out;
}

Tensor megablocks_tokens_per_expert(const Tensor& expert_indices, int64_t num_experts) {
  Tensor counts = Tensor::int32({"E"}, {num_experts});
  for (int32_t e : expert_indices.i32) counts.i32[static_cast<size_t>(e)] += 1;
  return counts;
}

Tensor megablocks_bin_rows(const Tensor& expert_indices, int64_t num_experts) {
  Tensor rows = Tensor::int32(expert_indices.dims, expert_indices.shape);
  std::vector<int32_t> seen(static_cast<size_t>(num_experts), 0);
  for (size_t i = 0; i < rows.i32.size(); ++i) rows.i32[i] = seen[static_cast<size_t>(expert_indices.i32[i])]++;
  return rows;
}

float megablocks_load_balancing_loss(const Tensor& tokens_per_expert, const Tensor& scores, double loss_weight,
                                     int64_t top_k) {
  const int64_t tokens = scores.shape[1], E = scores.shape[2];
  // expert_scores.mean(dim=0): [E]
  const Tensor mean = torch_mean_over_s(scores);
  double dot = 0.0;
  for (int64_t e = 0; e < E; ++e) {
    dot += static_cast<double>(static_cast<float>(tokens_per_expert.i32[static_cast<size_t>(e)]) *
                               mean.f32[static_cast<size_t>(e)]);
  }
  // scale = (num_experts * moe_loss_weight) / (num_layers * tokens * moe_top_k), num_layers = 1.
  const double scale = (static_cast<double>(E) * loss_weight) / static_cast<double>(1 * tokens * top_k);
  return static_cast<float>(scale) * static_cast<float>(dot);
}

}  // namespace moeref::ops
