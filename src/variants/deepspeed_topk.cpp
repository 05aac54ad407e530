// deepspeed_topk: DeepSpeed's top-k gate (TopKGate with k > 2), literal to the source.
//
// Source: microsoft/DeepSpeed at 38327e0 (38327e07f6cd39b63418f60cedd1651b0be3e7c3),
//   deepspeed/moe/sharded_moe.py: topkgating (the gating function), _capacity,
//   TopKGate.forward, MOELayer.forward (layers/deepspeed_moe_layer.hpp).
// Spec: spec/variants/deepspeed_topk.md.
//
// Dims: G = 1 group, S tokens (every token of the call), E experts, C expert
//       capacity, K = k ranks, M model dim, H expert hidden dim, N = M.
//
// Each step is one statement (or a few) of topkgating, in its order, under its
// variable name; a reassigned variable gets a suffix naming the stage (mask ->
// mask_capacity, gates_masked -> gates_masked_normalized). The token's top-k
// selection is recorded as the 0/1 `mask` before `top_idx` (its experts in
// torch.topk's order): the set is the decision, and torch leaves the order of
// equal logits unspecified.

#include <optional>
#include <string>

#include "moeref/error.hpp"
#include "moeref/frame/define_variant.hpp"
#include "moeref/frame/forced_choice.hpp"
#include "moeref/layers/deepspeed_moe_layer.hpp"
#include "moeref/layers/torch_tokens.hpp"
#include "moeref/ops/deepspeed_capacity.hpp"
#include "moeref/ops/deepspeed_gating.hpp"
#include "moeref/ops/torch_routing.hpp"
#include "moeref/ops/torch_softmax.hpp"

namespace moeref {

namespace {

// TopKGate's arguments for k > 2 (MoE's names and defaults), and topkgating's own.
struct DeepspeedTopkHparams : DeepspeedGateHparams {
  std::optional<int64_t> k;
  std::string drop_policy;
};

void declare_hparams(HparamTable<DeepspeedTopkHparams>& table) {
  using P = DeepspeedTopkHparams;
  const char* gating = "sharded_moe.py: topkgating";
  table.required_integer("k", &P::k)
      .between(1, kMaxHparamExtent)
      .means("Experts per token (topkgating's k has no default; TopKGate sends k > 2 here).")
      .cites(gating)
      .about("top_k");
  declare_deepspeed_gate_hparams(
      table, {"None", "Jitter", "RSample"},
      "None (Python None); Jitter: the router input times U(0.99, 1.01) when training; RSample is read by "
      "top1gating only and changes nothing here.",
      "Must be true: with False, topkgating reads `locations` before assigning it and raises (DeepSpeed PR #7138).");
  table.choice("drop_policy", &P::drop_policy, {"probs", "position"})
      .defaults_to("probs")
      .means(
          "probs: each expert keeps the C chosen entries with the largest LOGITS (unchosen entries count as 0); "
          "position: the first C in token order.")
      .cites(gating)
      .about("slot_priority");
}

// topkgating(logits, k, capacity_factor, min_capacity, drop_tokens, ep_group, drop_policy).
DeepspeedGatingOutputs topkgating(Frame& f, const DeepspeedTopkHparams& hp, const Tensor& logits) {
  const int64_t G = f.dim("G"), S = f.dim("S"), E = f.dim("E");
  if (!hp.k) fail_input("hparams.k", "unset", "an integer in [1, E] (topkgating's k has no default)");
  const int64_t k = *hp.k;
  if (k > E) {
    fail_input("hparams.k", std::to_string(k),
               "at most E = " + std::to_string(E) +
                   " (torch.topk(logits, k=k, dim=1) raises 'selected index k out "
                   "of range')");
  }
  if (!hp.drop_tokens) {
    fail_input("hparams.drop_tokens", "false",
               "true (topkgating uses `locations`, assigned only when drop_tokens is True: it raises "
               "UnboundLocalError, DeepSpeed PR #7138)");
  }
  // top_gate, top_idx = torch.topk(logits, k=k, dim=1); mask = torch.zeros_like(gates,
  // dtype=torch.bool).scatter_(1, top_idx, 1): the selection, as the checker forces it.
  const Tensor& mask = f.step(
      "mask", {logits},
      with_forced_keep(ops::torch_topk_over_e_mask(logits, k), f.forced_decision("mask", {G, S, E})));    // [G, S, E]
  const Tensor& top_idx = f.step("top_idx", {mask, logits}, ops::topk_indices_of_mask(mask, logits, k));  // [G, S, K]
  // gates = F.softmax(logits, dim=1)
  Tensor& gates = f.float32_step("gates", {logits}, {"G", "S", "E"});  // [G, S, E]
  ops::torch_softmax(logits.f32.data(), gates.f32.data(), G * S, E);
  // topk_masked_gates = torch.zeros_like(logits).scatter(1, top_idx, top_gate): the logit where chosen, else 0.
  Tensor& topk_masked_gates = f.float32_step("topk_masked_gates", {logits, mask}, {"G", "S", "E"});
  for (size_t i = 0; i < topk_masked_gates.f32.size(); ++i) {
    topk_masked_gates.f32[i] = mask.i32[i] != 0 ? logits.f32[i] : 0.0f;
  }
  // exp_counts = torch.sum(mask, dim=0)
  Tensor counts = Tensor::int32({"E"}, {E});
  for (int64_t i = 0; i < G * S * E; ++i) counts.i32[static_cast<size_t>(i % E)] += mask.i32[static_cast<size_t>(i)];
  const Tensor& exp_counts = f.step("exp_counts", {mask}, std::move(counts));  // [E]
  // me = torch.mean(gates, dim=0); ce = torch.mean(mask.float(), dim=0);
  // l_aux = torch.mean(me * ce) * num_experts * num_experts / k: every choice counts in ce.
  const Tensor& me = f.step("me", {gates}, ops::torch_mean_over_s(gates));  // [G, E]
  const Tensor& ce = f.step("ce", {mask}, ops::torch_mean_over_s(mask));    // [G, E]
  const float l_aux =
      f.scalar_step("l_aux", {me, ce}, ops::deepspeed_l_aux(me, ce, ops::DeepspeedLAux::kTopK, k)).f32[0];

  // capacity = _capacity(gates, torch.tensor(capacity_factor * k), torch.tensor(min_capacity))
  const int64_t capacity =
      ops::deepspeed_capacity(S, E, hp.capacity_factor_for(f.train()) * static_cast<double>(k), hp.min_capacity)
          .expert_capacity;
  f.derived_dim("C", capacity, "_capacity(gates, capacity_factor * k, min_capacity)");
  f.check_routing_size();
  f.capacity({{"expert_capacity", capacity},
              {"rule", "deepspeed: max(ceil(f32(S / E) * f32(capacity_factor * k)), min_capacity)"},
              {"capacity_factor", hp.capacity_factor_for(f.train())},
              {"min_capacity", hp.min_capacity},
              {"k", k},
              {"num_tokens", S}});
  const Tensor* mask_capacity = nullptr;
  const Tensor* locations = nullptr;
  if (hp.drop_policy == "probs") {
    if (capacity > S) {
      fail_input("hparams.capacity_factor", std::to_string(hp.capacity_factor_for(f.train())),
                 "a capacity C <= S = " + std::to_string(S) + " (C = " + std::to_string(capacity) +
                     ": torch.topk(topk_masked_gates, k=capacity, dim=0) raises 'selected index k out of range')");
    }
    // capacity_probs, capacity_indices = torch.topk(topk_masked_gates, k=capacity, dim=0, sorted=False);
    // capacity_mask = torch.zeros_like(logits).scatter(0, capacity_indices, 1)
    const Tensor& capacity_mask = f.step("capacity_mask", {topk_masked_gates},
                                         with_forced_keep(ops::torch_topk_over_s_mask(topk_masked_gates, capacity),
                                                          f.forced_decision("capacity_mask", {G, S, E})));
    // mask = torch.logical_and(mask, capacity_mask); locations = torch.cumsum(mask, dim=0) - 1
    Tensor& kept = f.int32_step("mask_capacity", {mask, capacity_mask}, {"G", "S", "E"});
    for (size_t i = 0; i < kept.i32.size(); ++i) kept.i32[i] = mask.i32[i] != 0 && capacity_mask.i32[i] != 0 ? 1 : 0;
    mask_capacity = &kept;
    locations = &f.step("locations", {kept}, ops::torch_cumsum_over_s(kept, -1));
  } else {
    // locations = torch.cumsum(mask, dim=0) - 1: every rank merged in token order; mask *= torch.lt(locations,
    // capacity)
    locations = &f.step("locations", {mask}, ops::torch_cumsum_over_s(mask, -1));
    Tensor& kept = f.int32_step("mask_capacity", {mask, locations}, {"G", "S", "E"});
    for (size_t i = 0; i < kept.i32.size(); ++i) kept.i32[i] = mask.i32[i] * (locations->i32[i] < capacity ? 1 : 0);
    mask_capacity = &kept;
  }

  // gates_masked = gates * mask; gates_s = torch.sum(gates_masked, dim=-1, keepdim=True);
  // denom_s = torch.clamp(gates_s, min=eps); gates_masked = gates_masked / denom_s
  Tensor& gates_masked = f.float32_step("gates_masked", {gates, mask_capacity}, {"G", "S", "E"});
  for (size_t i = 0; i < gates_masked.f32.size(); ++i) {
    gates_masked.f32[i] = gates.f32[i] * static_cast<float>(mask_capacity->i32[i]);
  }
  Tensor& denom_s = f.float32_step("denom_s", {gates_masked}, {"G", "S"});  // [G, S]
  for (int64_t t = 0; t < G * S; ++t) {
    double sum = 0.0;
    for (int64_t e = 0; e < E; ++e) sum += static_cast<double>(gates_masked.f32[static_cast<size_t>(t * E + e)]);
    denom_s.f32[static_cast<size_t>(t)] = ops::torch_clamp_eps(static_cast<float>(sum));
  }
  Tensor& normalized = f.float32_step("gates_masked_normalized", {gates_masked, denom_s}, {"G", "S", "E"});
  for (int64_t i = 0; i < G * S * E; ++i) {
    normalized.f32[static_cast<size_t>(i)] =
        gates_masked.f32[static_cast<size_t>(i)] / denom_s.f32[static_cast<size_t>(i / E)];
  }
  // locations_sc = _one_hot_to_float((locations * mask), capacity): F.one_hot raises for num_classes 0.
  if (capacity == 0) {
    fail_input("hparams.capacity_factor", "a capacity C = 0",
               "C >= 1 (topkgating's F.one_hot(locations * mask, num_classes=0) raises; raise capacity_factor or "
               "min_capacity)");
  }
  record_topk_index_form(f, top_idx, *mask_capacity, *locations, normalized);
  // combine_weights = torch.einsum("se,sec->sec", gates_masked, locations_sc); dispatch_mask = combine_weights.bool()
  Tensor& combine = f.float32_step("combine_weights", {normalized, locations, mask_capacity}, {"G", "S", "E", "C"});
  for (int64_t i = 0; i < G * S * E; ++i) {
    const int32_t slot = locations->i32[static_cast<size_t>(i)] * mask_capacity->i32[static_cast<size_t>(i)];
    for (int64_t c = 0; c < capacity; ++c) {
      combine.f32[static_cast<size_t>(i * capacity + c)] =
          normalized.f32[static_cast<size_t>(i)] * (c == slot ? 1.0f : 0.0f);
    }
  }
  // dispatch_mask = combine_weights.bool()
  return deepspeed_gate_outputs(f, l_aux, combine, exp_counts);
}

void deepspeed_topk(Frame& f, const DeepspeedTopkHparams& hp) {
  deepspeed_moe_layer(f, hp, [&](const DeepspeedGatingInputs& in) { return topkgating(f, hp, *in.logits); });
}

// The decisions a backend may take the other way at a near tie: each token's
// top-k over the logits, and under 'probs' each expert's capacity top-k over
// the tokens' masked logits.
std::optional<NearTie> deepspeed_topk_near_tie(const NearTieQuery& query, const DeepspeedTopkHparams&) {
  if (query.step == "mask") return top_k_selection_near_tie(query, "logits");
  if (query.step == "capacity_mask") return top_k_selection_along_s_near_tie(query, "topk_masked_gates");
  return std::nullopt;
}

}  // namespace

VariantSpec deepspeed_topk_variant() {
  return define_variant<DeepspeedTopkHparams>(
      {"deepspeed_topk",
       "DeepSpeed top-k gate (topkgating): 'probs' or 'position' drop policy, renormalised after drops",
       "microsoft/DeepSpeed deepspeed/moe/sharded_moe.py: topkgating, TopKGate, MOELayer",
       "spec/variants/deepspeed_topk.md"},
      declare_hparams, deepspeed_topk, deepspeed_topk_near_tie);
}

}  // namespace moeref
