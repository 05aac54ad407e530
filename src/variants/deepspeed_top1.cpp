// deepspeed_top1: DeepSpeed's top-1 gate (k = 1), literal to the source.
//
// Source: microsoft/DeepSpeed at 38327e0 (38327e07f6cd39b63418f60cedd1651b0be3e7c3),
//   deepspeed/moe/sharded_moe.py: top1gating (the gating function), _capacity,
//   gumbel_rsample, TopKGate.forward, MOELayer.forward (layers/deepspeed_moe_layer.hpp);
//   deepspeed/moe/layer.py: MoE (the defaults).
// Spec: spec/variants/deepspeed_top1.md.
//
// Dims: G = 1 group, S tokens (every token of the call), E experts, C expert
//       capacity, M model dim, H expert hidden dim, N = M, K = 1 rank.
//
// Each step is one statement (or a few) of top1gating, in its order, under its
// variable name; a reassigned variable gets a suffix naming the stage (mask1 ->
// mask1_used -> mask1_capacity, gates -> gates_masked). Masks, counts and
// locations are int64 in torch and exact integers, held as int32. The use_tutel
// path (MOELayer with Tutel installed) is not modelled.

#include <algorithm>
#include <optional>
#include <string>

#include "moeref/error.hpp"
#include "moeref/frame/define_variant.hpp"
#include "moeref/frame/forced_choice.hpp"
#include "moeref/frame/routing_index_form.hpp"
#include "moeref/layers/deepspeed_moe_layer.hpp"
#include "moeref/ops/deepspeed_capacity.hpp"
#include "moeref/ops/deepspeed_gating.hpp"
#include "moeref/ops/gshard_sampling.hpp"
#include "moeref/ops/one_hot.hpp"
#include "moeref/ops/top1.hpp"
#include "moeref/ops/torch_random.hpp"
#include "moeref/ops/torch_routing.hpp"
#include "moeref/ops/torch_softmax.hpp"

namespace moeref {

namespace {

// TopKGate's arguments for k = 1 (MoE's names and defaults), and top1gating's own.
struct DeepspeedTop1Hparams : DeepspeedGateHparams {
  bool use_rts = true;
};

void declare_hparams(HparamTable<DeepspeedTop1Hparams>& table) {
  using P = DeepspeedTop1Hparams;
  declare_deepspeed_gate_hparams(
      table, {"None", "Jitter", "RSample"},
      "None (Python None); Jitter: the router input times U(0.99, 1.01) when training; RSample: the top-1 "
      "expert is the argmax of logits + Gumbel noise when training (the gate value stays clean).",
      "True: C from the capacity factor, tokens beyond it dropped; False: C = min(max(exp_counts), S), nothing "
      "dropped.");
  table.flag("use_rts", &P::use_rts)
      .defaults_to(true)
      .means(
          "Random token selection: each expert keeps the C tokens with the largest uniform draws, not the "
          "first C.")
      .cites("sharded_moe.py: top1gating")
      .about("slot_priority");
}

// top1gating(logits, capacity_factor, min_capacity, used_token, noisy_gate_policy, drop_tokens, use_rts).
DeepspeedGatingOutputs top1gating(Frame& f, const DeepspeedTop1Hparams& hp, const Tensor& logits) {
  const int64_t G = f.dim("G"), S = f.dim("S"), E = f.dim("E");
  // noisy_gate_policy is passed as None when not training.
  const bool rsample = hp.noisy_gate_policy == "RSample" && f.train();
  const Tensor* used_token = nullptr;
  if (f.supplied("used_token")) {
    // A float used_token makes mask1 float, and F.one_hot(locations1_s) then raises.
    if (f.config().inputs.at("used_token").dtype != DType::kInt32) {
      fail_input("inputs.used_token.dtype", "float32",
                 "int32, each 0 or 1 (with a float used_token, top1gating's F.one_hot of the float locations "
                 "raises)");
    }
    used_token = &f.inputs().int_input("used_token", {"G", "S"}, {G, S}, 0, 2);
    for (size_t i = 0; i < used_token->i32.size(); ++i) {
      if (used_token->i32[i] != 0 && used_token->i32[i] != 1) {
        fail_input("inputs.used_token" + used_token->named_index(static_cast<int64_t>(i)),
                   std::to_string(used_token->i32[i]), "0 or 1 (moeref models a 0/1 mask of used tokens)");
      }
    }
  }

  // if noisy_gate_policy == 'RSample': logits_w_noise = logits + gumbel_rsample(logits.shape)
  const Tensor* logits_w_noise = nullptr;
  if (rsample) {
    const Tensor& gumbel_uniform = f.inputs().uniform_draw("gumbel_uniform", {"G", "S", "E"}, {G, S, E});
    const Tensor& gumbel =
        f.step("gumbel", {gumbel_uniform}, ops::gumbel_noise(ops::torch_gumbel_uniform(gumbel_uniform)));
    Tensor& noisy = f.float32_step("logits_w_noise", {logits, gumbel}, {"G", "S", "E"});  // [G, S, E]
    for (size_t i = 0; i < noisy.f32.size(); ++i) noisy.f32[i] = logits.f32[i] + gumbel.f32[i];
    logits_w_noise = &noisy;
  }
  // gates = F.softmax(logits, dim=1)
  Tensor& gates = f.float32_step("gates", {logits}, {"G", "S", "E"});  // [G, S, E]
  ops::torch_softmax(logits.f32.data(), gates.f32.data(), G * S, E);
  // capacity = _capacity(gates, torch.tensor(capacity_factor), torch.tensor(min_capacity))
  const ops::DeepspeedCapacity rule = ops::deepspeed_capacity(S, E, hp.capacity_factor_for(f.train()), hp.min_capacity);

  // indices1_s = torch.argmax(logits_w_noise if RSample else gates, dim=1)
  const Tensor& scores = rsample ? *logits_w_noise : gates;
  const Tensor& indices1_s =
      f.step("indices1_s", {&scores},
             with_forced_top_1(ops::argmax_lowest_index(scores), f.forced_decision("indices1_s", {G, S}), E));
  // mask1 = F.one_hot(indices1_s, num_classes=num_experts)
  const Tensor* mask1 = &f.step("mask1", {indices1_s}, ops::one_hot(indices1_s, E, "E"));  // [G, S, E]
  if (used_token != nullptr) {
    // mask1 = einsum("s,se->se", used_token, mask1)
    Tensor& used = f.int32_step("mask1_used", {used_token, mask1}, {"G", "S", "E"});
    for (int64_t i = 0; i < G * S * E; ++i)
      used.i32[static_cast<size_t>(i)] =
          used_token->i32[static_cast<size_t>(i / E)] * mask1->i32[static_cast<size_t>(i)];
    mask1 = &used;
  }
  // exp_counts = torch.sum(mask1, dim=0)
  Tensor counts = Tensor::int32({"E"}, {E});
  for (int64_t i = 0; i < G * S * E; ++i) counts.i32[static_cast<size_t>(i % E)] += mask1->i32[static_cast<size_t>(i)];
  const Tensor& exp_counts = f.step("exp_counts", {mask1}, std::move(counts));  // [E]

  int64_t capacity = rule.expert_capacity;
  if (!hp.drop_tokens) {
    // new_capacity = torch.max(exp_counts) (one process: no all-reduce; tp = 1);
    // capacity = min(new_capacity, torch.tensor(mask1.size(0)))
    int64_t new_capacity = 0;
    for (int32_t count : exp_counts.i32) new_capacity = std::max<int64_t>(new_capacity, count);
    capacity = std::min(new_capacity, S);
  }
  f.derived_dim("C", capacity,
                hp.drop_tokens ? "_capacity(gates, capacity_factor, min_capacity)"
                               : "min(max(exp_counts), S) (drop_tokens false)");
  f.check_routing_size();
  f.capacity({{"expert_capacity", capacity},
              {"rule", hp.drop_tokens ? "deepspeed: max(ceil(f32(S / E) * f32(capacity_factor)), min_capacity)"
                                      : "deepspeed drop_tokens=False: min(max(exp_counts), S)"},
              {"capacity_factor", hp.capacity_factor_for(f.train())},
              {"min_capacity", hp.min_capacity},
              {"num_tokens", S}});

  // me = torch.mean(gates, dim=0); ce = torch.mean(mask1.float(), dim=0); l_aux = torch.sum(me * ce) * num_experts
  const Tensor& me = f.step("me", {gates}, ops::torch_mean_over_s(gates));   // [G, E]
  const Tensor& ce = f.step("ce", {mask1}, ops::torch_mean_over_s(*mask1));  // [G, E]
  const float l_aux =
      f.scalar_step("l_aux", {me, ce}, ops::deepspeed_l_aux(me, ce, ops::DeepspeedLAux::kTop1, 1)).f32[0];

  // mask1_rand = mask1 * uniform(mask1.shape) with use_rts (Uniform(0, 1).rsample is U itself), else mask1.
  const Tensor* rts_uniform =
      hp.use_rts ? &f.inputs().uniform_draw("rts_uniform", {"G", "S", "E"}, {G, S, E}) : nullptr;
  Tensor& mask1_rand = f.float32_step("mask1_rand", {mask1, rts_uniform}, {"G", "S", "E"});  // [G, S, E]
  for (size_t i = 0; i < mask1_rand.f32.size(); ++i) {
    mask1_rand.f32[i] = static_cast<float>(mask1->i32[i]) * (rts_uniform != nullptr ? rts_uniform->f32[i] : 1.0f);
  }
  // assert logits.shape[0] >= min_capacity
  if (S < hp.min_capacity) {
    fail_input("hparams.min_capacity", std::to_string(hp.min_capacity),
               "at most S = " + std::to_string(S) + " (top1gating asserts logits.shape[0] >= min_capacity)");
  }
  if (capacity > S) {
    fail_input("hparams.capacity_factor", std::to_string(hp.capacity_factor_for(f.train())),
               "a capacity C <= S = " + std::to_string(S) + " (C = " + std::to_string(capacity) +
                   ": torch.topk(mask1_rand, k=capacity, dim=0) raises 'selected index k out of range')");
  }
  // top_idx = _top_idx(mask1_rand, capacity): torch.topk(..., dim=0); scattered into a 0/1 mask.
  const Tensor& top_idx = f.step("top_idx", {mask1_rand},
                                 with_forced_keep(ops::torch_topk_over_s_mask(mask1_rand, capacity),
                                                  f.forced_decision("top_idx", {G, S, E})));  // [G, S, E]
  // new_mask1 = mask1 * torch.zeros_like(mask1).scatter_(0, top_idx, 1); mask1 = new_mask1
  Tensor& mask1_capacity = f.int32_step("mask1_capacity", {mask1, top_idx}, {"G", "S", "E"});
  for (size_t i = 0; i < mask1_capacity.i32.size(); ++i) mask1_capacity.i32[i] = mask1->i32[i] * top_idx.i32[i];
  // locations1 = torch.cumsum(mask1, dim=0) - 1: slots in token order among the kept tokens.
  const Tensor& locations1 = f.step("locations1", {mask1_capacity}, ops::torch_cumsum_over_s(mask1_capacity, -1));
  // locations1_s = torch.sum(locations1 * mask1, dim=1)
  const Tensor& locations1_s =
      f.step("locations1_s", {locations1, mask1_capacity}, ops::torch_sum_where(locations1, mask1_capacity));
  // gates = gates * mask1_float
  Tensor& gates_masked = f.float32_step("gates_masked", {gates, mask1_capacity}, {"G", "S", "E"});
  for (size_t i = 0; i < gates_masked.f32.size(); ++i) {
    gates_masked.f32[i] = gates.f32[i] * static_cast<float>(mask1_capacity.i32[i]);
  }
  // locations1_sc = _one_hot_to_float(locations1_s, capacity): F.one_hot raises for num_classes 0.
  if (capacity == 0) {
    fail_input(hp.drop_tokens ? "hparams.capacity_factor" : "inputs.used_token", "a capacity C = 0",
               "C >= 1 (top1gating's F.one_hot(locations1_s, num_classes=0) raises)");
  }
  // For the index form: the kept token's gate, gates1_s = (gates * mask1).sum(dim=1) (the use_tutel branch).
  const Tensor& mask1_flat = f.step("mask1_flat", {mask1_capacity}, ops::sum_over_last(mask1_capacity));
  Tensor& gates1_s = f.float32_step("gates1_s", {gates_masked}, {"G", "S"});
  for (int64_t t = 0; t < G * S; ++t) {
    for (int64_t e = 0; e < E; ++e)
      gates1_s.f32[static_cast<size_t>(t)] += gates_masked.f32[static_cast<size_t>(t * E + e)];
  }
  record_routing_index_form(f, {{&indices1_s, &locations1_s, &mask1_flat, &gates1_s}});
  // combine_weights = einsum("se,sc->sec", gates, locations1_sc); dispatch_mask = combine_weights.bool()
  const Tensor& combine_weights = f.step("combine_weights", {gates_masked, locations1_s},
                                         ops::deepspeed_combine(gates_masked, locations1_s, capacity));
  return deepspeed_gate_outputs(f, l_aux, combine_weights, exp_counts);
}

void deepspeed_top1(Frame& f, const DeepspeedTop1Hparams& hp) {
  deepspeed_moe_layer(f, hp, [&](const DeepspeedGatingInputs& in) { return top1gating(f, hp, *in.logits); });
}

// The decisions a backend may take the other way at a near tie: the argmax
// (over gates, or logits_w_noise under RSample) and the capacity top-k over
// tokens (over mask1_rand: equal draws, or equal ones without RTS).
std::optional<NearTie> deepspeed_top1_near_tie(const NearTieQuery& query, const DeepspeedTop1Hparams& hp) {
  if (query.step == "indices1_s") {
    const bool rsample = hp.noisy_gate_policy == "RSample" && query.train();
    return top_1_near_tie(query, rsample ? "logits_w_noise" : "gates");
  }
  if (query.step == "top_idx") return top_k_selection_along_s_near_tie(query, "mask1_rand");
  return std::nullopt;
}

}  // namespace

VariantSpec deepspeed_top1_variant() {
  return define_variant<DeepspeedTop1Hparams>(
      {"deepspeed_top1",
       "DeepSpeed top-1 gate (TopKGate k=1): random token selection, RSample/Jitter noise, capacity or no drop",
       "microsoft/DeepSpeed deepspeed/moe/sharded_moe.py: top1gating, TopKGate, MOELayer",
       "spec/variants/deepspeed_top1.md"},
      declare_hparams, deepspeed_top1, deepspeed_top1_near_tie);
}

}  // namespace moeref
