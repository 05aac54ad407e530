// hf_nllb_top2: Hugging Face NLLB-MoE's top-2 router and sparse MLP, literal to the source.
//
// Source: huggingface/transformers at 00b676f (00b676f8f0489b88652a31d70751cc540dd06305),
//   src/transformers/models/nllb_moe/modeling_nllb_moe.py: NllbMoeTop2Router
//   (route_tokens, normalize_router_probabilities, forward), NllbMoeSparseMLP.forward,
//   NllbMoeDenseActDense, load_balancing_loss_func and the loss lines of
//   NllbMoeForConditionalGeneration.forward / _unpack_router_logits.
// Spec: spec/variants/hf_nllb_top2.md.
//
// Dims: B batch, L length, G = 1 group, S = B * L tokens (the router reshapes
//       hidden_states to [batch_size * sequence_length, hidden_dim]), E experts,
//       C expert capacity, K = 2 ranks, M model dim (hidden_size), H expert
//       hidden dim (ffn_dim), N = M.
//
// Each step is one statement (or a few) of route_tokens, in its order, under its
// variable name; a reassigned variable gets a suffix naming the stage (top_1_mask ->
// top_1_mask_nonpadding -> top_1_mask_capacity; router_probs, finally the combine
// weights, becomes router_probs_combined). The pure rules fairseq and NLLB share
// are in ops/fairseq_top2.

#include <algorithm>
#include <cmath>
#include <optional>
#include <string>

#include "moeref/error.hpp"
#include "moeref/frame/define_variant.hpp"
#include "moeref/frame/forced_choice.hpp"
#include "moeref/frame/routing_index_form.hpp"
#include "moeref/layers/fairseq_top2_gating.hpp"
#include "moeref/layers/hf_router_hparams.hpp"
#include "moeref/layers/torch_tokens.hpp"
#include "moeref/ops/fairseq_top2.hpp"
#include "moeref/ops/gshard_sampling.hpp"
#include "moeref/ops/hf_router_losses.hpp"
#include "moeref/ops/one_hot.hpp"
#include "moeref/ops/top1.hpp"
#include "moeref/ops/torch_random.hpp"
#include "moeref/ops/torch_routing.hpp"
#include "moeref/ops/torch_softmax.hpp"

namespace moeref {

namespace {

// NllbMoeConfig's fields that the router, the sparse MLP and the loss read.
struct HfNllbTop2Hparams : HfRouterHparams {
  std::optional<int64_t> expert_capacity;
  bool router_ignore_padding_tokens = false;
  std::string second_expert_policy;
  bool normalize_router_prob_before_dropping = false;
  bool batch_prioritized_routing = false;
  double moe_eval_capacity_token_fraction = 0.0;
  double moe_token_dropout = 0.0;
  std::string activation_function;
  double activation_dropout = 0.0;
};

void declare_hparams(HparamTable<HfNllbTop2Hparams>& table) {
  using P = HfNllbTop2Hparams;
  const char* router = "modeling_nllb_moe.py: NllbMoeTop2Router.route_tokens";
  const char* mlp = "modeling_nllb_moe.py: NllbMoeSparseMLP, NllbMoeDenseActDense";
  table.optional_integer("expert_capacity", &P::expert_capacity)
      .defaults_to(64)
      .between(0, kMaxHparamExtent)
      .means("C when training (or evaluating with moe_eval_capacity_token_fraction <= 0); null: 2 * ceil(S / E).")
      .cites(router)
      .about("explicit_capacity");
  declare_hf_router_hparams(table, router, "modeling_nllb_moe.py: NllbMoeForConditionalGeneration.forward");
  table.flag("router_ignore_padding_tokens", &P::router_ignore_padding_tokens)
      .defaults_to(false)
      .means("True: padding_mask is NOT applied (the name reads backwards: padding is removed when it is false).")
      .cites(router)
      .about("padding");
  table.choice("second_expert_policy", &P::second_expert_policy, {"all", "sampling", "random"})
      .defaults_to("all")
      .means(
          "all: greedy second expert; sampling: argmax of logits + Gumbel (any train); random: keep the second "
          "iff 2 * p2 > U, p2 the RAW probability.")
      .cites(router)
      .about("second_expert_policy");
  table.flag("normalize_router_prob_before_dropping", &P::normalize_router_prob_before_dropping)
      .defaults_to(false)
      .means(
          "Renormalise the two gates before the capacity drop (then 'random' overwrites the second with its raw "
          "probability) instead of after it.")
      .cites(router)
      .about("gate_renormalization");
  table.flag("batch_prioritized_routing", &P::batch_prioritized_routing)
      .defaults_to(false)
      .means("Slots are taken in descending order of the token's top probability instead of token order.")
      .cites(router)
      .about("slot_priority");
  table.number("moe_eval_capacity_token_fraction", &P::moe_eval_capacity_token_fraction)
      .defaults_to(1.0)
      .eval_only()
      .means("When evaluating and > 0: C = ceil(fraction * S).")
      .cites(router)
      .about("capacity_factor");
  table.number("moe_token_dropout", &P::moe_token_dropout)
      .defaults_to(0.2)
      .between(0.0, 0.999999)
      .means("Expert outputs: nn.Dropout(p) when training, times (1 - p) when evaluating (scope layer).")
      .cites(mlp)
      .about("expert_dropout");
  table.choice("activation_function", &P::activation_function, {"relu"})
      .defaults_to("relu")
      .means("The experts' activation between fc1 and fc2 (ACT2FN's others are not modelled).")
      .cites(mlp)
      .about("activation");
  table.number("activation_dropout", &P::activation_dropout)
      .defaults_to(0.0)
      .between(0.0, 0.999999)
      .train_only()
      .means("nn.Dropout on the experts' hidden activations when training (scope layer).")
      .cites(mlp)
      .about("expert_dropout");
}

// normalize_router_probabilities(router_probs, top_1_mask, top_2_mask): records denom_s and both gates.
std::pair<const Tensor*, const Tensor*> normalized(Frame& f, const Tensor& router_probs, const Tensor& top_1_mask,
                                                   const Tensor& top_2_mask) {
  const Tensor& top_1 =
      f.step("top_1_max_probs_raw", {router_probs, top_1_mask}, ops::gate_of_mask(router_probs, top_1_mask));
  const Tensor& top_2 =
      f.step("top_2_max_probs_raw", {router_probs, top_2_mask}, ops::gate_of_mask(router_probs, top_2_mask));
  ops::NormalizedGates gates = ops::normalize_top2_gates(top_1, top_2);
  const Tensor& denom_s = f.step("denom_s", {top_1, top_2}, std::move(gates.denom_s));
  return {&f.step("top_1_max_probs", {top_1, denom_s}, std::move(gates.gates1_s)),
          &f.step("top_2_max_probs", {top_2, denom_s}, std::move(gates.gates2_s))};
}

// NllbMoeSparseMLP.forward: router(hidden_states) -> route_tokens, then the experts and the loss.
void hf_nllb_top2(Frame& f, const HfNllbTop2Hparams& hp) {
  resolve_torch_token_dims(f, TorchTokenGroups::kAllTokensOneGroup, "hidden_size", "ffn_dim");
  const int64_t G = f.dim("G"), S = f.dim("S"), E = f.dim("E");
  const Tensor* hidden_states = take_torch_tokens_inputs(f);  // [G, S, M]
  // router_logits = self.classifier(hidden_states)
  const Tensor& router_logits = torch_router_logits(f, hidden_states, hp.router_bias);  // [G, S, E]
  // padding_mask: nonzero for a padded token, [B, L] (or [G, S]) reshaped to the router's tokens.
  const Tensor* padding_mask = take_torch_tokens_optional(f, "padding_mask", "padding_mask");

  // ---- route_tokens ----------------------------------------------------------------
  // router_probs = nn.functional.softmax(router_logits, dim=-1, dtype=self.dtype).to(input_dtype)
  Tensor& router_probs = f.float32_step("router_probs", {router_logits}, {"G", "S", "E"});
  ops::torch_softmax(router_logits.f32.data(), router_probs.f32.data(), G * S, E);
  // top_1_expert_index = torch.argmax(router_probs, dim=-1); top_1_mask = one_hot(...)
  const TorchArgmaxChoice top_1 = torch_argmax_choice(f, "top_1_expert_index", "top_1_mask", router_probs);
  const Tensor* top_1_expert_index = top_1.index;
  const Tensor* logits = &router_logits;
  if (hp.second_expert_policy == "sampling") {
    // router_logits += Gumbel(0, 1).rsample(router_logits.shape): in place, in training and evaluation.
    const Tensor& gumbel_uniform = f.inputs().uniform_draw("gumbel_uniform", {"G", "S", "E"}, {G, S, E});
    const Tensor& gumbel =
        f.step("gumbel", {gumbel_uniform}, ops::gumbel_noise(ops::torch_gumbel_uniform(gumbel_uniform)));
    Tensor& noised = f.float32_step("router_logits_noised", {logits, gumbel}, {"G", "S", "E"});
    for (size_t i = 0; i < noised.f32.size(); ++i) noised.f32[i] = logits->f32[i] + gumbel.f32[i];
    logits = &noised;
  }
  // logits_except_top_1 = router_logits.masked_fill(top_1_mask.bool(), float("-inf"))
  const Tensor& logits_except_top_1 =
      f.step("logits_except_top_1", {logits, top_1.mask}, ops::masked_fill_neg_inf(*logits, *top_1.mask));
  const TorchArgmaxChoice top_2 = torch_argmax_choice(f, "top_2_expert_index", "top_2_mask", logits_except_top_1);
  const Tensor* top_2_expert_index = top_2.index;
  const Tensor* top_1_mask = top_1.mask;
  const Tensor* top_2_mask = top_2.mask;
  std::pair<const Tensor*, const Tensor*> max_probs{nullptr, nullptr};
  if (hp.normalize_router_prob_before_dropping) max_probs = normalized(f, router_probs, *top_1_mask, *top_2_mask);
  if (hp.second_expert_policy == "random") {
    // top_2_max_probs = (router_probs * top_2_mask).sum(dim=1): the RAW probability, even after normalising.
    const Tensor& raw =
        f.step("top_2_max_probs_random", {router_probs, top_2_mask}, ops::gate_of_mask(router_probs, *top_2_mask));
    max_probs.second = &raw;
    // sampled = (2 * top_2_max_probs) > torch.rand_like(top_2_max_probs.float())
    const Tensor& uniform = f.inputs().uniform_draw("random_uniform", {"G", "S"}, {G, S});
    Tensor keep = Tensor::int32({"G", "S"}, {G, S});
    for (size_t t = 0; t < keep.i32.size(); ++t) keep.i32[t] = 2.0f * raw.f32[t] > uniform.f32[t] ? 1 : 0;
    const Tensor& sampled =
        f.step("sampled", {raw, uniform}, with_forced_keep(std::move(keep), f.forced_decision("sampled", {G, S})));
    // top_2_mask = top_2_mask * sampled.repeat(self.num_experts, 1).transpose(1, 0)
    top_2_mask = &f.step("top_2_mask_sampled", {top_2_mask, sampled}, ops::torch_mask_rows(*top_2_mask, sampled));
  }
  // if padding_mask is not None and not self.router_ignore_padding_tokens: non_padding =
  // ~padding_mask.bool(); both masks *= non_padding. importance_scores = -1 *
  // router_probs.max(dim=1)[0] (batch_prioritized_routing); locations1, locations2.
  const FairseqTop2Locations placed = fairseq_top2_locations(
      f, {"non_padding", "top_1_mask_nonpadding", "top_2_mask_nonpadding"}, *top_1_mask, *top_2_mask,
      hp.router_ignore_padding_tokens ? nullptr : padding_mask, hp.batch_prioritized_routing ? &router_probs : nullptr);
  top_1_mask = placed.mask1;
  top_2_mask = placed.mask2;
  const Tensor& locations1 = *placed.locations1;
  const Tensor& locations2 = *placed.locations2;

  // The capacity: ceil(fraction * nb_tokens) when evaluating with fraction > 0, else the config's
  // expert_capacity, or 2 * ceil(nb_tokens / num_experts) when it is None.
  const bool eval_fraction = !f.train() && hp.moe_eval_capacity_token_fraction > 0.0;
  const int64_t capacity =
      eval_fraction ? static_cast<int64_t>(std::ceil(hp.moe_eval_capacity_token_fraction * static_cast<double>(S)))
      : hp.expert_capacity ? *hp.expert_capacity
                           : 2 * static_cast<int64_t>(std::ceil(static_cast<double>(S) / static_cast<double>(E)));
  f.derived_dim("C", capacity, "the NllbMoeTop2Router capacity rule");
  f.capacity({{"expert_capacity", capacity},
              {"rule", eval_fraction        ? "nllb eval: ceil(moe_eval_capacity_token_fraction * S)"
                       : hp.expert_capacity ? "given: config.expert_capacity"
                                            : "nllb: 2 * ceil(S / E) (config.expert_capacity is None)"},
              {"num_tokens", S}});
  // top_1_mask = top_1_mask * torch.lt(locations1, self.expert_capacity); the same for 2
  Tensor& top_1_kept = f.int32_step("top_1_mask_capacity", {top_1_mask, locations1}, {"G", "S", "E"});
  Tensor& top_2_kept = f.int32_step("top_2_mask_capacity", {top_2_mask, locations2}, {"G", "S", "E"});
  for (size_t i = 0; i < top_1_kept.i32.size(); ++i) {
    top_1_kept.i32[i] = top_1_mask->i32[i] * (locations1.i32[i] < capacity ? 1 : 0);
    top_2_kept.i32[i] = top_2_mask->i32[i] * (locations2.i32[i] < capacity ? 1 : 0);
  }
  if (!hp.normalize_router_prob_before_dropping) max_probs = normalized(f, router_probs, top_1_kept, top_2_kept);
  // gates1 = top_1_max_probs[:, None] * top_1_mask; gates2 likewise; router_probs = gates1 + gates2
  Tensor& combined =
      f.float32_step("router_probs_combined", {max_probs.first, top_1_kept, max_probs.second, top_2_kept},
                     {"G", "S", "E"});  // [G, S, E]
  for (int64_t i = 0; i < G * S * E; ++i) {
    const size_t t = static_cast<size_t>(i / E), at = static_cast<size_t>(i);
    combined.f32[at] = max_probs.first->f32[t] * static_cast<float>(top_1_kept.i32[at]) +
                       max_probs.second->f32[t] * static_cast<float>(top_2_kept.i32[at]);
  }

  // ---- moeref's index form: slots are the kept locations -----------------------------
  const Tensor& locations1_s =
      f.step("locations1_s", {locations1, top_1_kept}, ops::location_of_mask(locations1, top_1_kept));
  const Tensor& locations2_s =
      f.step("locations2_s", {locations2, top_2_kept}, ops::location_of_mask(locations2, top_2_kept));
  // router_mask = router_probs.bool(): a choice is dispatched where its combined weight is nonzero.
  Tensor dispatched_1 = Tensor::int32({"G", "S"}, {G, S}), dispatched_2 = Tensor::int32({"G", "S"}, {G, S});
  Tensor weight_1 = Tensor::float32({"G", "S"}, {G, S}), weight_2 = Tensor::float32({"G", "S"}, {G, S});
  for (int64_t t = 0; t < G * S; ++t) {
    const int32_t e1 = top_1_expert_index->i32[static_cast<size_t>(t)],
                  e2 = top_2_expert_index->i32[static_cast<size_t>(t)];
    const float w1 = combined.f32[static_cast<size_t>(t * E + e1)], w2 = combined.f32[static_cast<size_t>(t * E + e2)];
    dispatched_1.i32[static_cast<size_t>(t)] = top_1_kept.i32[static_cast<size_t>(t * E + e1)] != 0 && w1 != 0.0f;
    // With E = 1 both ranks name one expert: the source runs it once, with the summed weight.
    dispatched_2.i32[static_cast<size_t>(t)] =
        top_2_kept.i32[static_cast<size_t>(t * E + e2)] != 0 && w2 != 0.0f && e2 != e1;
    weight_1.f32[static_cast<size_t>(t)] = w1;
    weight_2.f32[static_cast<size_t>(t)] = w2;
  }
  const Tensor& router_mask_1 = f.step("router_mask_1", {combined, top_1_kept}, std::move(dispatched_1));
  const Tensor& router_mask_2 = f.step("router_mask_2", {combined, top_2_kept}, std::move(dispatched_2));
  const Tensor& weights_1 = f.step("combining_weights_1", {combined}, std::move(weight_1));
  const Tensor& weights_2 = f.step("combining_weights_2", {combined}, std::move(weight_2));
  record_routing_index_form(f, {{top_1_expert_index, &locations1_s, &router_mask_1, &weights_1},
                                {top_2_expert_index, &locations2_s, &router_mask_2, &weights_2}});

  if (f.layer_scope()) {
    // expert_output = expert(masked_hidden_states[idx, token_indices]): fc1 (bias), act, dropout, fc2 (bias).
    const Tensor& expert_output = torch_token_experts(
        f, *hidden_states, {{top_1_expert_index, &router_mask_1}, {top_2_expert_index, &router_mask_2}},
        ops::Activation::kRelu, hp.activation_dropout, true);  // [G, S, K, N]
    const int64_t N = f.dim("N");
    // Token dropout: nn.Dropout(moe_token_dropout) when training, expert_output *= 1 - p when evaluating.
    const Tensor* dropped = &expert_output;
    if (hp.moe_token_dropout > 0.0) {
      const Tensor* uniform =
          f.train() ? &f.inputs().uniform_draw("token_dropout_uniform", {"G", "S", "K", "N"}, {G, S, 2, N}) : nullptr;
      const float keep_prob = static_cast<float>(1.0 - hp.moe_token_dropout);
      Tensor& out =
          f.float32_step("expert_outputs_token_dropout", {expert_output, uniform}, {"G", "S", "K", "N"}, {G, S, 2, N});
      for (size_t i = 0; i < out.f32.size(); ++i) {
        const float noise = uniform ? (uniform->f32[i] < keep_prob ? 1.0f / keep_prob : 0.0f) : keep_prob;
        out.f32[i] = expert_output.f32[i] * noise;
      }
      dropped = &out;
    }
    // masked_hidden_states[idx, token_indices] = combining_weights * expert_output; hidden_states =
    // masked_hidden_states.sum(dim=0): the two weighted outputs, lower expert first.
    Tensor& outputs = f.float32_step("outputs", {dropped, router_mask_1, weights_1, router_mask_2, weights_2},
                                     {"G", "S", "N"});  // [G, S, N]
    for (int64_t i = 0; i < G * S * N; ++i) {
      // Float addition is commutative and the other experts add exact zeros, so the sum over E
      // is the two weighted outputs added once.
      const size_t t = static_cast<size_t>(i / N), n = static_cast<size_t>(i % N);
      const float a =
          router_mask_1.i32[t] ? weights_1.f32[t] * dropped->f32[(t * 2) * static_cast<size_t>(N) + n] : 0.0f;
      const float b =
          router_mask_2.i32[t] ? weights_2.f32[t] * dropped->f32[(t * 2 + 1) * static_cast<size_t>(N) + n] : 0.0f;
      outputs.f32[static_cast<size_t>(i)] = a + b;
    }
  }

  // ---- The loss: load_balancing_loss_func(router_probs, top_1_expert_index) -------------
  // top_1_expert_index = torch.argmax(top_1_mask, dim=-1) (after capacity: a dropped token gives 0)
  const Tensor& expert_indexes =
      f.step("expert_indexes", {top_1_kept}, ops::torch_argmax_of_mask(top_1_kept));  // [G, S]
  // _unpack_router_logits stacks the indices to [N, 1]: expert_mask = one_hot(...) max over the k axis.
  const Tensor& expert_mask = f.step("expert_mask", {expert_indexes}, ops::one_hot(expert_indexes, E, "E"));
  Tensor tokens = Tensor::float32({"G", "S", "E"}, {G, S, E});
  for (size_t i = 0; i < tokens.f32.size(); ++i) tokens.f32[i] = static_cast<float>(expert_mask.i32[i]);
  const Tensor& tokens_per_group_and_expert = f.step("tokens_per_group_and_expert", {expert_mask}, std::move(tokens));
  const Tensor& router_prob_per_group_and_expert =
      f.step("router_prob_per_group_and_expert", {combined}, ops::torch_mean_over_s(combined));  // [G, E]
  const float aux =
      ops::hf_load_balancing_loss_per_token(tokens_per_group_and_expert, router_prob_per_group_and_expert);
  f.loss("encoder_aux_loss", aux);
  // aux_loss = self.router_aux_loss_coef * (encoder_aux_loss + decoder_aux_loss), the decoder's being 0 here.
  f.loss("aux_loss", static_cast<float>(hp.router_aux_loss_coef) * aux);
}

// The decisions a backend may take the other way at a near tie: both argmaxes
// and the 'random' keep (U against 2 * p2).
std::optional<NearTie> hf_nllb_top2_near_tie(const NearTieQuery& query, const HfNllbTop2Hparams&) {
  if (query.step == "top_1_expert_index") return top_1_near_tie(query, "router_probs");
  if (query.step == "top_2_expert_index") return top_1_near_tie(query, "logits_except_top_1");
  if (query.step == "sampled") {
    return random_keep_near_tie(
        query, "random_uniform", "top_2_max_probs_random", [](float p) { return 2.0f * p; }, 2.0,
        "2 * top_2_max_probs");
  }
  return std::nullopt;
}

}  // namespace

VariantSpec hf_nllb_top2_variant() {
  return define_variant<HfNllbTop2Hparams>(
      {"hf_nllb_top2", "Hugging Face NLLB-MoE top-2 router (a port of fairseq's) with its sparse MLP and loss",
       "huggingface/transformers src/transformers/models/nllb_moe/modeling_nllb_moe.py: NllbMoeTop2Router, "
       "NllbMoeSparseMLP, load_balancing_loss_func",
       "spec/variants/hf_nllb_top2.md"},
      declare_hparams, hf_nllb_top2, hf_nllb_top2_near_tie);
}

}  // namespace moeref
