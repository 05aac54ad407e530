// One-line formulas for the steps of every variant, for `moeref explain`.
//
// The variants record what a step read (the trace's `reads`), not what it
// computed: the formulas live here, one table, so that no variant file and no
// trace changes for the sake of teaching. A key is a step name, optionally with
// the implementation ("lingvo:") or the variant id ("mtf_switch_max:") in front
// when one name means different things; "{k}" stands for a rank number in the
// name (position_in_expert_{k}). The formulas use the source's names and the
// dims' letters; the exact statements are quoted above each step in src/layers/
// and src/variants/, and on the spec pages.

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
