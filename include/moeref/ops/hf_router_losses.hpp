// The router losses of Hugging Face's Switch Transformers (huggingface/
// transformers, src/transformers/models/switch_transformers/
// modeling_switch_transformers.py at 00dcc6d: router_z_loss_func,
// load_balancing_loss_func), with the torch reductions they are written in.
//
// Dims: G groups (batch rows), S tokens per group, E experts. Every op rounds
// to float32 in the source's order; sums accumulate in double in index order
// and round once (notation §4.3); torch.mean is the sum divided by the count
// (notation §5).
#pragma once

#include "moeref/tensor.hpp"

namespace moeref::ops {

// torch.logsumexp(x, dim=-1) (pytorch/pytorch, aten/src/ATen/native/
// ReduceOps.cpp, logsumexp_out_impl): maxes = amax(x) (0 where it is infinite),
// sum(exp(x - maxes)), then log(.) + maxes, by ops::torch_logsumexp row by row.
// float32 [G, S, E] -> [G, S].
Tensor torch_logsumexp(const Tensor& logits);

// x ** 2 on a float32 tensor: x * x, one rounding.
Tensor torch_square(const Tensor& x);

// router_z_loss_func's last line: torch.sum(z_loss) / (num_groups *
// tokens_per_group), z_loss float32 [G, S]; the Python int divides as float32.
float hf_router_z_loss(const Tensor& z_loss);

// load_balancing_loss_func's last line: torch.mean(tokens_per_group_and_expert *
// router_prob_per_group_and_expert) * (num_experts ** 2), both float32 [G, E]
// (the product elementwise, the mean over all G * E elements).
float hf_load_balancing_loss(const Tensor& tokens_per_group_and_expert, const Tensor& router_prob_per_group_and_expert);

// The same function as NLLB-MoE calls it for one layer (huggingface/transformers,
// src/transformers/models/nllb_moe/modeling_nllb_moe.py, load_balancing_loss_func
// with expert_indices [N, 1]): the mask is averaged over the size-1 choice axis
// (tokens_per_group_and_expert is the one-hot itself, float32 [G, S, E]) while the
// probabilities are averaged over the tokens ([G, E], broadcast over S):
// torch.mean(tokens * prob) * E^2, the mean over G * S * E elements.
float hf_load_balancing_loss_per_token(const Tensor& tokens_per_group_and_expert,
                                       const Tensor& router_prob_per_group_and_expert);

}  // namespace moeref::ops
