#include "moeref/ops/fairseq_top2.hpp"

#include <algorithm>
#include <limits>
#include <numeric>
#include <vector>

#include "moeref/ops/deepspeed_gating.hpp"
#include "moeref/ops/torch_routing.hpp"

namespace moeref::ops {

Tensor masked_fill_neg_inf(const Tensor& logits, const Tensor& mask) {
  Tensor out = Tensor::float32(logits.dims, logits.shape);
  for (size_t i = 0; i < out.f32.size(); ++i) {
    out.f32[i] = mask.i32[i] != 0 ? -std::numeric_limits<float>::infinity() : logits.f32[i];
  }
  return out;
}

Tensor gate_of_mask(const Tensor& gates, const Tensor& mask) {
  const int64_t E = gates.shape.back();
  Tensor out =
      Tensor::float32({gates.dims.begin(), gates.dims.end() - 1}, {gates.shape.begin(), gates.shape.end() - 1});
  for (size_t t = 0; t < out.f32.size(); ++t) {
    // One nonzero term: the float sum of the products is that term exactly.
    float sum = 0.0f;
    for (int64_t e = 0; e < E; ++e) {
      const size_t at = t * static_cast<size_t>(E) + static_cast<size_t>(e);
      sum += gates.f32[at] * static_cast<float>(mask.i32[at]);
    }
    out.f32[t] = sum;
  }
  return out;
}

NormalizedGates normalize_top2_gates(const Tensor& gates1_s, const Tensor& gates2_s) {
  NormalizedGates out{Tensor::float32(gates1_s.dims, gates1_s.shape), Tensor::float32(gates1_s.dims, gates1_s.shape),
                      Tensor::float32(gates1_s.dims, gates1_s.shape)};
  for (size_t t = 0; t < out.denom_s.f32.size(); ++t) {
    out.denom_s.f32[t] = torch_clamp_eps(gates1_s.f32[t] + gates2_s.f32[t]);
    out.gates1_s.f32[t] = gates1_s.f32[t] / out.denom_s.f32[t];
    out.gates2_s.f32[t] = gates2_s.f32[t] / out.denom_s.f32[t];
  }
  return out;
}

Tensor bpr_importance_scores(const Tensor& probs) {
  Tensor scores = torch_max_over_last(probs);
  for (float& score : scores.f32) score = -1.0f * score;
  return scores;
}

namespace {

// cumsum(mask[order], dim=0) - 1, times the sorted mask when `times_mask`, mapped back to token order.
Tensor locations_in_order(const Tensor& mask, const std::vector<int64_t>& order, bool times_mask) {
  const int64_t G = mask.shape[0], S = mask.shape[1], E = mask.shape[2];
  Tensor locations = Tensor::int32(mask.dims, mask.shape);
  for (int64_t g = 0; g < G; ++g) {
    for (int64_t e = 0; e < E; ++e) {
      int32_t running = 0;
      for (int64_t r = 0; r < S; ++r) {
        const size_t at = static_cast<size_t>((g * S + order[static_cast<size_t>(r)]) * E + e);
        running += mask.i32[at];
        locations.i32[at] = (running - 1) * (times_mask ? mask.i32[at] : 1);
      }
    }
  }
  return locations;
}

}  // namespace

Tensor rank_locations(const Tensor& mask, const Tensor* importance_scores) {
  const int64_t S = mask.shape[1];
  std::vector<int64_t> order(static_cast<size_t>(S));
  std::iota(order.begin(), order.end(), 0);
  if (importance_scores != nullptr) {
    // importance_scores.argsort(dim=0): ascending, equal scores in token order (stable; G = 1).
    std::stable_sort(order.begin(), order.end(), [importance_scores](int64_t a, int64_t b) {
      return importance_scores->f32[static_cast<size_t>(a)] < importance_scores->f32[static_cast<size_t>(b)];
    });
  }
  return locations_in_order(mask, order, importance_scores != nullptr);
}

std::pair<Tensor, Tensor> top2_locations(const Tensor& mask1, const Tensor& mask2, const Tensor* importance_scores) {
  const int64_t S = mask1.shape[1], E = mask1.shape[2];
  Tensor locations1 = rank_locations(mask1, importance_scores);
  Tensor locations2 = rank_locations(mask2, importance_scores);
  // locations2 += torch.sum(mask1, dim=0, keepdim=True), group by group.
  for (int64_t g = 0; g < mask1.shape[0]; ++g) {
    for (int64_t e = 0; e < E; ++e) {
      int32_t count1 = 0;
      for (int64_t s = 0; s < S; ++s) count1 += mask1.i32[static_cast<size_t>((g * S + s) * E + e)];
      for (int64_t s = 0; s < S; ++s) locations2.i32[static_cast<size_t>((g * S + s) * E + e)] += count1;
    }
  }
  return {std::move(locations1), std::move(locations2)};
}

Tensor location_of_mask(const Tensor& locations, const Tensor& mask) {
  const int64_t E = locations.shape.back();
  Tensor out = Tensor::int32({locations.dims.begin(), locations.dims.end() - 1},
                             {locations.shape.begin(), locations.shape.end() - 1});
  for (size_t t = 0; t < out.i32.size(); ++t) {
    for (int64_t e = 0; e < E; ++e) {
      const size_t at = t * static_cast<size_t>(E) + static_cast<size_t>(e);
      out.i32[t] += locations.i32[at] * mask.i32[at];
    }
  }
  return out;
}

Tensor top2_combine(const Tensor& gates1_s, const Tensor& mask1, const Tensor& locations1_s, const Tensor& gates2_s,
                    const Tensor& mask2, const Tensor& locations2_s, int64_t C) {
  const int64_t G = mask1.shape[0], S = mask1.shape[1], E = mask1.shape[2];
  Tensor combine = Tensor::float32({"G", "S", "E", "C"}, {G, S, E, C});
  for (int64_t t = 0; t < G * S; ++t) {
    for (int64_t e = 0; e < E; ++e) {
      const size_t te = static_cast<size_t>(t * E + e);
      const float gate1 = gates1_s.f32[static_cast<size_t>(t)] * static_cast<float>(mask1.i32[te]);
      const float gate2 = gates2_s.f32[static_cast<size_t>(t)] * static_cast<float>(mask2.i32[te]);
      for (int64_t c = 0; c < C; ++c) {
        const float one1 = c == locations1_s.i32[static_cast<size_t>(t)] ? 1.0f : 0.0f;
        const float one2 = c == locations2_s.i32[static_cast<size_t>(t)] ? 1.0f : 0.0f;
        combine.f32[te * static_cast<size_t>(C) + static_cast<size_t>(c)] = gate1 * one1 + gate2 * one2;
      }
    }
  }
  return combine;
}

}  // namespace moeref::ops
