// hf_switch_top1: Hugging Face Switch Transformers' top-1 router and sparse MLP,
// literal to the source.
//
// Source: huggingface/transformers at 00dcc6d (00dcc6dda6f6d8e69541a6b51f97986a80242367),
//   src/transformers/models/switch_transformers/modeling_switch_transformers.py:
//     SwitchTransformersTop1Router (_compute_router_probabilities, forward),
//     SwitchTransformersSparseMLP.forward, SwitchTransformersDenseActDense,
//     router_z_loss_func, load_balancing_loss_func, and the loss lines of
//     SwitchTransformersForConditionalGeneration.forward.
// Spec: spec/variants/hf_switch_top1.md.
//
// Dims: B batch, L length, G groups (= B: one sequence per group), S tokens per
//       group (= L), E experts, C expert capacity (per sequence), K = 1 rank,
//       M model dim (hidden_size / d_model), H expert hidden dim (d_ff), N = M.
//
// Each step is one statement (or a few) of the source, in its order, under its
// variable name. Where the source reassigns a variable (expert_index becomes a
// one-hot, then is masked; router_probs becomes its row maximum), the trace
// keeps every version under a suffix naming the stage. The router runs in
// float32 (router_dtype); masks and priorities are int64 in torch and exact
// integers, held as int32.

#include <algorithm>
#include <optional>
#include <string>

#include "moeref/frame/define_variant.hpp"
#include "moeref/frame/forced_choice.hpp"
#include "moeref/frame/routing_index_form.hpp"
#include "moeref/layers/hf_router_hparams.hpp"
#include "moeref/layers/torch_tokens.hpp"
#include "moeref/ops/hf_router_losses.hpp"
#include "moeref/ops/one_hot.hpp"
#include "moeref/ops/top1.hpp"
#include "moeref/ops/torch_random.hpp"
#include "moeref/ops/torch_routing.hpp"
#include "moeref/ops/torch_softmax.hpp"

namespace moeref {

namespace {

// SwitchTransformersConfig's fields that the router, the sparse MLP and the
// router losses read.
struct HfSwitchTop1Hparams : HfRouterHparams {
  int64_t expert_capacity = 0;
  double router_jitter_noise = 0.0;
  bool router_ignore_padding_tokens = false;
  double router_z_loss_coef = 0.0;
  std::string dense_act_fn;
  double dropout_rate = 0.0;
};

void declare_hparams(HparamTable<HfSwitchTop1Hparams>& table) {
  using P = HfSwitchTop1Hparams;
  const char* config = "configuration_switch_transformers.py: SwitchTransformersConfig";
  const char* router = "modeling_switch_transformers.py: SwitchTransformersTop1Router";
  table.integer("expert_capacity", &P::expert_capacity)
      .defaults_to(64)
      .between(0, kMaxHparamExtent)
      .means("C: tokens each expert takes per sequence, in token order (token_priority <= expert_capacity).")
      .cites(router)
      .about("explicit_capacity");
  declare_hf_router_hparams(table, router,
                            "modeling_switch_transformers.py: SwitchTransformersForConditionalGeneration.forward");
  table.number("router_jitter_noise", &P::router_jitter_noise)
      .defaults_to(0.01)
      .between(0.0, 1.0)
      .train_only()
      .means(
          "When training and > 0, the router input is multiplied in place by U(1 - eps, 1 + eps) (the experts see it).")
      .cites(router)
      .about("jitter");
  table.flag("router_ignore_padding_tokens", &P::router_ignore_padding_tokens)
      .defaults_to(false)
      .means("Stored by the router and never read: it changes nothing.")
      .cites(router)
      .about("padding");
  table.number("router_z_loss_coef", &P::router_z_loss_coef)
      .defaults_to(0.001)
      .at_least(0.0)
      .means("The loss z_loss is router_z_loss_func(router_logits) times this.")
      .cites("modeling_switch_transformers.py: SwitchTransformersForConditionalGeneration.forward")
      .about("z_loss_coef");
  table.choice("dense_act_fn", &P::dense_act_fn, {"relu"})
      .defaults_to("relu")
      .means("The experts' activation (scope layer); ACT2FN's other functions are not modelled.")
      .cites(config)
      .about("activation");
  table.number("dropout_rate", &P::dropout_rate)
      .defaults_to(0.1)
      .between(0.0, 0.999999)
      .train_only()
      .means("nn.Dropout on the experts' hidden activations when training (scope layer).")
      .cites("modeling_switch_transformers.py: SwitchTransformersDenseActDense")
      .about("expert_dropout");
}

// The router's outputs as SwitchTransformersSparseMLP.forward receives them.
struct RouterOutputs {
  const Tensor* expert_index = nullptr;   // [G, S] the argmax, before capacity
  const Tensor* router_mask = nullptr;    // [G, S, E] the one-hot after capacity
  const Tensor* router_probs = nullptr;   // [G, S] the row maximum of the probabilities
  const Tensor* position = nullptr;       // [G, S] token_priority - 1 at the chosen expert
  const Tensor* probabilities = nullptr;  // [G, S, E] the softmax
  const Tensor* router_logits = nullptr;  // [G, S, E]
  const Tensor* hidden_states = nullptr;  // [G, S, M] as the experts see it, or null
};

// SwitchTransformersTop1Router.forward(hidden_states).
RouterOutputs top1_router(Frame& f, const HfSwitchTop1Hparams& hp, const Tensor* hidden_states) {
  const int64_t G = f.dim("G"), S = f.dim("S"), E = f.dim("E"), C = f.dim("C");
  RouterOutputs out;
  // _compute_router_probabilities: hidden_states = hidden_states.to(self.dtype) (float32: the same tensor).
  if (f.train() && hp.router_jitter_noise > 0 && !f.supplied("logits")) {
    // hidden_states *= torch.empty_like(hidden_states).uniform_(1.0 - self.jitter_noise, 1.0 + self.jitter_noise)
    const int64_t M = f.dim("M");
    const Tensor& jitter_uniform = f.inputs().uniform_draw("jitter_uniform", {"G", "S", "M"}, {G, S, M});
    const Tensor& jitter = f.step("jitter", {jitter_uniform},
                                  ops::torch_uniform_(jitter_uniform, 1.0 - hp.router_jitter_noise,
                                                      1.0 + hp.router_jitter_noise));  // [G, S, M]
    Tensor& jittered = f.float32_step("hidden_states_jittered", {hidden_states, jitter}, {"G", "S", "M"});
    for (size_t i = 0; i < jittered.f32.size(); ++i) jittered.f32[i] = hidden_states->f32[i] * jitter.f32[i];
    // In place: the caller's hidden_states, which the experts read, is this tensor now.
    hidden_states = &jittered;
  }
  out.hidden_states = hidden_states;
  // router_logits = self.classifier(hidden_states)
  out.router_logits = &torch_router_logits(f, hidden_states, hp.router_bias);  // [G, S, E]
  // router_probabilities = nn.functional.softmax(router_logits, dim=-1, dtype=self.dtype).to(self.input_dtype)
  Tensor& router_probs = f.float32_step("router_probs", {out.router_logits}, {"G", "S", "E"});  // [G, S, E]
  ops::torch_softmax(out.router_logits->f32.data(), router_probs.f32.data(), G * S, E);
  out.probabilities = &router_probs;

  // expert_index = torch.argmax(router_probs, dim=-1): the first maximum.
  out.expert_index = &f.step("expert_index", {router_probs},
                             with_forced_top_1(ops::argmax_lowest_index(router_probs),
                                               f.forced_decision("expert_index", {G, S}), E));  // [G, S]
  // expert_index = torch.nn.functional.one_hot(expert_index, num_classes=self.num_experts)
  const Tensor& one_hot =
      f.step("expert_index_one_hot", {out.expert_index}, ops::one_hot(*out.expert_index, E, "E"));  // [G, S, E]
  // token_priority = torch.cumsum(expert_index, dim=-2): 1-based, per sequence.
  const Tensor& token_priority = f.step("token_priority", {one_hot}, ops::torch_cumsum_over_s(one_hot));  // [G, S, E]
  // expert_capacity_mask = token_priority <= self.expert_capacity
  Tensor& capacity_mask = f.int32_step("expert_capacity_mask", {token_priority}, {"G", "S", "E"});
  for (size_t i = 0; i < capacity_mask.i32.size(); ++i) capacity_mask.i32[i] = token_priority.i32[i] <= C ? 1 : 0;
  // expert_index = expert_index * expert_capacity_mask
  Tensor& router_mask = f.int32_step("expert_index_capacity", {one_hot, capacity_mask}, {"G", "S", "E"});
  for (size_t i = 0; i < router_mask.i32.size(); ++i) router_mask.i32[i] = one_hot.i32[i] * capacity_mask.i32[i];
  out.router_mask = &router_mask;
  // router_probs = torch.max(router_probs, dim=-1).values.unsqueeze(-1): the top-1 probability,
  // kept for dropped tokens too.
  const Tensor& probs_max =
      f.step("router_probs_max", {router_probs}, ops::torch_max_over_last(router_probs));  // [G, S]
  out.router_probs = &probs_max;
  // moeref's addition for the index form: the slot the token's priority names.
  Tensor& position = f.int32_step("position_in_expert", {token_priority, out.expert_index}, {"G", "S"});
  for (int64_t t = 0; t < G * S; ++t) {
    const int32_t chosen = out.expert_index->i32[static_cast<size_t>(t)];
    position.i32[static_cast<size_t>(t)] = token_priority.i32[static_cast<size_t>(t * E + chosen)] - 1;
  }
  out.position = &position;
  return out;
}

// SwitchTransformersSparseMLP.forward, then the model's router losses for this layer.
void hf_switch_top1(Frame& f, const HfSwitchTop1Hparams& hp) {
  resolve_torch_token_dims(f, TorchTokenGroups::kOneSequencePerGroup, "hidden_size", "d_ff");
  f.derived_dim("C", hp.expert_capacity, "the expert_capacity hparam");
  f.capacity({{"expert_capacity", f.dim("C")},
              {"rule", "given: config.expert_capacity, per sequence (token_priority <= expert_capacity)"},
              {"group_size", f.dim("S")},
              {"num_groups", f.dim("G")}});
  const int64_t G = f.dim("G"), S = f.dim("S"), E = f.dim("E");
  const Tensor* hidden_states = take_torch_tokens_inputs(f);  // [G, S, M]

  // router_mask, router_probs, router_logits = self.router(hidden_states)
  const RouterOutputs routed = top1_router(f, hp, hidden_states);
  // expert_index = torch.argmax(router_mask, dim=-1): 0 for a dropped token.
  const Tensor& expert_indexes =
      f.step("expert_indexes", {routed.router_mask}, ops::torch_argmax_of_mask(*routed.router_mask));  // [G, S]
  const Tensor& dispatched =
      f.step("router_mask_flat", {routed.router_mask}, ops::sum_over_last(*routed.router_mask));  // [G, S]
  // The routing in index form (K = 1): expert, slot (token_priority - 1) or -1, weight router_probs.
  record_routing_index_form(f, {{routed.expert_index, routed.position, &dispatched, routed.router_probs}});

  if (f.layer_scope()) {
    // next_states = zeros; next_states[router_mask[:, :, idx]] = expert_idx(hidden_states[router_mask[:, :, idx]])
    const Tensor& next_states =
        torch_token_experts(f, *routed.hidden_states, {{routed.expert_index, &dispatched}}, ops::Activation::kRelu,
                            hp.dropout_rate);  // [G, S, K = 1, N]
    // hidden_states = router_probs * next_states
    const int64_t N = f.dim("N");
    Tensor& outputs = f.float32_step("outputs", {routed.router_probs, next_states}, {"G", "S", "N"});  // [G, S, N]
    for (int64_t i = 0; i < G * S * N; ++i) {
      outputs.f32[static_cast<size_t>(i)] =
          routed.router_probs->f32[static_cast<size_t>(i / N)] * next_states.f32[static_cast<size_t>(i)];
    }
  }

  // router_z_loss_func(router_logits): log_z = torch.logsumexp(router_logits, dim=-1); z_loss = log_z**2;
  // torch.sum(z_loss) / (num_groups * tokens_per_group)
  const Tensor& log_z = f.step("log_z", {routed.router_logits}, ops::torch_logsumexp(*routed.router_logits));
  const Tensor& log_z_squared = f.step("log_z_squared", {log_z}, ops::torch_square(log_z));  // [G, S]
  const float z_loss = ops::hf_router_z_loss(log_z_squared);
  // load_balancing_loss_func(nn.Softmax(dim=-1)(router_logits), expert_indexes): the softmax is
  // router_probs again (the same op on the same logits). expert_mask = max over the k axis of
  // one_hot(expert_indexes.unsqueeze(2)), i.e. the one-hot itself.
  const Tensor& expert_mask = f.step("expert_mask", {expert_indexes}, ops::one_hot(expert_indexes, E, "E"));
  const Tensor& tokens_per_group_and_expert =
      f.step("tokens_per_group_and_expert", {expert_mask}, ops::torch_mean_over_s(expert_mask));  // [G, E]
  const Tensor& router_prob_per_group_and_expert =
      f.step("router_prob_per_group_and_expert", {routed.probabilities}, ops::torch_mean_over_s(*routed.probabilities));
  const float aux_loss = ops::hf_load_balancing_loss(tokens_per_group_and_expert, router_prob_per_group_and_expert);
  // z_loss = self.router_z_loss_coef * (encoder_z_loss + decoder_z_loss), the decoder's being 0 here.
  f.loss("encoder_z_loss", z_loss);
  f.loss("encoder_aux_loss", aux_loss);
  f.loss("z_loss", static_cast<float>(hp.router_z_loss_coef) * z_loss);
  f.loss("aux_loss", static_cast<float>(hp.router_aux_loss_coef) * aux_loss);
}

// The router's one decision a backend may take the other way at a near tie:
// the argmax over router_probs.
std::optional<NearTie> hf_switch_top1_near_tie(const NearTieQuery& query, const HfSwitchTop1Hparams&) {
  if (query.step == "expert_index") return top_1_near_tie(query, "router_probs");
  return std::nullopt;
}

}  // namespace

VariantSpec hf_switch_top1_variant() {
  return define_variant<HfSwitchTop1Hparams>(
      {"hf_switch_top1",
       "Hugging Face Switch Transformers top-1 router (per-sequence capacity, jitter) with its sparse MLP and losses",
       "huggingface/transformers src/transformers/models/switch_transformers/modeling_switch_transformers.py: "
       "SwitchTransformersTop1Router, SwitchTransformersSparseMLP, router_z_loss_func, load_balancing_loss_func",
       "spec/variants/hf_switch_top1.md"},
      declare_hparams, hf_switch_top1, hf_switch_top1_near_tie);
}

}  // namespace moeref
