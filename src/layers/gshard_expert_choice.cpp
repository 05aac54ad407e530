#include "moeref/layers/gshard_expert_choice.hpp"

#include <utility>

#include "moeref/ops/cumsum.hpp"
#include "moeref/ops/dispatch_tensor.hpp"

namespace moeref {

// Each comment quotes lingvo; praxis's line is the same in jnp.
ExpertChoiceSelection gshard_expert_choice_selection(Frame& f, const Tensor& logits, const Tensor& gates,
                                                     const Tensor* paddings, int64_t C, const ops::TopKRule& top_k) {
  const int64_t G = f.dim("G"), S = f.dim("S"), E = f.dim("E");
  // nonpaddings = tf.ones([G, S]); with paddings: nonpaddings = 1.0 - paddings
  const Tensor& nonpaddings =
      f.step("nonpaddings", {paddings}, ops::gshard_expert_choice_nonpaddings(logits, paddings));  // [G, S]
  // token_scores = gates; with paddings: token_scores *= tf.expand_dims(nonpaddings, -1);
  // token_scores = tf.transpose(token_scores, [0, 2, 1])
  const Tensor* scaled_by = paddings != nullptr ? &nonpaddings : nullptr;
  const Tensor& token_scores = f.step("token_scores", {gates, scaled_by},
                                      ops::gshard_expert_choice_token_scores(gates, scaled_by));  // [G, E, S]

  // _, token_indices = tf.math.top_k(token_scores, k=expert_capacity_dim, sorted=False);
  // mask = tf.one_hot(token_indices, S); mask = tf.transpose(mask, [0, 1, 3, 2]);
  // mask = tf.reduce_sum(mask, axis=-1): "GES records which expert selects which tokens".
  // The selection is recorded first because it is the decision: a token taken instead of
  // another at the cut shows up in mask_ges (where the checker may force it), while the
  // order of token_indices follows from the selected set.
  ops::ExpertChoiceTopK top_k_result =
      ops::gshard_expert_choice_top_k(token_scores, C, top_k, f.forced_decision("mask_ges", {G, E, S}));
  const Tensor& mask_ges = f.step("mask_ges", {token_scores}, std::move(top_k_result.mask_ges));  // [G, E, S]
  f.step("token_indices", {token_scores, mask_ges}, std::move(top_k_result.token_indices));       // [G, E, K]
  // mask = tf.transpose(mask, [0, 2, 1]): "GSE records which experts are selected by each token".
  const Tensor& mask = f.step("mask", {mask_ges}, ops::gshard_expert_choice_mask(mask_ges));  // [G, S, E]
  // mask *= tf.expand_dims(tf.cast(nonpaddings, mask.dtype), -1)
  const Tensor& mask_nonpadding = f.step("mask_nonpadding", {mask, nonpaddings},
                                         ops::gshard_expert_choice_mask_nonpadding(mask, nonpaddings));  // [G, S, E]
  // expert_indices = tf.cast(tf.reshape(tf.range(E), [1, 1, E]), dtype=mask.dtype) * mask
  const Tensor& expert_indices = f.step("expert_indices", {mask_nonpadding},
                                        ops::gshard_expert_choice_expert_indices(mask_nonpadding));  // [G, S, E]
  return {&nonpaddings, &mask_ges, &mask_nonpadding, &expert_indices};
}

ExpertChoiceRouting gshard_expert_choice_routing(Frame& f, const Tensor& gates, const ExpertChoiceSelection& selection,
                                                 int64_t C) {
  const Tensor& mask = *selection.mask_nonpadding;
  const Tensor& expert_indices = *selection.expert_indices;
  // position_in_expert = tf.cumsum(mask, axis=-2, exclusive=True): token order, not score order.
  const Tensor& position_in_expert =
      f.step("position_in_expert", {mask}, ops::exclusive_cumsum_over_s(mask));  // [G, S, E]
  // position_in_expert *= tf.cast(tf.less(position_in_expert, expert_capacity_dim), ...)
  const Tensor& position_in_expert_capacity =
      f.step("position_in_expert_capacity", {position_in_expert},
             ops::gshard_expert_choice_position_within_capacity(position_in_expert, C));  // [G, S, E]
  // position_in_expert *= tf.cast(mask, position_in_expert.dtype)
  const Tensor& position_in_expert_masked =
      f.step("position_in_expert_masked", {position_in_expert_capacity, mask},
             ops::gshard_expert_choice_position_masked(position_in_expert_capacity, mask));  // [G, S, E]

  // for i in range(E):
  //   expert_indicator = tf.one_hot(expert_indices[:, :, i], E)
  //   gate_i = tf.einsum('...GSE,...GSE->...GS', gates, expert_indicator); gate_i *= mask[:, :, i]
  const Tensor& gate_i = f.step("gate_i", {gates, expert_indices, mask},
                                ops::gshard_expert_choice_gate_i(gates, expert_indices, mask));  // [G, S, E], i along E
  //   gate_i = tf.expand_dims(gate_i, axis=-1) * expert_indicator
  //   pos_i_indicator = tf.one_hot(position_in_expert[:, :, i], C) * tf.expand_dims(mask[:, :, i], -1)
  //   combine_tensor += tf.einsum('GSE,GSC->GSEC', gate_i, pos_i_indicator)
  const Tensor& combine_tensor =
      f.step("combine_tensor", {gate_i, expert_indices, position_in_expert_masked, mask},
             ops::gshard_expert_choice_combine_tensor(gate_i, expert_indices, position_in_expert_masked, mask,
                                                      C));  // [G, S, E, C]
  // dispatch_tensor = tf.cast(tf.cast(combine_tensor, tf.bool), fprop_dtype)
  const Tensor& dispatch_tensor =
      f.step("dispatch_tensor", {combine_tensor}, ops::dispatch_from_combine(combine_tensor));  // [G, S, E, C]
  return {&combine_tensor, &dispatch_tensor};
}

}  // namespace moeref
