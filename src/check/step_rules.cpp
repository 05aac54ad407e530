// The checker's table of float steps (spec/trace-format.md, "Tolerances"): what
// each float step every variant records computes, as far as its float32 error
// goes. tests/test_check_step_rules.cpp checks every row against every golden's
// "reads" and dims, and that every float step and loss of every golden has a row.
//
// Dims: G groups, S group size, E experts, C capacity, M model, H hidden, N output,
// K choices, F stmoe's feed-forward width, X/Y/I/T/D mtf_moe2d's outer and inner dims.

#include <sstream>
#include <string>
#include <vector>

#include "moeref/step_bounds.hpp"

namespace moeref {

namespace {

using B = BoundKind;

// Variants whose experts run per token and rank ([G, S, K, H]), the expert index
// selecting the weights: E is gathered, not summed.
constexpr const char* kPerTokenExperts = "hf_switch_top1,hf_nllb_top2,megablocks_dropless";

const std::vector<StepRule>& rules() {
  // {variants ("" for every variant), step, kind, N (ulps of its own), dims, gathered}
  static const std::vector<StepRule> table = {
      // ---- Copies, reshapes, selections, masks, scatters: no rounding of their own. --------
      // A gate picked by an index or a 0/1 mask (a sum over E with one nonzero term is exact),
      // the combine tensor and the index form (a gate placed at its slot), logits with -inf
      // or 0 where masked, a transpose.
      {"", "inputs", B::kExact, 0, "", ""},
      {"", "grouped_inputs", B::kExact, 0, "", ""},
      {"", "result", B::kExact, 0, "", ""},
      {"", "inputs_y", B::kExact, 0, "", ""},
      {"", "importance_y", B::kExact, 0, "", ""},
      {"", "importance", B::kExact, 0, "", ""},
      {"", "paddings", B::kExact, 0, "", ""},
      {"", "padding_mask", B::kExact, 0, "", ""},
      {"", "reshaped_input_padding_mask", B::kExact, 0, "", ""},
      {"", "router_probs_t", B::kExact, 0, "", ""},
      {"", "gate_1", B::kExact, 0, "", ""},
      {"", "gate_2", B::kExact, 0, "", ""},
      {"", "gate_3", B::kExact, 0, "", ""},
      {"", "gate_4", B::kExact, 0, "", ""},
      {"", "gates_without_top_1", B::kExact, 0, "", ""},
      {"", "raw_gates_2", B::kExact, 0, "", ""},
      {"", "raw_gates_3", B::kExact, 0, "", ""},
      {"", "raw_gates_4", B::kExact, 0, "", ""},
      {"", "outer_gate_1", B::kExact, 0, "", ""},
      {"", "outer_gate_2", B::kExact, 0, "", ""},
      {"", "outer_gates_without_top_1", B::kExact, 0, "", ""},
      {"", "inner_gate_1", B::kExact, 0, "", ""},
      {"", "inner_gate_2", B::kExact, 0, "", ""},
      {"", "inner_gates_without_top_1", B::kExact, 0, "", ""},
      {"", "gate_1_capacity", B::kExact, 0, "", ""},
      {"", "gate_2_capacity", B::kExact, 0, "", ""},
      {"", "gate_3_capacity", B::kExact, 0, "", ""},
      {"", "gate_4_capacity", B::kExact, 0, "", ""},
      {"", "outer_gate_1_capacity", B::kExact, 0, "", ""},
      {"", "outer_gate_2_capacity", B::kExact, 0, "", ""},
      {"", "inner_gate_1_capacity", B::kExact, 0, "", ""},
      {"", "inner_gate_2_capacity", B::kExact, 0, "", ""},
      {"", "gates1_s", B::kExact, 0, "", ""},
      {"", "gates2_s", B::kExact, 0, "", ""},
      {"", "gates1_s_capacity", B::kExact, 0, "", ""},
      {"", "gates2_s_capacity", B::kExact, 0, "", ""},
      {"", "gates_s_0", B::kExact, 0, "", ""},
      {"", "gates_s_1", B::kExact, 0, "", ""},
      {"", "gates_s_2", B::kExact, 0, "", ""},
      {"", "gates_masked", B::kExact, 0, "", ""},
      {"", "gates_capacity", B::kExact, 0, "", ""},
      {"", "expert_gate_capacity", B::kExact, 0, "", ""},
      {"stmoe_topn", "gates", B::kExact, 0, "", ""},
      {"", "gate_2_sampled", B::kExact, 0, "", ""},
      {"", "top_1_max_probs_raw", B::kExact, 0, "", ""},
      {"", "top_2_max_probs_raw", B::kExact, 0, "", ""},
      {"", "top_2_max_probs_random", B::kExact, 0, "", ""},
      {"", "router_probs_max", B::kExact, 0, "", ""},
      {"", "router_probs_combined", B::kExact, 0, "", ""},
      {"", "combining_weights_1", B::kExact, 0, "", ""},
      {"", "combining_weights_2", B::kExact, 0, "", ""},
      {"", "routing_weight", B::kExact, 0, "", ""},
      {"", "combine_tensor", B::kExact, 0, "", ""},
      {"", "combine_tensor_unnormalized", B::kExact, 0, "", ""},
      {"", "combine_tensor_regrouped", B::kExact, 0, "", ""},
      {"", "combine_weights", B::kExact, 0, "", ""},
      {"", "combine_weights_capacity", B::kExact, 0, "", ""},
      {"", "combine_array", B::kExact, 0, "", ""},
      {"", "outer_combine_tensor", B::kExact, 0, "", ""},
      {"", "inner_combine_tensor", B::kExact, 0, "", ""},
      {"", "slot_importance_sum", B::kExact, 0, "", ""},
      {"", "expert_gate", B::kExact, 0, "", ""},
      {"", "expert_gate_masked", B::kExact, 0, "", ""},
      {"", "expert_gate_probs", B::kExact, 0, "", ""},
      {"", "expert_masked_probs", B::kExact, 0, "", ""},
      {"", "expert_weights", B::kExact, 0, "", ""},
      {"", "gate_i", B::kExact, 0, "", ""},
      {"", "gate", B::kExact, 0, "", ""},
      {"", "logits_except1", B::kExact, 0, "", ""},
      {"", "logits_except_top_1", B::kExact, 0, "", ""},
      {"", "topk_masked_gates", B::kExact, 0, "", ""},
      {"", "router_logits_masked", B::kExact, 0, "", ""},
      {"", "router_probs_masked", B::kExact, 0, "", ""},
      {"", "updated_logits", B::kExact, 0, "", ""},
      {"", "logits_expert_padded", B::kExact, 0, "", ""},
      {"", "denom_safe", B::kExact, 0, "", ""},
      {"", "mask1_rand", B::kExact, 0, "", ""},
      {"", "importance_scores", B::kExact, 0, "", ""},
      {"", "threshold", B::kExact, 0, "", ""},
      {"mtf_moe2d", "output", B::kExact, 0, "", ""},
      // ---- Floats that are discrete functions of their reads: exact. -----------------------
      {"", "slot_importance", B::kDecision, 0, "", ""},
      {"flaxformer_tokens_choose,flaxformer_experts_choose", "padding_mask", B::kDecision, 0, "", ""},
      // ---- Sums and differences (coefficients of magnitude <= 1): N ulp + the reads' bounds.
      {"", "jitter", B::kArith, 2, "", ""},        // lo + (hi - lo) * u
      {"", "jitter_noise", B::kArith, 2, "", ""},  // the same
      {"", "gumbel_uniform", B::kArith, 2, "", ""},
      {"", "nonpaddings", B::kArith, 1, "", ""},  // 1 - paddings
      {"lingvo_top2", "importance", B::kArith, 1, "", ""},
      {"", "x_ff_before", B::kArith, 1, "", ""},  // a residual add
      {"", "x_moe", B::kArith, 1, "", ""},
      {"", "x_ff_after", B::kArith, 1, "", ""},
      {"", "dispatch_tensor_straight_through", B::kArith, 2, "", ""},  // dispatch + combine - combine
      {"", "gate_logits_masked", B::kArith, 1, "", ""},                // logits - 1e9 * padding
      {"", "logits_capped", B::kArith, 5, "", ""},  // cap * tanh(logits / cap): slope <= 1; /, tanh (3), *
      // ---- Elementwise products of the reads and constants (jitter, dropout, importance). ---
      {"", "input_jittered", B::kScaled, 1, "", ""},
      {"", "hidden_states_jittered", B::kScaled, 1, "", ""},
      {"", "x_jittered", B::kScaled, 1, "", ""},
      {"", "token_inputs_jittered", B::kScaled, 1, "", ""},
      {"", "gate_inputs", B::kScaled, 1, "", ""},
      {"", "expert_hidden_dropout", B::kScaled, 1, "", ""},
      {"", "expert_outputs_token_dropout", B::kScaled, 1, "", ""},
      {"", "outputs_nonpadding", B::kScaled, 1, "", ""},
      {"", "density_1_proxy_per_token", B::kScaled, 1, "", ""},
      {"", "outer_density_1_proxy_per_token", B::kScaled, 1, "", ""},
      {"", "inner_density_1_proxy_per_token", B::kScaled, 1, "", ""},
      {"", "gate_1_important", B::kScaled, 1, "", ""},
      {"", "outer_gate_1_important", B::kScaled, 1, "", ""},
      {"", "inner_gate_1_important", B::kScaled, 1, "", ""},
      {"", "expert_gate_important", B::kScaled, 1, "", ""},
      {"", "aggregated_group_probs_important", B::kScaled, 1, "", ""},
      {"", "z_loss_important", B::kScaled, 1, "", ""},
      {"", "density_1_proxy_important", B::kScaled, 1, "", ""},
      {"", "token_scores", B::kScaled, 1, "", ""},  // gates transposed, times nonpaddings
      // ---- Quotients, products and sums of positive reads: relative errors add. -------------
      // N, plus one rounding per operation joining the reads.
      {"", "gate_1_normalized", B::kRatio, 0, "", ""},
      {"", "gate_2_normalized", B::kRatio, 0, "", ""},
      {"", "gate_3_normalized", B::kRatio, 0, "", ""},
      {"", "gate_4_normalized", B::kRatio, 0, "", ""},
      {"", "outer_gate_1_normalized", B::kRatio, 0, "", ""},
      {"", "outer_gate_2_normalized", B::kRatio, 0, "", ""},
      {"", "inner_gate_1_normalized", B::kRatio, 0, "", ""},
      {"", "inner_gate_2_normalized", B::kRatio, 0, "", ""},
      {"", "gates1_s_normalized", B::kRatio, 0, "", ""},
      {"", "gates2_s_normalized", B::kRatio, 0, "", ""},
      {"", "gates_s_0_normalized", B::kRatio, 0, "", ""},
      {"", "gates_s_1_normalized", B::kRatio, 0, "", ""},
      {"", "gates_s_2_normalized", B::kRatio, 0, "", ""},
      {"", "gates_normalized", B::kRatio, 0, "", ""},
      {"", "gates_masked_normalized", B::kRatio, 0, "", ""},
      {"", "expert_weights_normalized", B::kRatio, 0, "", ""},
      {"", "top_1_max_probs", B::kRatio, 0, "", ""},
      {"", "top_2_max_probs", B::kRatio, 0, "", ""},
      {"mtf_expert_selection", "combine_tensor", B::kRatio, 0, "", ""},  // / num_experts_routed
      {"", "denom", B::kRatio, 1, "", ""},                               // gate_1 + gate_2 (+ 1e-9)
      {"", "denom_s", B::kRatio, 0, "", ""},
      {"", "outer_denom", B::kRatio, 1, "", ""},
      {"", "inner_denom", B::kRatio, 1, "", ""},
      {"", "gating_loss", B::kRatio, 0, "", ""},
      {"", "outer_gating_loss", B::kRatio, 0, "", ""},
      {"", "inner_gating_loss", B::kRatio, 0, "", ""},
      {"", "load_balancing_loss_microbatches", B::kRatio, 1, "", ""},
      {"mtf_switch,mtf_switch_max,mtf_ntlb,mtf_expert_selection", "aux_loss", B::kRatio, 1, "", ""},
      // Counts made float: the count is exact, then a division or a multiply by 1/n.
      {"", "density_1", B::kRatio, 2, "", ""},
      {"", "density_2", B::kRatio, 2, "", ""},
      {"", "outer_density_1", B::kRatio, 2, "", ""},
      {"", "outer_density_2", B::kRatio, 2, "", ""},
      {"", "inner_density_1", B::kRatio, 2, "", ""},
      {"", "inner_density_2", B::kRatio, 2, "", ""},
      {"", "ce", B::kRatio, 2, "", ""},
      {"", "tokens_per_group_and_expert", B::kRatio, 2, "", ""},
      {"", "expert_usage", B::kRatio, 2, "", ""},
      {"", "fraction_tokens_left_behind", B::kRatio, 2, "", ""},
      {"", "avg_expert_per_token", B::kRatio, 2, "", ""},
      {"", "over_capacity_1_ratio", B::kRatio, 2, "", ""},
      {"", "over_capacity_2_ratio", B::kRatio, 2, "", ""},
      {"", "over_capacity_1", B::kRatio, 2, "", ""},
      {"", "over_capacity_2", B::kRatio, 2, "", ""},
      {"", "over_capacity_3", B::kRatio, 2, "", ""},
      {"", "over_capacity_4", B::kRatio, 2, "", ""},
      {"", "summary_dispatch_0", B::kRatio, 2, "", ""},
      {"", "summary_dispatch_1", B::kRatio, 2, "", ""},
      {"", "summary_dispatch_2", B::kRatio, 2, "", ""},
      {"", "expert_fraction", B::kRatio, 2, "", ""},
      {"", "group_token", B::kRatio, 2, "", ""},
      // ---- Sums over dims of same-sign terms (means, norms, losses): gamma_n relative. --------
      {"", "me", B::kSum, 1, "", ""},
      {"", "density_1_proxy", B::kSum, 1, "", ""},
      {"", "density_2_proxy", B::kSum, 1, "", ""},
      {"", "outer_density_1_proxy", B::kSum, 1, "", ""},
      {"", "outer_density_2_proxy", B::kSum, 1, "", ""},
      {"", "inner_density_1_proxy", B::kSum, 1, "", ""},
      {"", "inner_density_2_proxy", B::kSum, 1, "", ""},
      {"", "router_prob_per_group_and_expert", B::kSum, 1, "", ""},
      {"", "aggregated_group_probs", B::kSum, 0, "", ""},
      {"", "true_group_size", B::kSum, 0, "", ""},
      {"", "density_denom", B::kSum, 0, "", ""},
      {"", "expert_gate_summary", B::kSum, 1, "", ""},
      {"", "batch_entropy", B::kSum, 1, "", ""},
      {"", "l_aux", B::kSum, 3, "", ""},  // mean(me * ce) * E (* E / k)
      {"", "loss_1", B::kSum, 3, "", ""},
      {"", "loss_2", B::kSum, 3, "", ""},
      {"", "aux_loss", B::kSum, 3, "", ""},
      {"", "load_balancing_loss", B::kSum, 3, "", ""},
      {"", "outer_loss_1", B::kSum, 3, "", ""},
      {"", "outer_loss_2", B::kSum, 3, "", ""},
      {"", "inner_loss_1", B::kSum, 3, "", ""},
      {"", "inner_loss_2", B::kSum, 3, "", ""},
      {"", "auxiliary_loss", B::kSum, 3, "", ""},
      {"", "balance_loss", B::kSum, 3, "", ""},
      {"", "fraction_routed", B::kSum, 2, "", ""},
      {"", "router_confidence", B::kSum, 2, "", ""},
      {"", "expert_weights_norm", B::kSum, 2, "", ""},  // |w|_p over K
      {"", "z_loss", B::kSum, 2, "", ""},
      {"", "router_z_loss", B::kSum, 1, "", ""},          // mean of router_z_loss_square
      {"stmoe_topn", "denom", B::kSum, 1, "", ""},        // sum over K (+ eps)
      {"deepspeed_topk", "denom_s", B::kSum, 0, "", ""},  // sum over E
      {"mtf_expert_selection", "load_balancing_loss", B::kSumOfSquares, 3, "", ""},
      {"flaxformer_tokens_choose,flaxformer_experts_choose", "router_z_loss", B::kSumOfSquares, 2, "", ""},
      {"", "entropy", B::kSumEntropy, 1, "", ""},
      {"", "normalized", B::kNormalize, 1, "", ""},
      {"", "outer_normalized", B::kNormalize, 1, "", ""},
      {"", "inner_normalized", B::kNormalize, 1, "", ""},
      // ---- Softmax and log-sum-exp over a dim. ----------------------------------------------
      // exp against a float32 libm (3), the division (1); the sum of n terms is added.
      {"", "raw_gates", B::kSoftmax, 4, "", ""},
      {"mtf_expert_selection", "raw_gates", B::kSoftmax, 4, "S", ""},  // over the tokens
      {"", "gates", B::kSoftmax, 4, "", ""},
      {"", "router_probs", B::kSoftmax, 4, "", ""},
      {"", "scores", B::kSoftmax, 4, "", ""},
      {"", "scores_wo_noise", B::kSoftmax, 4, "", ""},
      {"", "outer_raw_gates", B::kSoftmax, 4, "", ""},
      {"", "inner_raw_gates", B::kSoftmax, 4, "", ""},
      {"", "log_z", B::kLogSumExp, 3, "", ""},
      {"", "router_z_loss_logsumexp", B::kLogSumExp, 3, "", ""},
      {"", "log_z_squared", B::kSquare, 1, "", ""},
      {"", "z_loss_square", B::kSquare, 1, "", ""},
      {"", "router_z_loss_square", B::kSquare, 1, "", ""},
      {"", "gumbel", B::kGumbel, 3, "", ""},
      {"", "noise", B::kGumbel, 3, "", ""},
      // Noise added to logits, scaled by a constant (temperature, noise_mult, gate_noise / E).
      {"", "logits_w_noise", B::kAffine, 2, "", ""},
      {"", "logits_noised", B::kAffine, 2, "", ""},
      {"", "router_logits_noised", B::kAffine, 2, "", ""},
      {"", "sample_logits", B::kAffine, 2, "", ""},
      {"", "noised_logits", B::kAffine, 2, "", ""},
      {"", "maybe_noised_gate_logits", B::kAffine, 2, "", ""},
      // ---- stmoe_topn's RMSNorm and GEGLU. ---------------------------------------------------
      {"", "ff_before_prenorm", B::kRmsNorm, 5, "", ""},
      {"", "moe_prenorm", B::kRmsNorm, 5, "", ""},
      {"", "ff_after_prenorm", B::kRmsNorm, 5, "", ""},
      {"", "expert_geglu", B::kGeglu, 6, "", ""},
      {"", "ff_before_geglu", B::kGeglu, 6, "", ""},
      {"", "ff_after_geglu", B::kGeglu, 6, "", ""},
      // ---- Casts to bfloat16 (exact when the value did not change). -------------------------
      {"", "token_inputs_bfloat16", B::kCastBfloat16, 0, "", ""},
      {"", "router_weights_bfloat16", B::kCastBfloat16, 0, "", ""},
      {"", "inputs_bfloat16", B::kCastBfloat16, 0, "", ""},
      {"", "combine_array_dtype", B::kCastBfloat16, 0, "", ""},
      {"", "combine_tensor_fprop_dtype", B::kCastBfloat16, 0, "", ""},
      // ---- Matrix products: an einsum of the first two reads over the contracted dims. -------
      // Router: logits [G, S, E] = inputs [G, S, M] . router_weights [M, E], summed in double
      // by the golden (notation.md, "Router matmul"); a copy when the config supplies the logits.
      {"", "logits", B::kRouterProduct, 0, "M", ""},
      {"", "router_logits", B::kRouterProduct, 0, "M", ""},
      {"", "gate_logits", B::kRouterProduct, 0, "M", ""},
      {"", "outer_logits", B::kRouterProduct, 0, "M", ""},
      {"", "inner_logits", B::kRouterProduct, 0, "M", ""},
      // Dispatch: expert_inputs [E, G, C, M] = inputs [G, S, M] . dispatch [G, S, E, C].
      {"", "expert_inputs", B::kProduct, 0, "S", ""},
      {"", "expert_inputs_x", B::kProduct, 0, "S", ""},
      {"", "expert_inputs_y", B::kProduct, 0, "T", ""},
      // Experts: act(expert_inputs . wi (+ bias)) . wo (+ bias).
      {"", "expert_hidden", B::kProductActivation, 0, "M", ""},
      {kPerTokenExperts, "expert_hidden", B::kProductActivation, 0, "M", "E"},
      {"", "hidden_output", B::kProductActivation, 0, "M", ""},
      {"", "expert_outputs", B::kProduct, 0, "H", ""},
      {kPerTokenExperts, "expert_outputs", B::kProduct, 0, "H", "E"},
      {"", "expert_output", B::kProduct, 0, "H", ""},
      {"", "expert_hidden_x", B::kProduct, 0, "M", ""},
      {"", "expert_hidden_gate", B::kProduct, 0, "M", ""},
      {"", "ff_before_hidden_x", B::kProduct, 0, "M", ""},
      {"", "ff_before_hidden_gate", B::kProduct, 0, "M", ""},
      {"", "ff_after_hidden_x", B::kProduct, 0, "M", ""},
      {"", "ff_after_hidden_gate", B::kProduct, 0, "M", ""},
      {"", "ff_before_output", B::kProduct, 0, "F", ""},
      {"", "ff_after_output", B::kProduct, 0, "F", ""},
      // Combine: outputs [G, S, N] = expert_outputs [E, G, C, N] . combine_tensor [G, S, E, C].
      {"", "outputs", B::kProduct, 0, "EC", ""},
      {"", "output", B::kProduct, 0, "EC", ""},
      {"", "output_y", B::kProduct, 0, "YD", ""},
      {"mtf_moe2d", "outputs", B::kProduct, 0, "XC", ""},
      {"hf_switch_top1,megablocks_dropless", "outputs", B::kProduct, 0, "K", ""},
      // Combine and dispatch from the index form: each slot or token takes its gate times the
      // selected row.
      {"hf_nllb_top2,tutel_topk", "outputs", B::kWeightedSum, 0, "", ""},
      {"tutel_topk", "expert_inputs", B::kWeightedSum, 0, "", ""},
  };
  return table;
}

const std::vector<LossRule>& loss_rules() {
  // {variants, loss, reads, kind, N, unless}. A loss without a row is the scalar step of
  // the same name.
  static const std::vector<LossRule> table = {
      {"fairseq_top2", "moe_gate_loss", "l_aux", B::kRatio, 1, ""},
      {"flaxformer_experts_choose", "auxiliary_loss", "", B::kExact, 0, ""},
      {"lingvo_expert_choice,lingvo_hash,praxis_expert_choice", "aux_loss", "", B::kExact, 0, ""},
      {"hf_switch_top1,hf_nllb_top2", "encoder_aux_loss",
       "tokens_per_group_and_expert,router_prob_per_group_and_expert", B::kSum, 3, ""},
      {"hf_switch_top1,hf_nllb_top2", "aux_loss", "tokens_per_group_and_expert,router_prob_per_group_and_expert",
       B::kSum, 4, ""},
      {"hf_switch_top1", "encoder_z_loss", "log_z_squared", B::kSum, 1, ""},
      {"hf_switch_top1", "z_loss", "log_z_squared", B::kSum, 2, ""},
      {"megablocks_dropless", "load_balancing_loss", "scores", B::kSum, 4, ""},
      {"megablocks_dropless", "router_zloss", "log_z", B::kSumOfSquares, 3, ""},
      {"mtf_top2,mtf_switch,mtf_switch_max,mtf_ntlb,mtf_expert_selection", "loss", "gating_loss", B::kRatio, 1, ""},
      {"mtf_moe2d", "loss_outer", "outer_gating_loss", B::kRatio, 1, ""},
      {"mtf_moe2d", "loss_inner", "inner_gating_loss", B::kRatio, 1, ""},
      {"mtf_moe2d", "loss", "outer_gating_loss,inner_gating_loss", B::kRatio, 3, ""},
      {"praxis_top2,praxis_topk", "aux_moe_load_balance_loss", "aux_loss", B::kRatio, 0, ""},
      {"stmoe_topn", "balance_loss", "balance_loss", B::kExact, 0, ""},
      {"stmoe_topn", "router_z_loss", "router_z_loss", B::kExact, 0, ""},
      {"stmoe_topn", "total_aux_loss", "balance_loss,router_z_loss", B::kRatio, 3, ""},
      // Tutel's gshard loss: mean over E of me * ce, me the mean of `scores` over S. Its
      // load-importance loss (a coefficient of variation, which cancels) has no row.
      {"tutel_topk", "l_aux", "scores", B::kSum, 4, "threshold"},
  };
  return table;
}

bool lists(const char* variants, const std::string& variant) {
  std::stringstream list(variants);
  std::string item;
  while (std::getline(list, item, ',')) {
    if (item == variant) return true;
  }
  return false;
}

}  // namespace

const char* bound_kind_name(BoundKind kind) {
  switch (kind) {
    case B::kExact:
      return "exact";
    case B::kDecision:
      return "decision";
    case B::kArith:
      return "sum";
    case B::kScaled:
      return "elementwise product";
    case B::kRatio:
      return "ratio";
    case B::kSum:
      return "sum over dims";
    case B::kSumOfSquares:
      return "sum of squares";
    case B::kSumEntropy:
      return "entropy";
    case B::kNormalize:
      return "normalisation";
    case B::kSoftmax:
      return "softmax";
    case B::kLogSumExp:
      return "logsumexp";
    case B::kSquare:
      return "square";
    case B::kGumbel:
      return "gumbel";
    case B::kAffine:
      return "noise added";
    case B::kRmsNorm:
      return "rmsnorm";
    case B::kGeglu:
      return "geglu";
    case B::kCastBfloat16:
      return "bfloat16 cast";
    case B::kRouterProduct:
      return "router product";
    case B::kProduct:
      return "matrix product";
    case B::kProductActivation:
      return "matrix product then activation";
    case B::kWeightedSum:
      return "weighted sum";
  }
  return "unknown";
}

const std::vector<StepRule>& float32_step_rules() { return rules(); }
const std::vector<LossRule>& float32_loss_rules() { return loss_rules(); }

const StepRule* find_step_rule(const std::string& variant, const std::string& step) {
  const StepRule* fallback = nullptr;
  for (const StepRule& rule : rules()) {
    if (step != rule.step) continue;
    if (std::string(rule.variants).empty()) {
      if (fallback == nullptr) fallback = &rule;
    } else if (lists(rule.variants, variant)) {
      return &rule;
    }
  }
  return fallback;
}

const LossRule* find_loss_rule(const std::string& variant, const std::string& loss, const Trace& golden) {
  for (const LossRule& rule : loss_rules()) {
    if (loss != rule.loss || !lists(rule.variants, variant)) continue;
    if (std::string(rule.unless_step).empty() || golden.find_step(rule.unless_step) == nullptr) return &rule;
  }
  return nullptr;
}

bool is_product_step(const std::string& step) {
  for (const StepRule& rule : rules()) {
    if (step == rule.step &&
        (rule.kind == B::kRouterProduct || rule.kind == B::kProduct || rule.kind == B::kProductActivation)) {
      return true;
    }
  }
  return false;
}

}  // namespace moeref
