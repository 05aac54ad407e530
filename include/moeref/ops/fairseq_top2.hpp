// The top-2 gating rules of fairscale's Top2Gating as fairseq keeps it
// (facebookresearch/fairseq, fairseq/modules/moe/top2gate.py at 26d62ae,
// top2gating) and as its ports restate it: Hugging Face NLLB-MoE
// (NllbMoeTop2Router.route_tokens) and DeepSpeed (top2gating). Pure tensor ops:
// the variants record the steps under their own source's names.
//
// Dims: G = 1 group, S tokens, E experts, C expert capacity. Masks and
// locations are int64 in torch and exact integers, held as int32; gates are
// float32.
#pragma once

#include <cstdint>
#include <utility>

#include "moeref/tensor.hpp"

namespace moeref::ops {

// logits.masked_fill(mask1.bool(), float("-inf")): float32 [G, S, E].
Tensor masked_fill_neg_inf(const Tensor& logits, const Tensor& mask);

// (gates * mask).sum(dim=1) of float32 gates and an int32 mask [G, S, E]: the
// chosen expert's probability (one nonzero term, so exact) -> float32 [G, S].
Tensor gate_of_mask(const Tensor& gates, const Tensor& mask);

// denom_s = torch.clamp(gates1_s + gates2_s, min=finfo(float32).eps);
// gates1_s / denom_s, gates2_s / denom_s (true float32 divisions).
struct NormalizedGates {
  Tensor denom_s;   // [G, S]
  Tensor gates1_s;  // [G, S]
  Tensor gates2_s;  // [G, S]
};
NormalizedGates normalize_top2_gates(const Tensor& gates1_s, const Tensor& gates2_s);

// importance_scores = -1 * probs.max(dim=1)[0] (batch_prioritized_routing):
// float32 [G, S, E] -> [G, S].
Tensor bpr_importance_scores(const Tensor& probs);

// One rank's slots: cumsum(mask, dim=0) - 1, or with `importance_scores`
// (batch_prioritized_routing) (cumsum(sorted) - 1) * sorted mapped back to token
// order (compute_sorted_location). -> int32 [G, S, E].
Tensor rank_locations(const Tensor& mask, const Tensor* importance_scores);

// The slots of both ranks. Without an importance order: locations1 =
// cumsum(mask1, dim=0) - 1; locations2 = cumsum(mask2, dim=0) - 1 +
// sum(mask1, dim=0). With batch_prioritized_routing, `importance_scores`
// [G, S] (-max probability) orders the tokens: sorted = mask[argsort(scores)];
// locations = (cumsum(sorted) - 1) * sorted, mapped back by
// argsort(argsort(scores)); then locations2 += sum(mask1, dim=0). torch's
// argsort is not stable; moeref sorts stably (equal scores keep token order).
// -> int32 [G, S, E] each.
std::pair<Tensor, Tensor> top2_locations(const Tensor& mask1, const Tensor& mask2, const Tensor* importance_scores);

// locations_s = torch.sum(locations * mask, dim=1) -> int32 [G, S].
Tensor location_of_mask(const Tensor& locations, const Tensor& mask);

// combine_weights = gates1_s * mask1 (x) one_hot(locations1_s, C) +
// gates2_s * mask2 (x) one_hot(locations2_s, C): float32 [G, S, E, C] (the
// einsum / bmm of each rank, then the sum).
Tensor top2_combine(const Tensor& gates1_s, const Tensor& mask1, const Tensor& locations1_s, const Tensor& gates2_s,
                    const Tensor& mask2, const Tensor& locations2_s, int64_t C);

}  // namespace moeref::ops
