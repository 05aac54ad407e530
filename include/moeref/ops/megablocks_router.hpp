// The rules of MegaBlocks' LearnedRouter and dropless MoE (databricks/megablocks at
// 78eea65: megablocks/layers/router.py, moe.py, dmoe.py, backend/kernels.py).
//
// Dims: G = 1 group, S tokens, E experts, K = moe_top_k ranks. float32 ops in the
// source's order; sums in double rounded once (notation §4.3).
#pragma once

#include <cstdint>

#include "moeref/tensor.hpp"

namespace moeref::ops {

// LearnedRouter.jitter: low + noise * (high - low) with Python floats low = 1 - eps,
// high = 1 + eps: f32(low) + U * f32(high - low) (the difference in double), float32 ops.
Tensor megablocks_jitter(const Tensor& uniform, double eps);

// torch.norm(expert_weights, p=p, dim=-1, keepdim=True) of float32 [G, S, K]:
// (sum |w|^p)^(1/p), in double, rounded once (p = 1: sum |w|; p = 2: sqrt(sum w^2)). -> [G, S].
Tensor torch_norm_p(const Tensor& weights, double p);

// _UniformExpertAssignment: torch.arange(numel) % num_experts in the shape of the
// indices [G, S, K] (the benchmarking mode): rank r of token t gets (t * K + r) % E.
Tensor megablocks_uniform_assignment(const Tensor& indices, int64_t num_experts);

// histogram(top_experts.flatten(), E): how many (token, rank) pairs chose each expert. -> [E].
Tensor megablocks_tokens_per_expert(const Tensor& expert_indices, int64_t num_experts);

// The row each (token, rank) pair takes in its expert's bin after ops.sort of the
// flattened expert ids (token-major, ranks interleaved): the number of earlier
// pairs in flattened order with the same expert, i.e. a stable sort. -> [G, S, K].
Tensor megablocks_bin_rows(const Tensor& expert_indices, int64_t num_experts);

// batched_load_balancing_loss for one layer: scale = E * loss_weight / (num_layers *
// tokens * top_k) in Python doubles; scale * dot(tokens_per_expert,
// expert_scores.mean(dim=0)), the mean a float32 sum / tokens.
float megablocks_load_balancing_loss(const Tensor& tokens_per_expert, const Tensor& scores, double loss_weight,
                                     int64_t top_k);

}  // namespace moeref::ops
