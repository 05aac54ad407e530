#include "moeref/ops/deepspeed_gating.hpp"

#include <limits>
#include <vector>

#include "moeref/ops/top_k.hpp"

namespace moeref::ops {

Tensor torch_topk_over_s_mask(const Tensor& scores, int64_t k) {
  const int64_t G = scores.shape[0], S = scores.shape[1], E = scores.shape[2];
  Tensor mask = Tensor::int32(scores.dims, scores.shape);
  std::vector<float> column(static_cast<size_t>(S));
  std::vector<int32_t> top(static_cast<size_t>(k));
  for (int64_t g = 0; g < G; ++g) {
    for (int64_t e = 0; e < E; ++e) {
      for (int64_t s = 0; s < S; ++s)
        column[static_cast<size_t>(s)] = scores.f32[static_cast<size_t>((g * S + s) * E + e)];
      tf_top_k_indices(column.data(), S, k, top.data());
      for (int32_t s : top) mask.i32[static_cast<size_t>((g * S + s) * E + e)] = 1;
    }
  }
  return mask;
}

Tensor torch_topk_over_e_mask(const Tensor& scores, int64_t k) {
  const int64_t E = scores.shape.back();
  const int64_t rows = scores.num_elements() / E;
  Tensor mask = Tensor::int32(scores.dims, scores.shape);
  std::vector<int32_t> top(static_cast<size_t>(k));
  for (int64_t r = 0; r < rows; ++r) {
    tf_top_k_indices(scores.f32.data() + r * E, E, k, top.data());
    for (int32_t e : top) mask.i32[static_cast<size_t>(r * E + e)] = 1;
  }
  return mask;
}

Tensor topk_indices_of_mask(const Tensor& mask, const Tensor& scores, int64_t k) {
  const int64_t G = mask.shape[0], S = mask.shape[1], E = mask.shape[2];
  Tensor indices = Tensor::int32({"G", "S", "K"}, {G, S, k});
  for (int64_t t = 0; t < G * S; ++t) {
    // The taken experts, ordered by score (tf_top_k_indices: larger first, lower index on ties);
    // a row holding fewer than k (never, for a torch.topk mask) is padded with -1.
    std::vector<int32_t> chosen;
    for (int64_t e = 0; e < E; ++e) {
      if (mask.i32[static_cast<size_t>(t * E + e)] != 0) chosen.push_back(static_cast<int32_t>(e));
    }
    const int64_t taken = static_cast<int64_t>(chosen.size());
    std::vector<float> values;
    for (int32_t e : chosen) values.push_back(scores.f32[static_cast<size_t>(t * E + e)]);
    std::vector<int32_t> top(chosen.size());
    tf_top_k_indices(values.data(), taken, taken, top.data());
    for (int64_t r = 0; r < k; ++r) {
      indices.i32[static_cast<size_t>(t * k + r)] =
          r < taken ? chosen[static_cast<size_t>(top[static_cast<size_t>(r)])] : -1;
    }
  }
  return indices;
}

float deepspeed_l_aux(const Tensor& me, const Tensor& ce, DeepspeedLAux form, int64_t k) {
  const int64_t E = me.shape.back();
  double sum = 0.0;
  for (size_t i = 0; i < me.f32.size(); ++i) sum += static_cast<double>(me.f32[i] * ce.f32[i]);
  const float num_experts = static_cast<float>(E);
  if (form == DeepspeedLAux::kTop1) return static_cast<float>(sum) * num_experts;
  const float mean = static_cast<float>(sum) / static_cast<float>(me.num_elements());
  const float scaled = mean * num_experts * num_experts;
  return form == DeepspeedLAux::kTop2 ? scaled : scaled / static_cast<float>(k);
}

float torch_clamp_eps(float denom) {
  const float eps = std::numeric_limits<float>::epsilon();
  return denom < eps ? eps : denom;
}

Tensor deepspeed_combine(const Tensor& gates, const Tensor& locations_s, int64_t C) {
  const int64_t G = gates.shape[0], S = gates.shape[1], E = gates.shape[2];
  Tensor combine = Tensor::float32({"G", "S", "E", "C"}, {G, S, E, C});
  for (int64_t t = 0; t < G * S; ++t) {
    const int64_t slot = locations_s.i32[static_cast<size_t>(t)];
    for (int64_t e = 0; e < E; ++e) {
      for (int64_t c = 0; c < C; ++c) {
        const float one_hot = c == slot ? 1.0f : 0.0f;
        combine.f32[static_cast<size_t>((t * E + e) * C + c)] = gates.f32[static_cast<size_t>(t * E + e)] * one_hot;
      }
    }
  }
  return combine;
}

}  // namespace moeref::ops
