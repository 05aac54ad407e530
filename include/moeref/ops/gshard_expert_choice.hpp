// Expert-choice routing v2 of GShard-style MoE: each expert takes its C best
// tokens by padding-masked probability, and a token's slot in an expert is the
// number of earlier tokens (token order, not score order) that the expert also
// took. Two sources state the rule line for line:
//   tensorflow/lingvo lingvo/core/gshard_layers.py, TokenShufflingOnlogitsV2;
//   google/praxis praxis/gshard_utils.py, expert_choice_gating_on_logits_v2.
// From the gates on they differ only in the framework's top-k (its tie rule and
// how many entries it returns), which the caller passes in. One function per
// statement or short run of statements, in the sources' order; the comments
// quote lingvo.
//
// Dims: G groups, S group size, E experts, C expert capacity, K entries the
//       top-k returns per expert. Masks, indices and positions are int32.
#pragma once

#include <cstdint>

#include "moeref/tensor.hpp"

namespace moeref::ops {

// nonpaddings = ones([G, S]); with paddings: nonpaddings = 1.0 - paddings.
// logits [G, S, E] gives the shape; returns [G, S].
Tensor gshard_expert_choice_nonpaddings(const Tensor& logits, const Tensor* paddings);

// token_scores = gates; with paddings: token_scores *= expand_dims(nonpaddings, -1)
// (pass nullptr without paddings); token_scores = transpose(token_scores, [0, 2, 1]).
// gates [G, S, E] -> [G, E, S].
Tensor gshard_expert_choice_token_scores(const Tensor& gates, const Tensor* nonpaddings);

// A framework's top-k along one row of n values, writing the indices it returns
// (ops/top_k.hpp: tf_top_k_indices, praxis_top_k_indices).
using TopKIndices = void (*)(const float* values, int64_t n, int64_t k, int32_t* indices);

// The top-k a source calls: its rule, and the entries it returns for k = C per
// row, under a dim name (tf.math.top_k: C under "C"; praxis top_k: K under "K").
struct TopKRule {
  TopKIndices indices;
  int64_t returned;
  const char* returned_dim;
};

struct ExpertChoiceTopK {
  Tensor mask_ges;       // [G, E, S] 1 where expert e took token s
  Tensor token_indices;  // [G, E, K] the tokens each expert took, in top_k's order
};

// _, token_indices = top_k(token_scores, k) on each row of token_scores [G, E, S];
// and which tokens each expert took:
// mask = reduce_sum(transpose(one_hot(token_indices, S), [0, 1, 3, 2]), -1), 0 or 1
// since top_k's indices are distinct. `forced` [G, E, S] (the checker's near-tie
// replay; nullptr for none) sets memberships: 1 take, 0 leave, -1 as top_k took;
// a row whose forced set still holds K tokens takes it, in top_k's order.
ExpertChoiceTopK gshard_expert_choice_top_k(const Tensor& token_scores, int64_t k, const TopKRule& top_k,
                                            const Tensor* forced);

// mask = transpose(mask, [0, 2, 1]): which experts took each token. [G, E, S] -> [G, S, E].
Tensor gshard_expert_choice_mask(const Tensor& mask_ges);

// mask *= expand_dims(cast(nonpaddings, int32), -1): the cast truncates toward
// zero, so a fractional padding drops the token. mask [G, S, E], nonpaddings [G, S].
Tensor gshard_expert_choice_mask_nonpadding(const Tensor& mask, const Tensor& nonpaddings);

// expert_indices = reshape(range(E), [1, 1, E]) * mask. [G, S, E].
Tensor gshard_expert_choice_expert_indices(const Tensor& mask);

// position_in_expert *= less(position_in_expert, C). [G, S, E].
Tensor gshard_expert_choice_position_within_capacity(const Tensor& position_in_expert, int64_t C);

// position_in_expert *= mask. [G, S, E].
Tensor gshard_expert_choice_position_masked(const Tensor& position_in_expert, const Tensor& mask);

// For every expert i: expert_indicator = one_hot(expert_indices[:, :, i], E)
// (expert i when selected, else expert 0);
// gate_i = einsum('GSE,GSE->GS', gates, expert_indicator) (one product with 1.0,
// the rest + 0); gate_i *= mask[:, :, i]. Returns every gate_i as [G, S, E], i along E.
Tensor gshard_expert_choice_gate_i(const Tensor& gates, const Tensor& expert_indices, const Tensor& mask);

// combine_tensor = zeros([G, S, E, C]); for i in range(E):
//   gate_i = expand_dims(gate_i, -1) * expert_indicator                 [G, S, E]
//   pos_i_indicator = one_hot(position_in_expert[:, :, i], C) * expand_dims(mask[:, :, i], -1)   [G, S, C]
//   combine_tensor += einsum('GSE,GSC->GSEC', gate_i, pos_i_indicator)
// in float32, i in increasing order. Returns [G, S, E, C].
Tensor gshard_expert_choice_combine_tensor(const Tensor& gate_i, const Tensor& expert_indices,
                                           const Tensor& position_in_expert, const Tensor& mask, int64_t C);

}  // namespace moeref::ops
