// deepspeed_top2: DeepSpeed's top-2 gate (k = 2), literal to the source.
//
// Source: microsoft/DeepSpeed at 38327e0 (38327e07f6cd39b63418f60cedd1651b0be3e7c3),
//   deepspeed/moe/sharded_moe.py: top2gating (the gating function), _capacity,
//   gumbel_rsample, TopKGate.forward, MOELayer.forward (layers/deepspeed_moe_layer.hpp);
//   deepspeed/moe/layer.py: MoE (the defaults).
// Spec: spec/variants/deepspeed_top2.md.
//
// Dims: G = 1 group, S tokens (every token of the call), E experts, C expert
//       capacity, M model dim, H expert hidden dim, N = M, K = 2 ranks.
//
// Each step is one statement (or a few) of top2gating, in its order, under its
// variable name; a reassigned variable gets a suffix naming the stage (logits ->
// logits_noised, mask1 -> mask1_capacity, gates1_s -> gates1_s_normalized).
// Masks, counts and locations are int64 in torch and exact integers, held as int32.

#include <algorithm>
#include <limits>
#include <optional>
#include <string>

#include "moeref/error.hpp"
#include "moeref/frame/define_variant.hpp"
#include "moeref/frame/forced_choice.hpp"
#include "moeref/frame/routing_index_form.hpp"
#include "moeref/layers/deepspeed_moe_layer.hpp"
#include "moeref/layers/torch_tokens.hpp"
#include "moeref/ops/deepspeed_capacity.hpp"
#include "moeref/ops/deepspeed_gating.hpp"
#include "moeref/ops/fairseq_top2.hpp"
#include "moeref/ops/gshard_sampling.hpp"
#include "moeref/ops/one_hot.hpp"
#include "moeref/ops/top1.hpp"
#include "moeref/ops/torch_random.hpp"
#include "moeref/ops/torch_routing.hpp"
#include "moeref/ops/torch_softmax.hpp"

namespace moeref {

namespace {

// TopKGate's arguments for k = 2 (MoE's names and defaults), and top2gating's own.
struct DeepspeedTop2Hparams : DeepspeedGateHparams {
  bool top2_2nd_expert_sampling = true;
};

void declare_hparams(HparamTable<DeepspeedTop2Hparams>& table) {
  using P = DeepspeedTop2Hparams;
  declare_deepspeed_gate_hparams(
      table, {"None", "Jitter", "RSample"},
      "None (Python None); Jitter: the router input times U(0.99, 1.01) when training; RSample is read by "
      "top1gating only and changes nothing here.",
      "True: C = max(ceil(f32(S / E) * f32(2 * capacity_factor)), min_capacity) and choices beyond it dropped; "
      "False: C = max(exp_counts), nothing dropped.");
  table.flag("top2_2nd_expert_sampling", &P::top2_2nd_expert_sampling)
      .defaults_to(true)
      .means("The second expert is the argmax of logits + Gumbel noise, in training AND evaluation.")
      .cites("sharded_moe.py: top2gating")
      .about("second_expert_policy");
}

// top2gating(logits, capacity_factor, min_capacity, drop_tokens, ep_group, top2_2nd_expert_sampling).
DeepspeedGatingOutputs top2gating(Frame& f, const DeepspeedTop2Hparams& hp, const Tensor& logits_in) {
  const int64_t G = f.dim("G"), S = f.dim("S"), E = f.dim("E");
  // gates = F.softmax(logits, dim=1)
  Tensor& gates = f.float32_step("gates", {logits_in}, {"G", "S", "E"});  // [G, S, E]
  ops::torch_softmax(logits_in.f32.data(), gates.f32.data(), G * S, E);
  // indices1_s = torch.argmax(gates, dim=1); mask1 = F.one_hot(indices1_s, num_classes=num_experts)
  const TorchArgmaxChoice first = torch_argmax_choice(f, "indices1_s", "mask1", gates);
  const Tensor* indices1_s = first.index;
  const Tensor* mask1 = first.mask;
  // if top2_2nd_expert_sampling: logits += gumbel_rsample(logits.shape) (in training and evaluation)
  const Tensor* logits = &logits_in;
  if (hp.top2_2nd_expert_sampling) {
    const Tensor& gumbel_uniform = f.inputs().uniform_draw("gumbel_uniform", {"G", "S", "E"}, {G, S, E});
    const Tensor& gumbel =
        f.step("gumbel", {gumbel_uniform}, ops::gumbel_noise(ops::torch_gumbel_uniform(gumbel_uniform)));
    Tensor& noised = f.float32_step("logits_noised", {logits, gumbel}, {"G", "S", "E"});  // [G, S, E]
    for (size_t i = 0; i < noised.f32.size(); ++i) noised.f32[i] = logits->f32[i] + gumbel.f32[i];
    logits = &noised;
  }
  // logits_except1 = logits.masked_fill(mask1.bool(), float("-inf"))
  const Tensor& logits_except1 =
      f.step("logits_except1", {logits, mask1}, ops::masked_fill_neg_inf(*logits, *mask1));  // [G, S, E]
  // indices2_s = torch.argmax(logits_except1, dim=1); mask2 = F.one_hot(indices2_s, num_classes=num_experts)
  const TorchArgmaxChoice second = torch_argmax_choice(f, "indices2_s", "mask2", logits_except1);
  const Tensor* indices2_s = second.index;
  const Tensor* mask2 = second.mask;

  // locations1 = torch.cumsum(mask1, dim=0) - 1; locations2 = torch.cumsum(mask2, dim=0) - 1;
  // locations2 += torch.sum(mask1, dim=0, keepdim=True): second choices queue behind every first
  // choice of their expert, kept or not.
  auto [locations1_v, locations2_v] = ops::top2_locations(*mask1, *mask2, nullptr);
  const Tensor& locations1 = f.step("locations1", {mask1}, std::move(locations1_v));
  const Tensor& locations2 = f.step("locations2", {mask2, mask1}, std::move(locations2_v));
  // me = torch.mean(gates, dim=0); ce = torch.mean(mask1.float(), dim=0);
  // l_aux = torch.mean(me * ce) * num_experts * num_experts
  const Tensor& me = f.step("me", {gates}, ops::torch_mean_over_s(gates));   // [G, E]
  const Tensor& ce = f.step("ce", {mask1}, ops::torch_mean_over_s(*mask1));  // [G, E]
  const float l_aux =
      f.scalar_step("l_aux", {me, ce}, ops::deepspeed_l_aux(me, ce, ops::DeepspeedLAux::kTop2, 2)).f32[0];
  // exp_counts = torch.sum(mask1 + mask2, dim=0)
  Tensor counts = Tensor::int32({"E"}, {E});
  for (int64_t i = 0; i < G * S * E; ++i) {
    counts.i32[static_cast<size_t>(i % E)] += mask1->i32[static_cast<size_t>(i)] + mask2->i32[static_cast<size_t>(i)];
  }
  const Tensor& exp_counts = f.step("exp_counts", {mask1, mask2}, std::move(counts));  // [E]

  int64_t capacity = 0;
  const Tensor* mask1_now = mask1;
  const Tensor* mask2_now = mask2;
  if (hp.drop_tokens) {
    // capacity = _capacity(gates, torch.tensor(capacity_factor * 2), torch.tensor(min_capacity))
    capacity = ops::deepspeed_capacity(S, E, hp.capacity_factor_for(f.train()) * 2.0, hp.min_capacity).expert_capacity;
    // mask1 *= torch.lt(locations1, capacity); mask2 *= torch.lt(locations2, capacity)
    Tensor& kept1 = f.int32_step("mask1_capacity", {mask1, locations1}, {"G", "S", "E"});
    Tensor& kept2 = f.int32_step("mask2_capacity", {mask2, locations2}, {"G", "S", "E"});
    for (size_t i = 0; i < kept1.i32.size(); ++i) {
      kept1.i32[i] = mask1->i32[i] * (locations1.i32[i] < capacity ? 1 : 0);
      kept2.i32[i] = mask2->i32[i] * (locations2.i32[i] < capacity ? 1 : 0);
    }
    mask1_now = &kept1;
    mask2_now = &kept2;
  } else {
    // new_capacity = torch.max(exp_counts) (one process: no all-reduce; tp = 1); capacity = new_capacity
    for (int32_t count : exp_counts.i32) capacity = std::max<int64_t>(capacity, count);
  }
  f.derived_dim(
      "C", capacity,
      hp.drop_tokens ? "_capacity(gates, capacity_factor * 2, min_capacity)" : "max(exp_counts) (drop_tokens false)");
  f.check_routing_size();
  f.capacity({{"expert_capacity", capacity},
              {"rule", hp.drop_tokens ? "deepspeed: max(ceil(f32(S / E) * f32(capacity_factor * 2)), min_capacity)"
                                      : "deepspeed drop_tokens=False: max(exp_counts)"},
              {"capacity_factor", hp.capacity_factor_for(f.train())},
              {"min_capacity", hp.min_capacity},
              {"num_tokens", S}});

  // locations1_s = torch.sum(locations1 * mask1, dim=1); locations2_s likewise
  const Tensor& locations1_s =
      f.step("locations1_s", {locations1, mask1_now}, ops::location_of_mask(locations1, *mask1_now));  // [G, S]
  const Tensor& locations2_s =
      f.step("locations2_s", {locations2, mask2_now}, ops::location_of_mask(locations2, *mask2_now));  // [G, S]
  // gates1_s = einsum("se,se->s", gates, mask1_float); gates2_s likewise: one nonzero term each.
  const Tensor& gates1_s = f.step("gates1_s", {gates, mask1_now}, ops::gate_of_mask(gates, *mask1_now));  // [G, S]
  const Tensor& gates2_s = f.step("gates2_s", {gates, mask2_now}, ops::gate_of_mask(gates, *mask2_now));  // [G, S]
  // denom_s = torch.clamp(gates1_s + gates2_s, min=eps); gates1_s /= denom_s; gates2_s /= denom_s:
  // renormalised after the drops.
  ops::NormalizedGates normalized = ops::normalize_top2_gates(gates1_s, gates2_s);
  const Tensor& denom_s = f.step("denom_s", {gates1_s, gates2_s}, std::move(normalized.denom_s));
  const Tensor& gates1_n = f.step("gates1_s_normalized", {gates1_s, denom_s}, std::move(normalized.gates1_s));
  const Tensor& gates2_n = f.step("gates2_s_normalized", {gates2_s, denom_s}, std::move(normalized.gates2_s));
  // locations1_sc = _one_hot_to_float(locations1_s, capacity): F.one_hot raises for num_classes 0.
  if (capacity == 0) {
    fail_input("hparams.capacity_factor", "a capacity C = 0",
               "C >= 1 (top2gating's F.one_hot(locations1_s, num_classes=0) raises; raise capacity_factor or "
               "min_capacity)");
  }
  const Tensor& mask1_flat = f.step("mask1_flat", {mask1_now}, ops::sum_over_last(*mask1_now));  // [G, S]
  const Tensor& mask2_flat = f.step("mask2_flat", {mask2_now}, ops::sum_over_last(*mask2_now));  // [G, S]
  record_routing_index_form(
      f, {{indices1_s, &locations1_s, &mask1_flat, &gates1_n}, {indices2_s, &locations2_s, &mask2_flat, &gates2_n}});
  // gates1 = einsum("s,se->se", gates1_s, mask1_float); combine1_sec = einsum("se,sc->sec", gates1,
  // locations1_sc); the same for 2; combine_weights = combine1_sec + combine2_sec
  const Tensor& combine =
      f.step("combine_weights", {gates1_n, mask1_now, locations1_s, gates2_n, mask2_now, locations2_s},
             ops::top2_combine(gates1_n, *mask1_now, locations1_s, gates2_n, *mask2_now, locations2_s, capacity));
  // dispatch_mask = combine_weights.bool()
  return deepspeed_gate_outputs(f, l_aux, combine, exp_counts);
}

void deepspeed_top2(Frame& f, const DeepspeedTop2Hparams& hp) {
  deepspeed_moe_layer(f, hp, [&](const DeepspeedGatingInputs& in) { return top2gating(f, hp, *in.logits); });
}

// The decisions a backend may take the other way at a near tie: the two argmaxes.
std::optional<NearTie> deepspeed_top2_near_tie(const NearTieQuery& query, const DeepspeedTop2Hparams&) {
  if (query.step == "indices1_s") return top_1_near_tie(query, "gates");
  if (query.step == "indices2_s") return top_1_near_tie(query, "logits_except1");
  return std::nullopt;
}

}  // namespace

VariantSpec deepspeed_top2_variant() {
  return define_variant<DeepspeedTop2Hparams>(
      {"deepspeed_top2", "DeepSpeed top-2 gate (TopKGate k=2): Gumbel-sampled second expert, renormalised after drops",
       "microsoft/DeepSpeed deepspeed/moe/sharded_moe.py: top2gating, TopKGate, MOELayer",
       "spec/variants/deepspeed_top2.md"},
      declare_hparams, deepspeed_top2, deepspeed_top2_near_tie);
}

}  // namespace moeref
