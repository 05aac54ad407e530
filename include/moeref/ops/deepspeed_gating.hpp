// The rules DeepSpeed's gating functions share (microsoft/DeepSpeed,
// deepspeed/moe/sharded_moe.py at 38327e0: top1gating, top2gating, topkgating):
// torch.topk selections scattered back into masks, the l_aux forms, the
// combine tensor built from per-token locations.
//
// Dims: G = 1 group, S tokens, E experts, C expert capacity.
#pragma once

#include <cstdint>

#include "moeref/tensor.hpp"

namespace moeref::ops {

// torch.zeros_like(scores).scatter_(0, torch.topk(scores, k=k, dim=0)[1], 1) of
// float32 scores [G, S, E]: per (g, e), the k tokens with the largest scores,
// as int32 0/1 [G, S, E]. torch leaves the choice among equal scores
// unspecified; moeref takes the lower token index (tf_top_k_indices) and the
// variants declare it a near-tie decision. Requires 0 <= k <= S.
Tensor torch_topk_over_s_mask(const Tensor& scores, int64_t k);

// torch.zeros_like(..., dtype=bool).scatter_(1, torch.topk(scores, k=k,
// dim=1)[1], 1) of float32 scores [G, S, E]: per token, its k largest experts
// (lower index among equal scores, a near-tie decision), int32 0/1 [G, S, E].
Tensor torch_topk_over_e_mask(const Tensor& scores, int64_t k);

// The k experts a top-k mask [G, S, E] holds per token, in torch.topk's output
// order: larger score first, the lower index first among equal scores.
// -> int32 [G, S, K].
Tensor topk_indices_of_mask(const Tensor& mask, const Tensor& scores, int64_t k);

// The three forms of l_aux, from me = torch.mean(gates, dim=0) and ce =
// torch.mean(mask.float(), dim=0) (float32 [G, E]):
//   top1gating: torch.sum(me * ce) * num_experts
//   top2gating: torch.mean(me * ce) * num_experts * num_experts
//   topkgating: torch.mean(me * ce) * num_experts * num_experts / k
enum class DeepspeedLAux { kTop1, kTop2, kTopK };
float deepspeed_l_aux(const Tensor& me, const Tensor& ce, DeepspeedLAux form, int64_t k);

// torch.clamp(denom, min=torch.finfo(float32).eps): max(x, 2^-23), float32.
float torch_clamp_eps(float denom);

// combine_weights[s, e, c] = gates[s, e] * one_hot(locations_s[s], C)[c]
// (einsum("se,sc->sec", ...)), gates float32 [G, S, E], locations_s int32
// [G, S] in [0, C). -> float32 [G, S, E, C].
Tensor deepspeed_combine(const Tensor& gates, const Tensor& locations_s, int64_t C);

}  // namespace moeref::ops
