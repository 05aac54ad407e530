// fairseq_top2: fairseq's top-2 gate (fairscale's Top2Gating) in its MoE layer, literal to the source.
//
// Source: facebookresearch/fairseq at 26d62ae (26d62ae8fbf3deccf01a138d704be1e5c346ca9a),
//   fairseq/modules/moe/top2gate.py: top2gating (the gating function), Top2Gate,
//   gumbel_rsample, one_hot; fairseq/modules/moe/moe_layer.py: MOELayer.forward
//   (reshape, dispatch and combine matrix products), get_fused_cumsum_sub_one.
// Spec: spec/variants/fairseq_top2.md.
//
// Dims: B batch, L length, G = 1 group, S = B * L tokens (`input.reshape(-1, d_model)`),
//       E experts, C expert capacity, K = 2 ranks, M model dim, H expert hidden dim, N = M.
//
// Each step is one statement (or a few) of top2gating, in its order, under its variable
// name; a reassigned variable gets a suffix naming the stage (mask2 -> mask2_sampled ->
// mask2_nonpadding -> mask2_capacity; gates1_s -> gates1_s_normalized). The rules fairseq,
// NLLB-MoE and DeepSpeed share are in ops/fairseq_top2. The metadata (entropy, overflow,
// histograms, prefix-token counts) and the use_tutel path are not modelled.

#include "moeref/ops/fairseq_top2.hpp"

#include <cmath>
#include <optional>
#include <string>

#include "moeref/frame/define_variant.hpp"
#include "moeref/frame/forced_choice.hpp"
#include "moeref/frame/mtf_expert_layer.hpp"
#include "moeref/frame/routing_index_form.hpp"
#include "moeref/layers/fairseq_top2_gating.hpp"
#include "moeref/layers/torch_tokens.hpp"
#include "moeref/ops/dispatch_tensor.hpp"
#include "moeref/ops/gshard_sampling.hpp"
#include "moeref/ops/one_hot.hpp"
#include "moeref/ops/torch_random.hpp"
#include "moeref/ops/torch_routing.hpp"
#include "moeref/ops/torch_softmax.hpp"

namespace moeref {

namespace {

// Top2Gate's arguments (top2gating's names and defaults), and the layer's eval length.
struct FairseqTop2Hparams {
  std::string second_expert_policy;
  bool normalize_gate_prob_before_dropping = false;
  double moe_eval_capacity_token_fraction = 0.0;
  bool batch_prioritized_routing = false;
  std::optional<int64_t> moe_eval_capacity_length;
};

void declare_hparams(HparamTable<FairseqTop2Hparams>& table) {
  using P = FairseqTop2Hparams;
  const char* gating = "top2gate.py: top2gating, Top2Gate";
  table.choice("second_expert_policy", &P::second_expert_policy, {"sampling", "random", "all"})
      .defaults_to("sampling")
      .means(
          "sampling: second expert = argmax(logits + Gumbel) (any train); random: keep the greedy second iff "
          "2 * gate2 > U; all: keep it.")
      .cites(gating)
      .about("second_expert_policy");
  table.flag("normalize_gate_prob_before_dropping", &P::normalize_gate_prob_before_dropping)
      .defaults_to(false)
      .means(
          "Renormalise the two gates before the capacity drop (the 'random' test then sees them) instead of "
          "after it.")
      .cites(gating)
      .about("gate_renormalization");
  table.number("moe_eval_capacity_token_fraction", &P::moe_eval_capacity_token_fraction)
      .defaults_to(0.25)
      .eval_only()
      .means("When evaluating and > 0: C = ceil(fraction * S) (or ceil(fraction * moe_eval_capacity_length)).")
      .cites(gating)
      .about("capacity_factor");
  table.flag("batch_prioritized_routing", &P::batch_prioritized_routing)
      .defaults_to(false)
      .means("Slots are taken in descending order of the token's top probability instead of token order.")
      .cites(gating)
      .about("slot_priority");
  table.optional_integer("moe_eval_capacity_length", &P::moe_eval_capacity_length)
      .between(1, kMaxHparamExtent)
      .eval_only()
      .means("If set, the evaluation capacity is ceil(fraction * this) (MOELayer: max_positions * batch).")
      .cites("top2gate.py: top2gating; moe_layer.py: MOELayer.forward")
      .about("capacity_factor");
}

// top2gating(logits, input_mask, ..., eval_mode=not self.training): l_aux, combine_weights, dispatch_mask.
struct Gated {
  float l_aux = 0.0f;
  const Tensor* combine_weights = nullptr;
  const Tensor* dispatch_mask = nullptr;
};

Gated top2gating(Frame& f, const FairseqTop2Hparams& hp, const Tensor& logits, const Tensor* input_mask) {
  const int64_t G = f.dim("G"), S = f.dim("S"), E = f.dim("E");
  // gates = F.softmax(logits, dim=1)
  Tensor& gates = f.float32_step("gates", {logits}, {"G", "S", "E"});  // [G, S, E]
  ops::torch_softmax(logits.f32.data(), gates.f32.data(), G * S, E);
  // capacity: ceil(fraction * num_tokens) (or * moe_eval_capacity_length) in eval mode, else 2 * ceil(S / E).
  const bool eval_fraction = !f.train() && hp.moe_eval_capacity_token_fraction > 0.0;
  const double eval_length = static_cast<double>(hp.moe_eval_capacity_length ? *hp.moe_eval_capacity_length : S);
  const int64_t capacity = eval_fraction
                               ? static_cast<int64_t>(std::ceil(hp.moe_eval_capacity_token_fraction * eval_length))
                               : 2 * static_cast<int64_t>(std::ceil(static_cast<double>(S) / static_cast<double>(E)));
  f.derived_dim("C", capacity, "the top2gating capacity rule");
  f.check_routing_size();
  f.capacity({{"expert_capacity", capacity},
              {"rule", eval_fraction ? "fairseq eval: ceil(moe_eval_capacity_token_fraction * (S or length))"
                                     : "fairseq: 2 * ceil(S / E)"},
              {"num_tokens", S}});

  // indices1_s = torch.argmax(gates, dim=1, keepdim=True); mask1 = one_hot(indices1_s, num_experts)
  const TorchArgmaxChoice first = torch_argmax_choice(f, "indices1_s", "mask1", gates);
  // logits_w_noise = logits + gumbel_rsample(logits.shape) under 'sampling', else logits
  const Tensor* logits_w_noise = &logits;
  if (hp.second_expert_policy == "sampling") {
    const Tensor& gumbel_uniform = f.inputs().uniform_draw("gumbel_uniform", {"G", "S", "E"}, {G, S, E});
    const Tensor& gumbel =
        f.step("gumbel", {gumbel_uniform}, ops::gumbel_noise(ops::torch_gumbel_uniform(gumbel_uniform)));
    Tensor& noised = f.float32_step("logits_w_noise", {logits, gumbel}, {"G", "S", "E"});  // [G, S, E]
    for (size_t i = 0; i < noised.f32.size(); ++i) noised.f32[i] = logits.f32[i] + gumbel.f32[i];
    logits_w_noise = &noised;
  }
  // logits_except1 = logits_w_noise.masked_fill(mask1.bool(), float("-inf")); indices2_s; mask2
  const Tensor& logits_except1 =
      f.step("logits_except1", {logits_w_noise, first.mask}, ops::masked_fill_neg_inf(*logits_w_noise, *first.mask));
  const TorchArgmaxChoice second = torch_argmax_choice(f, "indices2_s", "mask2", logits_except1);
  // gates1_s = (gates * mask1).sum(dim=1); gates2_s likewise
  const Tensor* gates1_s = &f.step("gates1_s", {gates, first.mask}, ops::gate_of_mask(gates, *first.mask));
  const Tensor* gates2_s = &f.step("gates2_s", {gates, second.mask}, ops::gate_of_mask(gates, *second.mask));
  // denom_s = clamp(gates1_s + gates2_s, min=eps); gates1_s = gates1_s / denom_s; gates2_s likewise
  auto normalize = [&](const Tensor& one, const Tensor& two) {
    ops::NormalizedGates normalized = ops::normalize_top2_gates(one, two);
    const Tensor& denom_s = f.step("denom_s", {&one, &two}, std::move(normalized.denom_s));
    gates1_s = &f.step("gates1_s_normalized", {&one, denom_s}, std::move(normalized.gates1_s));
    gates2_s = &f.step("gates2_s_normalized", {&two, denom_s}, std::move(normalized.gates2_s));
  };
  if (hp.normalize_gate_prob_before_dropping) normalize(*gates1_s, *gates2_s);

  const Tensor* mask1 = first.mask;
  const Tensor* mask2 = second.mask;
  if (hp.second_expert_policy == "random") {
    // sampled = (2 * gates2_s) > torch.rand_like(gates2_s): the normalised gate when normalised before.
    const Tensor& uniform = f.inputs().uniform_draw("random_uniform", {"G", "S"}, {G, S});
    Tensor keep = Tensor::int32({"G", "S"}, {G, S});
    for (size_t t = 0; t < keep.i32.size(); ++t) keep.i32[t] = 2.0f * gates2_s->f32[t] > uniform.f32[t] ? 1 : 0;
    const Tensor& sampled =
        f.step("sampled", {gates2_s, uniform}, with_forced_keep(std::move(keep), f.forced_decision("sampled", {G, S})));
    // mask2 = mask2 * sampled.repeat(num_experts, 1).transpose(1, 0)
    mask2 = &f.step("mask2_sampled", {mask2, sampled}, ops::torch_mask_rows(*mask2, sampled));
  }
  // if input_mask is not None: nonpadding = ~input_mask; mask1 *= nonpadding; mask2 *= nonpadding.
  // importance_scores = -1 * gates.max(dim=1)[0] (batch_prioritized_routing); locations1, locations2.
  const FairseqTop2Locations placed =
      fairseq_top2_locations(f, {"nonpadding", "mask1_nonpadding", "mask2_nonpadding"}, *mask1, *mask2, input_mask,
                             hp.batch_prioritized_routing ? &gates : nullptr);
  mask1 = placed.mask1;
  mask2 = placed.mask2;
  const Tensor& locations1 = *placed.locations1;
  const Tensor& locations2 = *placed.locations2;

  // me = torch.mean(gates, dim=0); ce = torch.mean(mask1, dim=0) (after padding, before capacity);
  // l_aux = torch.mean(me * ce) * num_experts * num_experts
  const Tensor& me = f.step("me", {gates}, ops::torch_mean_over_s(gates));   // [G, E]
  const Tensor& ce = f.step("ce", {mask1}, ops::torch_mean_over_s(*mask1));  // [G, E]
  double sum = 0.0;
  for (size_t i = 0; i < me.f32.size(); ++i) sum += static_cast<double>(me.f32[i] * ce.f32[i]);
  const float mean = static_cast<float>(sum) / static_cast<float>(me.num_elements());
  const float l_aux = f.scalar_step("l_aux", {me, ce}, mean * static_cast<float>(E) * static_cast<float>(E)).f32[0];

  // mask1 = mask1 * torch.lt(locations1, capacity); mask2 likewise
  Tensor& mask1_kept = f.int32_step("mask1_capacity", {mask1, locations1}, {"G", "S", "E"});
  Tensor& mask2_kept = f.int32_step("mask2_capacity", {mask2, locations2}, {"G", "S", "E"});
  for (size_t i = 0; i < mask1_kept.i32.size(); ++i) {
    mask1_kept.i32[i] = mask1->i32[i] * (locations1.i32[i] < capacity ? 1 : 0);
    mask2_kept.i32[i] = mask2->i32[i] * (locations2.i32[i] < capacity ? 1 : 0);
  }
  if (!hp.normalize_gate_prob_before_dropping) {
    // gates1_s = (gates * mask1).sum(dim=1) on the kept masks, then the same normalisation.
    const Tensor& kept1 = f.step("gates1_s_capacity", {gates, mask1_kept}, ops::gate_of_mask(gates, mask1_kept));
    const Tensor& kept2 = f.step("gates2_s_capacity", {gates, mask2_kept}, ops::gate_of_mask(gates, mask2_kept));
    normalize(kept1, kept2);
  }
  // locations1_s = torch.sum(locations1 * mask1, dim=1); locations2_s likewise
  const Tensor& locations1_s =
      f.step("locations1_s", {locations1, mask1_kept}, ops::location_of_mask(locations1, mask1_kept));
  const Tensor& locations2_s =
      f.step("locations2_s", {locations2, mask2_kept}, ops::location_of_mask(locations2, mask2_kept));
  const Tensor& mask1_flat = f.step("mask1_flat", {mask1_kept}, ops::sum_over_last(mask1_kept));  // [G, S]
  const Tensor& mask2_flat = f.step("mask2_flat", {mask2_kept}, ops::sum_over_last(mask2_kept));  // [G, S]
  record_routing_index_form(
      f, {{first.index, &locations1_s, &mask1_flat, gates1_s}, {second.index, &locations2_s, &mask2_flat, gates2_s}});
  // combine_weights = bmm(gates1 (x) locations1_sc) + bmm(gates2 (x) locations2_sc); dispatch_mask = .bool()
  Gated out;
  out.combine_weights =
      &f.step("combine_weights", {gates1_s, mask1_kept, locations1_s, gates2_s, mask2_kept, locations2_s},
              ops::top2_combine(*gates1_s, mask1_kept, locations1_s, *gates2_s, mask2_kept, locations2_s, capacity));
  out.dispatch_mask = &f.step("dispatch_mask", {out.combine_weights}, ops::dispatch_from_combine(*out.combine_weights));
  out.l_aux = l_aux;
  return out;
}

// MOELayer.forward: reshape to [S, M], Top2Gate (logits = self.wg(input), no bias), the experts on
// the dispatch and combine products.
void fairseq_top2(Frame& f, const FairseqTop2Hparams& hp) {
  resolve_torch_token_dims(f, TorchTokenGroups::kAllTokensOneGroup, "d_model", "the expert's ffn dim");
  const Tensor* reshaped_input = take_torch_tokens_inputs(f);  // [G, S, M]
  // reshaped_input_padding_mask = input_padding_mask.reshape(-1): True (nonzero) for a padded token.
  const Tensor* input_mask = take_torch_tokens_optional(f, "input_padding_mask", "reshaped_input_padding_mask");
  const Tensor& logits = torch_router_logits(f, reshaped_input, false);  // [G, S, E]
  const Gated gated = top2gating(f, hp, logits, input_mask);
  if (f.layer_scope()) {
    // dispatched_input = mm(dispatch_mask (E*C, S), reshaped_input); expert_output = experts(...);
    // combined_output = mm(combine_weights (S, E*C), expert_output). The experts are the user's module;
    // moeref's is relu(x . wi) . wo.
    const MtfExpertWeights weights = take_mtf_expert_weights(f, 1, f.dim("E"), f.dim("M"), f.dim("H"), f.dim("N"));
    mtf_expert_layer(f, *reshaped_input, *gated.dispatch_mask, *gated.combine_weights, {ops::Activation::kRelu},
                     weights, std::nullopt);
  }
  // return combined_output, {"moe_gate_loss": l_aux}
  f.loss("moe_gate_loss", gated.l_aux);
}

// The decisions a backend may take the other way at a near tie: both argmaxes and the 'random' keep.
std::optional<NearTie> fairseq_top2_near_tie(const NearTieQuery& query, const FairseqTop2Hparams& hp) {
  if (query.step == "indices1_s") return top_1_near_tie(query, "gates");
  if (query.step == "indices2_s") return top_1_near_tie(query, "logits_except1");
  if (query.step == "sampled") {
    const std::string gate = hp.normalize_gate_prob_before_dropping ? "gates2_s_normalized" : "gates2_s";
    return random_keep_near_tie(
        query, "random_uniform", gate, [](float p) { return 2.0f * p; }, 2.0, "2 * gates2_s");
  }
  return std::nullopt;
}

}  // namespace

VariantSpec fairseq_top2_variant() {
  return define_variant<FairseqTop2Hparams>(
      {"fairseq_top2", "fairseq top-2 gate (fairscale Top2Gating): Gumbel or random second expert, capacity 2S/E",
       "facebookresearch/fairseq fairseq/modules/moe/top2gate.py: top2gating, Top2Gate; moe_layer.py: MOELayer",
       "spec/variants/fairseq_top2.md"},
      declare_hparams, fairseq_top2, fairseq_top2_near_tie);
}

}  // namespace moeref
