// One-line formulas for the steps of every variant, for `moeref explain`.
//
// The variants record what a step read (the trace's `reads`), not what it
// computed: the formulas live here, one table, so that no variant file and no
// trace changes for the sake of teaching. A key is a step name, optionally with
// the implementation ("lingvo:"; spelled as implementation_of_variant returns it,
// e.g. "DeepSpeed:", "Hugging Face:", "Tutel:") or the variant id
// ("mtf_switch_max:") in front when one name means different things; "{k}" stands
// for a rank number in the name (position_in_expert_{k}). The formulas use the
// source's names and the dims' letters; the exact statements are quoted above
// each step in src/layers/ and src/variants/, and on the spec pages.

#include "moeref/teach/step_notes.hpp"

#include <cctype>
#include <map>
#include <string>

#include "moeref/teach/hparam_topics.hpp"

namespace moeref {

namespace {

const std::map<std::string, std::string>& formulas() {
  static const std::map<std::string, std::string> table = {
      // ---- Inputs and routers ----------------------------------------------------------------
      {"inputs", "inputs = x regrouped from [B, L, M] to [G, S, M] (row-major: the values do not move)"},
      {"importance", "importance = nonpadding regrouped to [G, S]: 1 for a real token, 0 for padding"},
      {"logits", "logits = inputs · router_weights, a dense layer without bias (or the given logits)"},
      {"raw_gates", "raw_gates = softmax(logits) over E: how much the router likes each expert for each token"},
      {"grouped_inputs", "grouped_inputs = x (padded by _maybe_pad) reshaped to [G, S, M]"},
      {"router_logits", "router_logits = grouped_inputs · router_weights (+ bias): RouterWeights, in its dtype"},
      {"router_probs", "router_probs = softmax(router_logits) over E"},
      {"gate_logits", "gate_logits = x · to_gates (Linear(dim, E), no bias)"},
      {"st-moe-pytorch:raw_gates", "raw_gates = softmax(maybe_noised_gate_logits) over E"},
      {"gate_inputs",
       "gate_inputs = inputs, perturbed by the router policy (× jitter_noise, or dropout) when training"},
      {"jitter_noise", "jitter_noise = U[1 − ε, 1 + ε) from the draw inputs.input_jitter_uniform (ε = switch_jitter)"},
      {"mtf:logits", "gate_logits = gate_inputs · router_weights (mtf.layers.dense, no bias)"},
      {"mtf_top2:logits",
       "logits = inputs · router_weights (mtf.layers.dense, no bias), named raw_gates in the source"},
      {"mtf_moe2d:logits", "logits = inputs · router_weights (mtf.layers.dense, no bias)"},

      // ---- Top-2 (mtf _top_2_gating; lingvo and praxis Top2GatingOnLogits) ------------------
      {"index_1", "index_1 = argmax over E of raw_gates: the first choice (a tie goes to the lowest expert index)"},
      {"gate_1", "gate_1 = the first choice's probability, raw_gates[index_1]"},
      {"mask_1", "mask_1 = one_hot(index_1, E)"},
      {"mask_1_important", "mask_1 *= (importance == 1): a padding token loses its first choice"},
      {"gate_1_important", "gate_1 *= (importance == 1)"},
      {"density_1_proxy_per_token", "density_1_proxy = raw_gates * (importance == 1)"},
      {"gates_without_top_1", "gates_without_top_1 = raw_gates * (1 − mask_1): the first choice removed"},
      {"index_2", "index_2 = argmax over E of gates_without_top_1: the second choice (lowest index on a tie)"},
      {"gate_2", "gate_2 = the second choice's probability, gates_without_top_1[index_2]"},
      {"mask_2", "mask_2 = one_hot(index_2, E)"},
      {"mask_2_important", "mask_2 *= (importance > 0)"},
      {"denom", "denom = gate_1 + gate_2 + 1e-9"},
      {"gate_1_normalized", "gate_1 /= denom: the two gates now sum to 1 (mtf multiplies by 1 / denom)"},
      {"gate_2_normalized", "gate_2 /= denom"},
      {"density_1", "density_1 = mean over S of mask_1: each expert's share of first choices, before capacity"},
      {"density_1_proxy", "density_1_proxy = mean over S of the router probabilities: each expert's mean gate"},
      {"loss_1", "loss = mean(density_1_proxy * density_1) * E²: lowest when the experts share the tokens evenly"},
      {"density_2", "density_2 = mean over S of mask_2 (second-place loss)"},
      {"normalized", "normalized = gates_without_top_1 / (sum over E + 1e-9)"},
      {"density_2_proxy", "density_2_proxy = mean over S of normalized"},
      {"loss_2", "loss_2 = mean(density_2_proxy * density_2) * E²; loss += 0.5 * loss_2"},
      {"gating_loss", "gating_loss = the gating function's loss (÷ num_microbatches when > 1)"},
      {"second_policy_keep",
       "keep = the second-expert policy: all → 1; none → 0; threshold → gate_2 > t; "
       "random → U < gate_2 / max(t, 1e-9) with U the draw inputs.second_policy_uniform"},
      {"mask_2_policy", "mask_2 *= second_policy_keep"},
      {"position_in_expert_1",
       "position_in_expert_1 = cumsum over S of mask_1 (exclusive) * mask_1: the earlier tokens whose first "
       "choice is the same expert"},
      {"mask_1_capacity", "mask_1 *= (position_in_expert_1 < C): a first choice beyond the capacity is dropped"},
      {"mask_1_count", "mask_1_count = sum over S of mask_1: the first choices each expert kept"},
      {"mask_1_flat", "mask_1_flat = sum over E of mask_1: 1 if the token kept its first choice"},
      {"position_in_expert_1_flat", "position_in_expert_1 = sum over E: the token's slot at its first expert"},
      {"gate_1_capacity", "gate_1 *= mask_1_flat: no weight for a dropped first choice (no renormalisation)"},
      {"position_in_expert_2",
       "position_in_expert_2 = (cumsum over S of mask_2 (exclusive) + mask_1_count) * mask_2: second choices "
       "queue behind every kept first choice"},
      {"mask_2_capacity", "mask_2 *= (position_in_expert_2 < C)"},
      {"mask_2_flat", "mask_2_flat = sum over E of mask_2: 1 if the token kept its second choice"},
      {"gate_2_capacity", "gate_2 *= mask_2_flat"},
      {"position_in_expert_2_flat", "position_in_expert_2 = sum over E: the token's slot at its second expert"},
      {"combine_tensor",
       "combine = Σ over ranks of gate · one_hot(expert, E) · one_hot(position, C): a position ≥ C gives no slot"},
      {"dispatch_tensor", "dispatch = (combine ≠ 0): which slot of which expert each token is copied into"},
      {"routing_expert", "routing_expert[k] = the expert of the token's rank-k choice (the index form)"},
      {"routing_slot", "routing_slot[k] = its slot, or −1 when the choice got none"},
      {"routing_weight", "routing_weight[k] = its combine weight, 0 without a slot"},

      // lingvo and praxis (GShard)
      {"top1_expert_per_example", "top1_expert_per_example = argmax over E of logits (a summary)"},
      {"lingvo:importance", "importance = the given importance, or ones (and 1 − paddings when there are paddings)"},
      {"lingvo:gate_1", "gate_1 = sum over E of raw_gates * mask_1"},
      {"praxis:gate_1", "gate_1 = sum over E of raw_gates * mask_1"},
      {"lingvo:gate_2", "gate_2 = sum over E of raw_gates * mask_2"},
      {"praxis:gate_2", "gate_2 = sum over E of raw_gates * mask_2"},
      {"lingvo:mask_1_important", "mask_1 *= (importance == 1)"},
      {"mask_1_nonpadded", "mask_1 *= 1 − paddings"},
      {"mask_1_nonpadding", "mask_1 *= 1 − paddings"},
      {"mask_2_nonpadding", "mask_2 *= 1 − paddings"},
      {"nonpaddings", "nonpaddings = 1 − paddings (ones without paddings)"},
      {"paddings", "paddings regrouped to [G, S]: 1 for padding"},
      {"density_denom", "density_denom = mean over S of (1 − paddings) + 1e-6 (legacy_mtf_behavior false)"},
      {"aux_loss", "aux_loss = mean(density_1_proxy * density_1) * E² (÷ density_denom² when not legacy)"},
      {"over_capacity_1", "over_capacity_1 = the number of first choices with position ≥ C (a summary)"},
      {"over_capacity_1_ratio", "over_capacity_1 / the number of first choices (a summary)"},
      {"over_capacity_2", "over_capacity_2 = the number of second choices with position ≥ C (a summary)"},
      {"over_capacity_2_ratio", "over_capacity_2 / the number of second choices (a summary)"},
      {"sampled_2", "sampled_2 = U < gate_2 / max(second_expert_threshold, 1e-9), U the draw (random policy)"},
      {"gate_2_sampled", "gate_2 *= sampled_2"},
      {"mask_2_sampled", "mask_2 *= sampled_2"},
      {"noise", "noise = −log(−log(U)), Gumbel noise from a uniform draw"},
      {"updated_logits", "logits with the first choice pushed to −0.7 · float max (the sampling policy)"},
      {"noised_logits", "noised_logits = updated_logits + noise: its argmax samples the second expert"},
      {"denom_safe", "denom = where(denom > 0, denom, 1) (renormalisation after capacity)"},
      {"logits_expert_padded",
       "logits[..., expert_padding_idx] = −0.7 · float32 max: padding experts are never chosen"},
      {"logits_capped", "logits = cap · tanh(logits / cap) (gating_logit_cap > 0)"},
      {"dispatch_tensor_regrouped", "dispatch regrouped back to [G, S, E, C] (local_dispatch false)"},
      {"combine_tensor_regrouped", "combine regrouped back to [G, S, E, C] (local_dispatch false)"},
      {"dispatch_count_tensor", "the number of experts each token is dispatched to"},
      {"paddings_count", "the number of padding tokens"},
      {"dispatch_{k}", "dispatch_{k} = the number of tokens dispatched to exactly {k} experts (a summary)"},
      {"summary_dispatch_{k}", "dispatch_{k} / (dispatch_0 + dispatch_1 + dispatch_2) (a summary)"},
      {"combine_tensor_fprop_dtype", "combine converted to fprop_dtype"},
      {"inputs_bfloat16", "inputs rounded to bfloat16 (fprop_dtype bfloat16)"},
      {"router_weights_bfloat16", "router weights rounded to bfloat16"},
      {"outputs_nonpadding", "outputs *= 1 − paddings"},

      // lingvo hash
      {"lingvo_hash:index_1", "index_1 = the given expert_id of each token (the hash)"},
      {"b", "b = one_hot(position_in_expert_1, C): the slot of each token"},

      // expert choice (lingvo TokenShufflingOnlogitsV2, praxis expert_choice_gating_on_logits_v2)
      {"gates", "gates = softmax(logits) over E"},
      {"token_scores", "token_scores = transpose(gates * nonpaddings): [G, E, S], every expert scores every token"},
      {"mask_ges", "mask_ges = which tokens each expert selects: its C highest token_scores (top_k over S)"},
      {"token_indices", "token_indices = the C tokens each expert selected"},
      {"mask", "mask = transpose(mask_ges) [G, S, E]: which experts selected each token"},
      {"mask_nonpadding", "mask *= nonpaddings"},
      {"expert_indices", "expert_indices = range(E) * mask: the experts that took each token"},
      {"avg_expert_per_token", "the mean number of experts per token (a summary)"},
      {"lingvo:position_in_expert_1",
       "position_in_expert_1 = cumsum over S of mask_1 (exclusive): the earlier first choices of the same expert "
       "(not × mask_1)"},
      {"praxis:position_in_expert_1",
       "position_in_expert_1 = cumsum over S of mask_1 (exclusive): the earlier first choices of the same expert "
       "(not × mask_1)"},
      {"lingvo:position_in_expert_2",
       "position_in_expert_2 = cumsum over S of mask_2 (exclusive) + mask_1_count: second choices queue behind "
       "every kept first choice (not × mask_2)"},
      {"praxis:position_in_expert_2",
       "position_in_expert_2 = cumsum over S of mask_2 (exclusive) + mask_1_count: second choices queue behind "
       "every kept first choice (not × mask_2)"},
      {"praxis_top2:over_capacity_1",
       "over_capacity_1 = (first choices with mask_1 · position_in_expert_1 ≥ C) / max(1, first choices): a "
       "ratio (_create_over_capacity_ratio_summary)"},
      {"praxis_top2:over_capacity_2",
       "over_capacity_2 = (second choices with mask_2 · position_in_expert_2 ≥ C) / max(1, second choices): a "
       "ratio (_create_over_capacity_ratio_summary)"},
      {"lingvo:position_in_expert", "position_in_expert = cumsum over S of mask (exclusive): slots in token order"},
      {"praxis:position_in_expert", "position_in_expert = cumsum over S of mask (exclusive): slots in token order"},
      {"position_in_expert_capacity", "position_in_expert *= (position_in_expert < C)"},
      {"position_in_expert_masked", "position_in_expert *= mask"},
      {"gate_i", "gate_i = the gate of each token at each expert that took it (gates * mask)"},

      // ---- mtf switch family (_switch_gating, _switch_max_gating, _ntlb_gating) -------------
      {"expert_index", "expert_index = argmax over E of raw_gates: the token's expert (lowest index on a tie)"},
      {"expert_gate", "expert_gate = raw_gates at expert_index: the raw probability, never renormalised"},
      {"expert_gate_summary", "mean(expert_gate) (a summary)"},
      {"expert_mask", "expert_mask = one_hot(expert_index, E)"},
      {"expert_mask_important", "expert_mask *= (importance == 1)"},
      {"expert_gate_important", "expert_gate *= (importance == 1)"},
      {"density_1_proxy_important", "density_1_proxy *= (importance == 1), with the union-broadcast of mtf"},
      {"load_balancing_loss", "loss = mean(density_1_proxy * density_1) * E²"},
      {"load_balancing_loss_microbatches", "loss /= num_microbatches"},
      {"entropy", "entropy = sum over E of −raw_gates · log(raw_gates + 1e-9) (a summary)"},
      {"batch_entropy", "mean(entropy) (a summary)"},
      {"mask_count_experts", "mask_count_experts = the tokens each expert received (a summary)"},
      {"expert_fraction", "expert_fraction = mask_count_experts / total routed (a summary)"},
      {"position_in_expert", "position_in_expert = cumsum over S of expert_mask (exclusive) * expert_mask"},
      {"expert_mask_capacity", "expert_mask *= (position_in_expert < C): a token beyond the capacity is dropped"},
      {"expert_mask_flat", "expert_mask_flat = sum over E of expert_mask: 1 if the token kept its expert"},
      {"fraction_routed", "fraction_routed = routed tokens / sum(importance) (a summary)"},
      {"expert_gate_capacity", "expert_gate *= expert_mask_flat"},
      {"position_in_expert_flat", "position_in_expert = sum over E: the token's slot"},
      {"gumbel_uniform", "U from the draw inputs.gumbel_uniform (sample policy)"},
      {"gumbel", "gumbel = −log(−log(U))"},
      {"sample_logits", "logits + switch_temperature · gumbel: its argmax samples the expert"},
      {"log_z", "log_z = logsumexp over E of the router logits"},
      {"z_loss_square", "log_z²"},
      {"z_loss_important", "log_z² * (importance == 1)"},
      {"z_loss_denom", "the number of tokens with importance 1, times num_microbatches"},
      {"z_loss", "z_loss = z_loss coefficient · sum(log_z²) / z_loss_denom, added to the loss"},
      {"mtf_switch_max:expert_masked_probs",
       "expert_masked_probs = raw_gates * expert_mask: each expert sees the tokens that chose it"},
      {"mtf_switch_max:expert_gate_indices",
       "expert_gate_indices = top_k over S, C per expert: each expert keeps its C most probable tokens"},
      {"mtf_switch_max:expert_gate_probs", "expert_gate_probs = their probabilities, in descending order (slot order)"},
      {"mtf_switch_max:combine_tensor",
       "combine = one_hot(expert_gate_indices, S) * expert_gate_probs: slots sorted by probability"},
      {"mtf_switch_max:dispatch_tensor", "dispatch = (combine ≠ 0)"},
      {"mtf_expert_selection:gate_logits_masked", "gate_logits += (importance == 0) · −1e9: padding is pushed out"},
      {"mtf_expert_selection:raw_gates",
       "raw_gates = softmax(gate_logits) over S: per expert, a distribution over the tokens"},
      {"mtf_expert_selection:expert_gate_indices",
       "expert_gate_indices = top_k over S of raw_gates, C per expert: the tokens each expert selects"},
      {"mtf_expert_selection:expert_gate_probs", "expert_gate_probs = their probabilities"},
      {"mtf_expert_selection:dispatch_tensor",
       "dispatch = one_hot(expert_gate_indices, S): from the selection, not from combine"},
      {"combine_tensor_unnormalized", "combine = dispatch * expert_gate_probs"},
      {"num_experts_routed", "num_experts_routed = the number of experts that took each token"},
      {"mtf_expert_selection:combine_tensor", "combine /= max(num_experts_routed, 1)"},
      {"aggregated_group_probs", "aggregated_group_probs = mean over E of raw_gates"},
      {"aggregated_group_probs_important", "aggregated_group_probs *= (importance == 1)"},
      {"true_group_size", "true_group_size = sum over S of importance"},
      {"mtf_expert_selection:load_balancing_loss", "loss = mean(aggregated_group_probs² * true_group_size) * S"},
      {"group_token", "the number of experts each token was sent to (summaries)"},
      {"mtf_ntlb:expert_index",
       "expert_index = top_k over E of raw_gates, K ranks (iterative top_1: lowest index first)"},
      {"mtf_ntlb:expert_gate", "expert_gate = raw_gates at each rank's expert"},
      {"mtf_ntlb:expert_mask", "expert_mask = one_hot(expert_index, E) for every rank"},
      {"top_{k}_mask", "top_{k}_mask = the rank-{k} choice, for tokens not yet routed (× tokens_left_to_route)"},
      {"cumulative_tokens_in_expert_{k}",
       "cum_tokens + cumsum over S of top_{k}_mask (inclusive): the place each choice would take"},
      {"output_{k}_tokens",
       "output_{k}_tokens = top_{k}_mask * (cumulative_tokens_in_expert_{k} ≤ C): the choices that fit"},
      {"cum_tokens_{k}", "cum_tokens += sum over S of output_{k}_tokens: each expert's slots used so far"},
      {"output_{k}_tokens_flat", "sum over E of output_{k}_tokens: 1 if the token was placed at rank {k}"},
      {"tokens_left_to_route_{k}", "tokens_left_to_route −= output_{k}_tokens_flat: who still needs an expert"},

      // ---- mtf MoE2D --------------------------------------------------------------------------
      {"expert_inputs_x", "expert_inputs_x = einsum(inputs, outer dispatch): each outer expert's C slots"},
      {"slot_importance_sum", "the weight of the token each outer slot holds (0 when empty)"},
      {"slot_importance",
       "importance = 1 for a first choice (weight > 0.5), 0.5 for a second choice, 0 for an empty slot"},
      {"inputs_y", "inputs_y = the outer slots regrouped as the inner level's tokens"},
      {"importance_y", "importance of the inner tokens (slot_importance regrouped)"},

      // ---- st-moe-pytorch TopNGating --------------------------------------------------------------
      {"maybe_noised_gate_logits", "gate_logits + noise · noise_mult (noise_gates)"},
      {"st-moe-pytorch:noise", "noise = −log(−log(U)), Gumbel noise from the draw"},
      {"gate_indices", "gate_indices, gates = topk(raw_gates, top_n): rank k's expert (ties: lowest index first)"},
      {"st-moe-pytorch:gates", "gates = the top_n probabilities, by rank"},
      {"st-moe-pytorch:mask", "mask = one_hot(gate_indices, E), by rank"},
      {"st-moe-pytorch:denom", "denom = max(sum over ranks of gates, eps)"},
      {"gates_normalized", "gates /= denom: renormalised over all top_n, before any drop"},
      {"should_route",
       "should_route = U < gates / max(threshold, eps) per rank, U the draw inputs.route_uniform; rank 0 always"},
      {"mask_routed", "mask *= should_route"},
      {"mask_cumsum", "mask_cumsum = cumsum over S of mask (exclusive), per rank"},
      {"st-moe-pytorch:position_in_expert_{k}",
       "position_in_expert = (mask_cumsum[{k}] + prev_expert_count) * mask[{k}]: rank {k} queues behind the ranks "
       "before it"},
      {"mask_{k}_capacity", "mask[{k}] *= (position_in_expert < C): a rank-{k} choice beyond the capacity is dropped"},
      {"prev_expert_count_{k}", "prev_expert_count += sum over S of mask[{k}]: slots taken up to rank {k}"},
      {"st-moe-pytorch:position_in_expert_{k}_flat", "position_in_expert = sum over E: the token's rank-{k} slot"},
      {"positions", "positions = the slots of every rank, stacked"},
      {"mask_flat", "mask_flat = sum over E of mask: 1 where a rank kept its slot"},
      {"gates_capacity", "gates *= mask_flat (no renormalisation after the drops)"},
      {"dispatch_tensor_straight_through", "dispatch = (dispatch + combine) − combine in float32 (straight-through)"},
      {"st-moe-pytorch:density_1", "density_1 = mean over S of mask[0] (after its capacity drops)"},
      {"st-moe-pytorch:density_1_proxy", "density_1_proxy = mean over S of raw_gates"},
      {"balance_loss", "balance_loss = mean(density_1_proxy * density_1) * E² (training only)"},
      {"router_z_loss_logsumexp", "logsumexp over E of gate_logits (un-noised)"},
      {"router_z_loss_square", "its square"},
      {"st-moe-pytorch:router_z_loss", "router_z_loss = mean of the squares (training only)"},

      // ---- flaxformer routers ----------------------------------------------------------------
      {"jitter", "jitter = U(1 − jitter_noise, 1 + jitter_noise) from the draw inputs.jitter_uniform"},
      {"token_inputs_jittered", "token_inputs = grouped_inputs * jitter (the router's input only)"},
      {"token_inputs_bfloat16", "token_inputs rounded to bfloat16 (RouterWeights.dtype)"},
      {"padding_mask", "padding_mask = (sum over M of |x| > 0): 0 for an all-zero (padding) token"},
      {"router_logits_masked", "router_logits *= padding_mask (after the softmax: only the z-loss sees it)"},
      {"router_probs_masked", "router_probs *= padding_mask"},
      {"flaxformer:expert_index",
       "expert_gate, expert_index = top_k(router_probs, k): ranked choices (lowest index on a tie)"},
      {"flaxformer:expert_gate", "expert_gate = the top-k probabilities, never renormalised"},
      {"expert_gate_masked", "expert_gate *= padding_mask"},
      {"expert_index_masked", "expert_index of padding tokens made negative: they vanish in one_hot"},
      {"tokens_per_group_and_expert", "the share of tokens choosing each expert at any rank, before capacity"},
      {"router_prob_per_group_and_expert", "the mean router probability per expert"},
      {"auxiliary_loss", "auxiliary_loss = mean(tokens_per_group_and_expert * router_prob_per_group_and_expert) * E²"},
      {"permutation",
       "permutation = argsort(−expert_gate[:, :, 0]) (stable): batch-prioritized routing, most confident first"},
      {"token_priority",
       "token_priority = cumsum over the k-major, token-ordered choices of one_hot(expert) − 1: the slot, or −1"},
      {"dispatch_mask", "dispatch_mask = one_hot(token_priority, C): a priority ≥ C gives no slot"},
      {"combine_array", "combine_array = router_probs * dispatch_mask, cast to Router.dtype"},
      {"combine_array_dtype", "combine_array converted to Router.dtype"},
      {"flaxformer:log_z", "log_z = logsumexp over E of router_logits"},
      {"router_z_loss", "router_z_loss = sum of log_z² / (G · S)"},
      {"num_tokens_dispatched_somewhere", "the tokens dispatched to at least one expert"},
      {"num_tokens_dispatched", "the (token, expert) pairs dispatched"},
      {"fraction_tokens_left_behind", "1 − num_tokens_dispatched_somewhere / num_tokens"},
      {"router_confidence", "sum(combine) / num_tokens_dispatched"},
      {"expert_usage", "num_tokens_dispatched / (E · C · G); 1 for experts-choose routing"},
      {"router_probs_t", "router_probs transposed to [G, E, S]: each expert's view of the tokens"},
      {"flaxformer_experts_choose:expert_index",
       "expert_gate, expert_index = top_k(router_probs_t, C): each expert's C best tokens"},
      {"flaxformer_experts_choose:expert_gate", "expert_gate = their probabilities"},
      {"flaxformer_experts_choose:dispatch_mask", "dispatch_mask = one_hot(expert_index, S), as [G, S, E, C]"},
      {"flaxformer_experts_choose:combine_array", "combine_array = expert_gate * dispatch_mask"},
      {"flaxformer:expert_indices", "expert_indices = top_k(router_probs, k): the scatter router's ranked choices"},
      {"combine_weights", "combine_weights = the top-k probabilities"},
      {"token_ordering", "token_ordering = argsort(−combine_weights[:, :, 0]) (batch-prioritized routing)"},
      {"combine_weights_capacity", "combine_weights *= (token_priority < C)"},
      {"successfully_routed", "successfully_routed = (token_priority < C)"},
      {"result", "result = outputs reshaped back to [B, L, N] (padding removed)"},

      // ---- PyTorch routers: shared names (DeepSpeed, fairseq, Hugging Face NLLB, Tutel) -------------
      // One-letter suffixes follow the source: 1 and 2 are the ranks, _s a per-token value [G, S].
      {"indices1_s", "indices1_s = argmax over E of gates: the first choice (lowest index on a tie)"},
      {"mask1", "mask1 = one_hot(indices1_s, E)"},
      {"logits_except1",
       "logits_except1 = logits (Gumbel-noised when the second expert is sampled) masked_fill(mask1, −inf): the first "
       "choice removed"},
      {"indices2_s", "indices2_s = argmax over E of logits_except1: the second choice (lowest index on a tie)"},
      {"mask2", "mask2 = one_hot(indices2_s, E)"},
      {"locations1",
       "locations1 = cumsum over S of mask1 − 1: each first choice's place in its expert's queue, in token order"},
      {"locations2",
       "locations2 = cumsum over S of mask2 − 1 + sum over S of mask1: second choices queue behind every first "
       "choice, kept or not"},
      {"importance_scores",
       "importance_scores = −max over E of the probabilities (batch_prioritized_routing): the locations are counted "
       "in this order, most confident token first"},
      {"me", "me = mean over S of gates: each expert's mean probability"},
      {"ce", "ce = mean over S of mask1: each expert's share of first choices, before capacity"},
      {"l_aux", "l_aux = mean over E of me * ce, × E²"},
      {"mask{k}_capacity", "mask{k} *= (locations{k} < C): a rank-{k} choice beyond the capacity is dropped"},
      {"locations{k}_s",
       "locations{k}_s = sum over E of locations{k} * mask{k} (after capacity): the slot of the kept rank-{k} "
       "choice, 0 when dropped"},
      {"mask{k}_flat",
       "mask{k}_flat = sum over E of mask{k} (after capacity): 1 if the token kept its rank-{k} choice"},
      {"denom_s", "denom_s = clamp(gates1_s + gates2_s, min = float32 eps)"},
      {"gates{k}_s_normalized", "gates{k}_s /= denom_s: the two gates now sum to 1 (0 stays 0)"},

      // ---- DeepSpeed (sharded_moe.py: top1gating, top2gating, topkgating) --------------------------
      {"DeepSpeed:jitter",
       "jitter = Uniform(1 − 1e-2, 1 + 1e-2).rsample from the draw inputs.jitter_uniform (noisy_gate_policy Jitter)"},
      {"DeepSpeed:input_jittered",
       "input_fp32 = multiplicative_jitter(input) = input * jitter: the router's input only, the experts get it clean"},
      {"DeepSpeed:logits", "logits = linear(input_fp32, wg.weight): inputs · router_weights, no bias"},
      {"DeepSpeed:logits_w_noise", "logits_w_noise = logits + gumbel (RSample): only the argmax sees the noise"},
      {"deepspeed_top1:gates_masked", "gates = gates * mask1 (after capacity): the kept token's probability, else 0"},
      {"deepspeed_topk:gates_masked",
       "gates_masked = gates * mask (after capacity): the kept choices' probabilities, else 0"},
      {"DeepSpeed:dispatch_mask",
       "dispatch_mask = combine_weights.bool(): which slot of which expert each token fills"},
      {"deepspeed_top1:indices1_s",
       "indices1_s = argmax over E of gates (of logits_w_noise under RSample): the token's expert (lowest index on "
       "a tie)"},
      {"deepspeed_top1:mask1_used", "mask1 = einsum('s,se->se', used_token, mask1): an unused token loses its choice"},
      {"deepspeed_top1:exp_counts",
       "exp_counts = sum over S of mask1: the tokens that chose each expert, before capacity"},
      {"deepspeed_top1:l_aux", "l_aux = sum over E of me * ce, × E"},
      {"deepspeed_top1:mask1_rand",
       "mask1_rand = mask1 * U, U the draw inputs.rts_uniform (use_rts; mask1 itself without it)"},
      {"deepspeed_top1:top_idx",
       "top_idx = topk over S of mask1_rand, C per expert, scattered to 0/1: the tokens each expert keeps (with "
       "use_rts a random C of those that chose it, not the first C)"},
      {"deepspeed_top1:mask1_capacity", "mask1 *= top_idx: a token its expert did not keep is dropped"},
      {"deepspeed_top1:locations1",
       "locations1 = cumsum over S of mask1 − 1, on the kept mask1: the kept tokens' slots, in token order"},
      {"deepspeed_top1:gates1_s",
       "gates1_s = sum over E of gates_masked: the kept token's gate, 0 when dropped (no renormalisation)"},
      {"deepspeed_top1:combine_weights",
       "combine_weights = einsum('se,sc->sec', gates_masked, one_hot(locations1_s, C))"},
      {"deepspeed_top2:logits_noised",
       "logits += gumbel (top2_2nd_expert_sampling, in training and in evaluation): only the second choice sees it"},
      {"deepspeed_top2:exp_counts",
       "exp_counts = sum over S of mask1 + mask2: the choices each expert got, before capacity"},
      {"deepspeed_top2:gates{k}_s",
       "gates{k}_s = einsum('se,se->s', gates, mask{k}) (after capacity): the rank-{k} probability, 0 when dropped"},
      {"deepspeed_top2:combine_weights",
       "combine_weights = gates1_s · mask1 ⊗ one_hot(locations1_s, C) + the same for rank 2"},
      {"deepspeed_topk:mask",
       "mask = scatter of topk(logits, k) over E: each token's k largest logits (lowest index on a tie)"},
      {"deepspeed_topk:top_idx", "top_gate, top_idx = topk(logits, k) over E: [G, S, K], the larger logit first"},
      {"deepspeed_topk:topk_masked_gates",
       "topk_masked_gates = zeros.scatter(top_idx, top_gate): the token's logit (not its probability) at its k "
       "experts, 0 elsewhere"},
      {"deepspeed_topk:exp_counts", "exp_counts = sum over S of mask: the choices each expert got, before capacity"},
      {"deepspeed_topk:ce", "ce = mean over S of mask: each expert's share of all k choices, before capacity"},
      {"deepspeed_topk:l_aux", "l_aux = mean over E of me * ce, × E² / k"},
      {"deepspeed_topk:capacity_mask",
       "capacity_mask = scatter of topk(topk_masked_gates, C) over S: each expert's C largest entries (drop_policy "
       "probs; a chosen negative logit loses to an unchosen 0)"},
      {"deepspeed_topk:mask_capacity",
       "mask = logical_and(mask, capacity_mask) (drop_policy position: mask *= locations < C)"},
      {"deepspeed_topk:locations",
       "locations = cumsum over S of mask − 1 (after the probs drops; before them under drop_policy position): every "
       "rank's choices queue together, in token order"},
      {"deepspeed_topk:denom_s", "denom_s = clamp(sum over E of gates_masked, min = float32 eps)"},
      {"deepspeed_topk:gates_masked_normalized", "gates_masked /= denom_s: the kept choices' probabilities sum to 1"},
      {"deepspeed_topk:combine_weights",
       "combine_weights = einsum('se,sec->sec', gates_masked, one_hot(locations * mask, C))"},

      // ---- fairseq (moe/top2gate.py: top2gating) --------------------------------------------------
      {"fairseq:logits_w_noise", "logits_w_noise = logits + gumbel (second_expert_policy sampling)"},
      {"fairseq:locations1",
       "locations1 = cumsum over S of mask1 − 1 (fused_cumsum_sub_one): each first choice's place in its expert's "
       "queue (importance-sorted under batch_prioritized_routing)"},
      {"fairseq:gates{k}_s", "gates{k}_s = sum over E of gates * mask{k}: the rank-{k} probability, before capacity"},
      {"fairseq:sampled",
       "sampled = 2 · gates2_s > U, U the draw inputs.random_uniform (second_expert_policy random): keep the second "
       "choice"},
      {"fairseq:mask2_sampled", "mask2 *= sampled: an unsampled second choice is dropped"},
      {"fairseq:nonpadding", "nonpadding = ~input_mask: 1 for a real token"},
      {"fairseq:mask{k}_nonpadding", "mask{k} *= nonpadding: a padded token loses its rank-{k} choice"},
      {"fairseq:reshaped_input_padding_mask", "input_padding_mask reshaped to [G, S]: nonzero for a padded token"},
      {"fairseq:gates{k}_s_capacity",
       "gates{k}_s = sum over E of gates * mask{k} (after capacity): 0 for a dropped choice "
       "(normalize_gate_prob_before_dropping false)"},
      {"fairseq:gates{k}_s_normalized",
       "gates{k}_s /= denom_s: the two gates now sum to 1 (after the drops, or before them with "
       "normalize_gate_prob_before_dropping)"},
      {"fairseq:combine_weights",
       "combine_weights = gates1_s · mask1 ⊗ one_hot(locations1_s, C) + the same for rank 2"},
      {"fairseq:dispatch_mask", "dispatch_mask = combine_weights.bool(): which slot of which expert each token fills"},

      // ---- Hugging Face (Switch Transformers, NLLB-MoE) -------------------------------------------
      {"Hugging Face:logits",
       "router_logits = classifier(hidden_states): hidden_states · router_weights (+ router_bias when router_bias)"},
      {"Hugging Face:expert_mask",
       "expert_mask = one_hot(expert_indexes, E): after the capacity, so a dropped token counts for expert 0"},
      {"hf_switch_top1:jitter",
       "jitter = U(1 − router_jitter_noise, 1 + router_jitter_noise) from the draw inputs.jitter_uniform"},
      {"hf_switch_top1:hidden_states_jittered",
       "hidden_states *= jitter, in place: the router and the experts both see the jittered input"},
      {"hf_switch_top1:expert_index",
       "expert_index = argmax over E of router_probs: the token's expert (lowest index on a tie)"},
      {"hf_switch_top1:expert_index_one_hot", "expert_index = one_hot(expert_index, E)"},
      {"hf_switch_top1:token_priority",
       "token_priority = cumsum over S of expert_index (inclusive): 1-based, the token's place in its expert's queue"},
      {"hf_switch_top1:expert_capacity_mask",
       "expert_capacity_mask = token_priority ≤ expert_capacity (C), per sequence"},
      {"hf_switch_top1:expert_index_capacity",
       "router_mask = expert_index * expert_capacity_mask: a token beyond the capacity gets an all-zero row"},
      {"hf_switch_top1:router_probs_max",
       "router_probs = max over E of router_probs: the top-1 probability, kept for a dropped token too"},
      {"hf_switch_top1:position_in_expert",
       "position_in_expert = token_priority at expert_index − 1: the token's slot, ≥ C when dropped (moeref's, for "
       "the index form)"},
      {"hf_switch_top1:expert_indexes",
       "expert_indexes = argmax over E of router_mask: the kept expert, 0 for a dropped token (all-zero row)"},
      {"hf_switch_top1:router_mask_flat",
       "router_mask_flat = sum over E of router_mask: 1 if the token kept its expert"},
      {"hf_switch_top1:log_z_squared", "z_loss = log_z²; router_z_loss = sum(z_loss) / (G · S)"},
      {"hf_switch_top1:tokens_per_group_and_expert",
       "tokens_per_group_and_expert = mean over S of expert_mask: each expert's share of the tokens, after the "
       "capacity (dropped tokens count for expert 0)"},
      {"hf_switch_top1:router_prob_per_group_and_expert",
       "router_prob_per_group_and_expert = mean over S of softmax(router_logits) (router_probs again)"},
      {"hf_nllb_top2:padding_mask", "padding_mask regrouped to [G, S]: nonzero for a padded token"},
      {"hf_nllb_top2:top_1_expert_index",
       "top_1_expert_index = argmax over E of router_probs: the first choice (lowest index on a tie)"},
      {"hf_nllb_top2:top_{k}_mask", "top_{k}_mask = one_hot(top_{k}_expert_index, E)"},
      {"hf_nllb_top2:router_logits_noised",
       "router_logits += gumbel, in place (second_expert_policy sampling, in training and in evaluation)"},
      {"hf_nllb_top2:logits_except_top_1",
       "logits_except_top_1 = router_logits (Gumbel-noised under sampling) masked_fill(top_1_mask, −inf): the first "
       "choice removed"},
      {"hf_nllb_top2:top_2_expert_index",
       "top_2_expert_index = argmax over E of logits_except_top_1: the second choice (lowest index on a tie)"},
      {"hf_nllb_top2:top_2_max_probs_random",
       "top_2_max_probs = sum over E of router_probs * top_2_mask: the raw second probability (the random policy "
       "recomputes it, even after a normalisation)"},
      {"hf_nllb_top2:sampled",
       "sampled = 2 · top_2_max_probs > U, U the draw inputs.random_uniform (second_expert_policy random): keep the "
       "second choice"},
      {"hf_nllb_top2:top_2_mask_sampled", "top_2_mask *= sampled: an unsampled second choice is dropped"},
      {"hf_nllb_top2:non_padding", "non_padding = ~padding_mask.bool(): 1 for a real token"},
      {"hf_nllb_top2:top_{k}_mask_nonpadding", "top_{k}_mask *= non_padding: a padded token loses its choice"},
      {"hf_nllb_top2:locations1",
       "locations1 = cumsum over S of top_1_mask − 1: each first choice's place in its expert's queue "
       "(importance-sorted under batch_prioritized_routing)"},
      {"hf_nllb_top2:locations2",
       "locations2 = cumsum over S of top_2_mask − 1 + sum over S of top_1_mask: second choices queue behind every "
       "first choice, kept or not"},
      {"hf_nllb_top2:top_{k}_mask_capacity",
       "top_{k}_mask *= (locations{k} < expert_capacity): a choice beyond the capacity is dropped"},
      {"hf_nllb_top2:top_{k}_max_probs_raw",
       "top_{k}_max_probs = sum over E of router_probs * top_{k}_mask: the rank-{k} probability (after the drops, 0 "
       "when dropped; before them with normalize_router_prob_before_dropping)"},
      {"hf_nllb_top2:denom_s", "denom_s = clamp(top_1_max_probs + top_2_max_probs, min = float32 eps)"},
      {"hf_nllb_top2:top_{k}_max_probs", "top_{k}_max_probs /= denom_s: the two gates now sum to 1 (0 stays 0)"},
      {"hf_nllb_top2:router_probs_combined",
       "router_probs = top_1_max_probs · top_1_mask + top_2_max_probs · top_2_mask: each token's combine weights over "
       "E, 0 off its kept choices"},
      {"hf_nllb_top2:locations{k}_s",
       "locations{k}_s = sum over E of locations{k} * top_{k}_mask (after capacity): the kept choice's slot (moeref's, "
       "for the index form)"},
      {"hf_nllb_top2:router_mask_{k}",
       "router_mask = router_probs.bool() at top_{k}_expert_index: 1 if the rank-{k} choice is dispatched"},
      {"hf_nllb_top2:combining_weights_{k}",
       "combining_weights = router_probs at top_{k}_expert_index: the rank-{k} choice's weight"},
      {"hf_nllb_top2:expert_indexes",
       "top_1_expert_index = argmax over E of top_1_mask (after capacity): 0 for a dropped token"},
      {"hf_nllb_top2:tokens_per_group_and_expert",
       "tokens_per_group_and_expert = expert_mask as float, [G, S, E]: the mean over the size-1 k axis keeps one row "
       "per token"},
      {"hf_nllb_top2:router_prob_per_group_and_expert",
       "router_prob_per_group_and_expert = mean over S of router_probs_combined: the combine weights, not the "
       "softmax"},
      {"hf_nllb_top2:expert_outputs_token_dropout",
       "expert_output = Dropout(moe_token_dropout) when training (draw inputs.token_dropout_uniform), × (1 − p) when "
       "evaluating"},

      // ---- Tutel (extract_critical) and MegaBlocks (LearnedRouter, dMoE) ---------------------------
      {"Tutel:logits_w_noise",
       "logits_w_noise = logits + gate_noise · N / E, N the draw inputs.gate_noise_normal (training, gate_noise > 0)"},
      {"Tutel:scores", "scores = softmax(logits_w_noise) over E (logits_w_noise is logits itself without gate noise)"},
      {"Tutel:topk_mask", "topk(scores, k) over E as a 0/1 mask: each token's k best experts (lowest index on a tie)"},
      {"Tutel:topk_indices", "topk_indices = topk(scores, k).indices: [G, S, K], the larger score first"},
      {"Tutel:indices_s_{k}", "indices_s[{k}] = topk_indices[:, {k}]: each token's expert at rank k{k}"},
      {"Tutel:masks_se_{k}", "masks_se[{k}] = one_hot(indices_s[{k}], E)"},
      {"Tutel:gates_s_{k}", "gates_s[{k}] = sum over E of scores * masks_se[{k}]: the rank-k{k} probability"},
      {"Tutel:scores_wo_noise", "softmax(logits) over E, without the gate noise (load_importance_loss)"},
      {"Tutel:threshold", "threshold = logits_w_noise at the last rank's expert (load_importance_loss)"},
      {"Tutel:locations_0",
       "locations1 = cumsum over S of masks_se[0] − 1 (fast_cumsum_sub_one; compute_sorted_location with "
       "batch_prioritized_routing): first choices' places in their expert's queue"},
      {"Tutel:acc_base_{k}",
       "acc_base += sum over S of the previous rank's masks_se: each expert's choices at the ranks before k{k}"},
      {"Tutel:locations_{k}",
       "locations2 = cumsum over S of masks_se[{k}] − 1 (importance-sorted with batch_prioritized_routing) + "
       "acc_base_{k}: rank k{k} queues behind every choice of the ranks before it, kept or not"},
      {"Tutel:locations_s_{k}",
       "locations_s[{k}] = sum over E of locations * masks_se[{k}]: the slot of the rank-k{k} choice (dropped when "
       "≥ C)"},
      {"Tutel:denom_s", "denom_s = clamp(sum over ranks of gates_s, min = float32 eps) (normalize_gate, k > 1)"},
      {"Tutel:gates_s_{k}_normalized",
       "gates_s[{k}] /= denom_s: normalised over all k ranks before any drop (a dropped choice keeps its share)"},
      {"Tutel:dispatch_count",
       "locations2 = locations2[-1] + 1: the last token's row of the last rank's locations, plus 1 (each expert's "
       "choices at every rank, without batch_prioritized_routing); capacity_factor ≤ 0 takes C from it"},
      {"megablocks:jitter", "jitter = U(1 − moe_jitter_eps, 1 + moe_jitter_eps) from the draw inputs.jitter_uniform"},
      {"megablocks:x_jittered", "x = x * jitter: the router's input only, the experts get x clean"},
      {"megablocks:logits",
       "logits = self.layer(x): x (jittered when training with moe_jitter_eps) · router_weights, no bias"},
      {"megablocks:scores", "scores = softmax(logits) over E"},
      {"megablocks:topk_mask",
       "topk(scores, moe_top_k) over E as a 0/1 mask (scores.max for k = 1): each token's experts (lowest index on a "
       "tie)"},
      {"megablocks:expert_indices",
       "expert_weights, expert_indices = topk(scores, moe_top_k): [G, S, K], the larger score first"},
      {"megablocks:expert_weights",
       "expert_weights = scores at expert_indices: the raw probabilities, not renormalised by default"},
      {"megablocks:expert_weights_norm", "torch.norm(expert_weights, p = moe_normalize_expert_weights) over K"},
      {"megablocks:expert_weights_normalized", "expert_weights /= their p-norm"},
      {"megablocks:expert_indices_uniform",
       "expert_indices = arange % E (uniform_expert_assignment): rank r of token t goes to (t · K + r) mod E"},
      {"megablocks:tokens_per_expert",
       "tokens_per_expert = histogram(expert_indices, E): the (token, rank) pairs each expert gets, nothing dropped"},
      {"megablocks:bin_rows",
       "the row each (token, rank) takes in its expert's bin after ops.sort of the flattened indices (token-major, "
       "stable): the slot"},
      {"megablocks:top_experts_{k}", "expert_indices[:, {k}]: each token's expert at rank k{k}"},
      {"megablocks:dispatched_{k}", "1 for every token: dropless, each rank-k{k} choice is processed"},
      {"megablocks:log_z", "log_z = logsumexp over E of logits; router_zloss = moe_zloss_weight · mean(log_z²)"},

      // The experts of the token-routed PyTorch layers (torch_token_experts) and of Tutel.
      {"Hugging Face:expert_hidden",
       "expert_hidden = act(wi(hidden_states)) for each dispatched (token, rank), gathered per expert by router_mask: "
       "[G, S, K, H]"},
      {"Hugging Face:expert_outputs", "expert_outputs = wo(expert_hidden), written back at the tokens: [G, S, K, N]"},
      {"hf_switch_top1:outputs",
       "hidden_states = router_probs * next_states: the top-1 probability times the expert's output (0 when dropped)"},
      {"hf_nllb_top2:outputs",
       "hidden_states = sum over the ranks of combining_weights * expert_output, for the dispatched choices"},
      {"megablocks:expert_hidden",
       "expert_hidden = act(x · w1ᵀ) for every (token, rank), gathered into its expert's bin: [G, S, K, H]"},
      {"megablocks:expert_outputs", "expert_outputs = expert_hidden · w2ᵀ, scattered back: [G, S, K, N]"},
      {"megablocks:outputs", "outputs = sum over the ranks of expert_outputs * expert_weights (padded_scatter)"},
      {"Tutel:expert_inputs",
       "fast_encode: dispatched_input[indices_s, locations_s] = x (× gates_s unless is_postscore) for each choice with "
       "locations_s < C; empty slots 0"},
      {"Tutel:expert_hidden", "expert_hidden = relu(expert_inputs · fc1_w + fc1_bias), per expert over its C slots"},
      {"Tutel:expert_outputs", "expert_outputs = expert_hidden · fc2_w + fc2_bias"},
      {"Tutel:outputs",
       "fast_decode: outputs = sum over the ranks of expert_outputs[indices_s, locations_s] (× gates_s when "
       "is_postscore; 0 beyond C)"},

      // ---- praxis topk_gating_on_logits ------------------------------------------------------------
      // The ranks are 1-based; rank 1's and rank 2's exact names are listed because the unprefixed
      // top-2 keys would otherwise win over these patterns.
      {"praxis_topk:aux_loss", "aux_loss = mean(density_1_proxy * density_1) * E²"},
      {"praxis_topk:raw_gates_{k}",
       "raw_gates_{k} = the previous raw_gates_i * (1 − the previous rank's mask): the choices so far removed (a "
       "padded token keeps them)"},
      {"praxis_topk:index_{k}",
       "index_{k} = argmax over E of raw_gates_{k}: the rank-{k} choice (lowest index on a tie)"},
      {"praxis_topk:index_2", "index_2 = argmax over E of raw_gates_2: the rank-2 choice (lowest index on a tie)"},
      {"praxis_topk:mask_{k}", "mask_{k} = one_hot(index_{k}, E)"},
      {"praxis_topk:gate_{k}", "gate_{k} = sum over E of raw_gates_{k} * mask_{k}"},
      {"praxis_topk:gate_2", "gate_2 = sum over E of raw_gates_2 * mask_2"},
      {"praxis_topk:denom", "denom = gate_1 + 1e-9 + gate_2 + … + gate_k (1.0 when k = 1)"},
      {"praxis_topk:gate_{k}_normalized", "gate_{k} /= denom: the k gates now sum to 1"},
      {"praxis_topk:gate_1_normalized", "gate_1 /= denom: the k gates now sum to 1"},
      {"praxis_topk:gate_2_normalized", "gate_2 /= denom"},
      {"praxis_topk:position_in_expert_{k}",
       "position_in_expert_{k} = cumsum over S of mask_{k} (exclusive) + mask_count_all: rank {k} queues behind "
       "the kept choices of the ranks before it (not × mask)"},
      {"praxis_topk:position_in_expert_1",
       "position_in_expert_1 = cumsum over S of mask_1 (exclusive): the earlier first choices of the same expert (not "
       "× mask)"},
      {"praxis_topk:position_in_expert_2",
       "position_in_expert_2 = cumsum over S of mask_2 (exclusive) + mask_1_count: second choices queue behind "
       "every kept first choice (not × mask)"},
      {"praxis_topk:over_capacity_{k}",
       "the share of rank-{k} choices with position_in_expert_{k} ≥ C (a summary, "
       "_create_over_capacity_ratio_summary)"},
      {"praxis_topk:over_capacity_1",
       "the share of rank-1 choices with position_in_expert_1 ≥ C (a summary, _create_over_capacity_ratio_summary)"},
      {"praxis_topk:over_capacity_2",
       "the share of rank-2 choices with position_in_expert_2 ≥ C (a summary, _create_over_capacity_ratio_summary)"},
      {"praxis_topk:mask_{k}_capacity",
       "mask_{k} *= (position_in_expert_{k} < C): a choice beyond the capacity is dropped"},
      {"praxis_topk:mask_count_all_{k}",
       "mask_count_all += sum over S of mask_{k} (after capacity): the slots ranks 1 to {k} took at each expert"},
      {"praxis_topk:position_in_expert_{k}_flat",
       "position_in_expert_{k} = sum over E of position_in_expert_{k} * mask_{k}"},
      {"praxis_topk:mask_{k}_flat", "mask_{k}_flat = sum over E of mask_{k}: 1 if the token kept its rank-{k} choice"},
      {"praxis_topk:gate_{k}_capacity", "gate_{k} *= mask_{k}_flat (no renormalisation after the drops)"},
      {"praxis_topk:mask_{k}_nonpadding", "mask_{k} *= nonpaddings"},

      // ---- The experts (every layer) ---------------------------------------------------------
      {"expert_inputs", "expert_inputs = einsum(dispatch, inputs): each expert's C slots filled with their tokens"},
      {"expert_hidden", "expert_hidden = activation(expert_inputs · wi)"},
      {"expert_hidden_dropout", "dropout on expert_hidden (training only), by the draw inputs.dropout_uniform"},
      {"expert_outputs", "expert_outputs = expert_hidden · wo"},
      {"outputs", "outputs = einsum(combine, expert_outputs): each token's weighted sum of its experts' outputs"},
      {"output", "output = the combined expert outputs"},
  };
  return table;
}

// The name with its first run of digits replaced by "{k}", and those digits.
bool generalise(const std::string& name, std::string& pattern, std::string& digits) {
  const size_t start = name.find_first_of("0123456789");
  if (start == std::string::npos) return false;
  size_t end = start;
  while (end < name.size() && std::isdigit(static_cast<unsigned char>(name[end]))) ++end;
  pattern = name.substr(0, start) + "{k}" + name.substr(end);
  digits = name.substr(start, end - start);
  return true;
}

std::string substitute(std::string text, const std::string& digits) {
  for (size_t at = text.find("{k}"); at != std::string::npos; at = text.find("{k}", at + digits.size())) {
    text.replace(at, 3, digits);
  }
  return text;
}

std::string lookup(const std::string& variant, const std::string& implementation, const std::string& name) {
  const auto& table = formulas();
  for (const std::string& key : {variant + ":" + name, implementation + ":" + name, name}) {
    auto found = table.find(key);
    if (found != table.end()) return found->second;
  }
  std::string pattern, digits;
  if (!generalise(name, pattern, digits)) return "";
  for (const std::string& key : {variant + ":" + pattern, implementation + ":" + pattern, pattern}) {
    auto found = table.find(key);
    if (found != table.end()) return substitute(found->second, digits);
  }
  return "";
}

}  // namespace

std::string step_formula(const std::string& variant, const std::string& step) {
  const std::string implementation = implementation_of_variant(variant);
  const std::string direct = lookup(variant, implementation, step);
  if (!direct.empty()) return direct;
  // MoE2D runs _top_2_gating at two levels, with the step names prefixed.
  for (const auto& [prefix, level] : {std::pair<std::string, std::string>{"outer_", "outer level: tokens to X groups"},
                                      {"inner_", "inner level: slots to Y experts"}}) {
    if (step.compare(0, prefix.size(), prefix) != 0) continue;
    const std::string base = lookup(variant, implementation, step.substr(prefix.size()));
    if (!base.empty()) return base + " (" + level + ")";
  }
  return "";
}

}  // namespace moeref
