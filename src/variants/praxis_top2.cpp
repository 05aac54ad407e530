// praxis_top2: praxis's GShard top-2 gating, literal to the source.
//
// Source: google/praxis at feeaff1 (feeaff19915ca9c3de8b372b7427d15c81f0d757),
//   praxis/gshard_utils.py: top2_gating_on_logits (the gating function, the JAX
//     port of lingvo's Top2GatingOnLogits), compute_gating (its only caller),
//     _create_over_capacity_ratio_summary, cum_sum;
//   praxis/layers/transformers.py: TransformerFeedForwardMoe
//     ._dispatch_and_combine_expert_outputs and __call__ (grouping, router
//     einsum, hard-wired gating arguments, experts, combine, padding), in
//     layers/praxis_moe_layer.hpp.
// Spec: spec/variants/praxis_top2.md.
//
// Dims: B batch, L length, G groups, S group size, E experts, C expert capacity,
//       M model dim, H expert hidden dim, N expert output dim (= M in praxis).
//
// Each step is one statement (or a few) of top2_gating_on_logits, in the
// source's order, under the source's variable name. Where the source reassigns
// a variable (mask_1 *= ..., gate_1 /= ...), the trace keeps every version
// under a suffix naming the stage: mask_1 -> mask_1_nonpadding -> mask_1_capacity.
// praxis holds masks, positions and counts in int32 (mask_dtype=jnp.int32, the
// default and what TransformerFeedForwardMoe passes); so does moeref.
// fprop_dtype float32 (the default) or bfloat16: the router einsum in bfloat16 and the combine
// tensor converted to it (spec/bfloat16.md); the gating itself runs in float32. The blocks
// that praxis ported from lingvo unchanged are recorded by
// layers/gshard_top2_gating.hpp.

#include <optional>
#include <string>

#include "moeref/error.hpp"
#include "moeref/frame/define_variant.hpp"
#include "moeref/layers/gshard_top2_gating.hpp"
#include "moeref/layers/praxis_moe_layer.hpp"
#include "moeref/ops/bfloat16.hpp"
#include "moeref/ops/dispatch_tensor.hpp"
#include "moeref/ops/elementwise.hpp"
#include "moeref/ops/gshard_combine.hpp"
#include "moeref/ops/gshard_over_capacity.hpp"
#include "moeref/ops/gshard_position_in_expert.hpp"
#include "moeref/ops/jax_softmax.hpp"
#include "moeref/ops/praxis_cap_logits.hpp"
#include "moeref/ops/praxis_capacity.hpp"
#include "moeref/ops/praxis_dispatch_counts.hpp"

namespace moeref {

namespace {

// TransformerFeedForwardMoe's hyperparameters, and top2_gating_on_logits's own.
struct PraxisTop2Hparams : PraxisLayerHparams, GshardTop2PolicyHparams {
  std::optional<int64_t> expert_capacity_dim;
  std::optional<double> capacity_factor;
  double gating_logit_cap = 0.0;
};

void declare_hparams(HparamTable<PraxisTop2Hparams>& table) {
  using P = PraxisTop2Hparams;
  const char* gating = "gshard_utils.py: top2_gating_on_logits";
  declare_praxis_layer_hparams(table);
  table.optional_integer("expert_capacity_dim", &P::expert_capacity_dim)
      .defaults_to(0)
      .between(0, kMaxHparamExtent)
      .means("C0: the capacity when capacity_factor is falsy, else a lower bound (null means 1); layer default 0.")
      .cites(gating)
      .about("explicit_capacity");
  table.optional_number("capacity_factor", &P::capacity_factor)
      .defaults_to(2.0)
      .at_least(0.0)
      .means(
          "If truthy, C0 is raised to roundup4(int(S * capacity_factor / E)) when below it (layer: "
          "unadjusted_expert_capacity_factor, default 2.0).")
      .cites(gating)
      .known_as({"unadjusted_expert_capacity_factor"})
      .about("capacity_factor");
  declare_gshard_top2_policy_hparams(
      table, gating,
      {"Second expert: all (greedy), sampling (Gumbel sample from the other experts) or random (keep with "
       "probability gate_2 / threshold).",
       "Threshold t of the random policy: keep iff U < gate_2 / max(t, 1e-9); the layer hard-wires 0.0.",
       "True: renormalise gates before capacity (and the policy sees them); False: after, with padding-scaled "
       "densities; the layer hard-wires True."});
  table.number("gating_logit_cap", &P::gating_logit_cap)
      .defaults_to(0.0)
      .at_least(0.0)
      .means("If > 0, logits become cap * tanh(logits / cap) before the softmax.")
      .cites(gating)
      .about("logit_cap");
  table.choice("fprop_dtype", &P::fprop_dtype, {"float32", "bfloat16"})
      .defaults_to("float32")
      .means("The layer's fprop_dtype: bfloat16 runs the router einsum in bfloat16 and converts combine_tensor to it.")
      .cites("gshard_utils.py: top2_gating_on_logits; transformers.py: TransformerFeedForwardMoe; spec/bfloat16.md")
      .about("dtype");
}

// top2_gating_on_logits(paddings, logits, experts_dim, expert_capacity_dim, ...,
// importance): the dispatch and combine tensors, the aux loss and the dispatch counts.
PraxisGatingOutputs top2_gating_on_logits(Frame& f, const PraxisTop2Hparams& hp, const PraxisGatingInputs& in) {
  const Tensor* paddings = in.paddings;
  if (f.supplied("importance") && f.layer_scope()) {
    fail_input("inputs.importance", "supplied with scope \"layer\"",
               "importance only with scope \"gating\" (compute_gating and TransformerFeedForwardMoe never pass it)");
  }
  const Tensor* importance = f.inputs().optional_input("importance", {"G", "S"}, f.extents({"G", "S"}));

  // logits = _cap_logits(logits): cap * jnp.tanh(logits / cap) when gating_logit_cap > 0.
  const Tensor* logits = in.logits;
  if (hp.gating_logit_cap > 0.0) {
    logits =
        &f.step("logits_capped", {logits}, ops::praxis_cap_logits(*logits, static_cast<float>(hp.gating_logit_cap)));
  }
  // raw_gates = jax.nn.softmax(logits, axis=-1)  # along E dim
  Tensor& raw_gates = f.float32_step("raw_gates", {logits}, {"G", "S", "E"});  // [G, S, E]
  ops::jax_softmax(logits->f32.data(), raw_gates.f32.data(), f.dim("G") * f.dim("S"), f.dim("E"));
  // (The capacity rule on capacity_factor and expert_capacity_dim ran with the dims.)

  // index_1 = jnp.argmax(raw_gates, axis=-1); mask_1 = jax.nn.one_hot(index_1, experts_dim, dtype=int32);
  // density_1_proxy = raw_gates; if importance is not None: both *= jnp.equal(importance, 1.0)
  const GshardFirstChoice first = gshard_first_choice(f, raw_gates, importance);
  const Tensor* mask_1 = first.mask_1;                    // [G, S, E]
  const Tensor* density_1_proxy = first.density_1_proxy;  // [G, S, E]
  if (importance == nullptr && paddings != nullptr) {
    // nonpaddings = 1.0 - paddings; mask_1 *= nonpaddings.astype(int32) (truncation toward
    // zero: any padding with f32(1 - p) < 1 removes the first choice); the proxy keeps the
    // fraction; importance = nonpaddings.
    importance = &f.step("nonpaddings", {paddings}, ops::one_minus(*paddings));  // [G, S]
    mask_1 = &f.step("mask_1_nonpadding", {mask_1, importance}, ops::scale_by(*mask_1, *importance));
    density_1_proxy =
        &f.step("density_1_proxy_per_token", {raw_gates, importance}, ops::scale_by(raw_gates, *importance));
  }  // Without either, importance = jnp.ones_like(mask_1[:, :, 0]), recorded nowhere.

  // gate_1 = jnp.einsum('GSE,GSE->GS', raw_gates, mask_1); gates_without_top_1 = raw_gates * (1.0 - mask_1);
  // index_2 = jnp.argmax(noised_logits) under 'sampling' (noise = -jnp.log(-jnp.log(jax.random.uniform(
  // subkey, logits.shape))), the first expert's logit very negative), else jnp.argmax(gates_without_top_1);
  // mask_2 = jax.nn.one_hot(index_2, experts_dim, dtype=int32)
  const GshardSecondChoice second = gshard_second_choice(f, hp, "sampling_uniform", *logits, raw_gates, *mask_1);
  const Tensor* mask_2 = second.mask_2;  // [G, S, E]
  if (paddings != nullptr) {
    // importance_is_nonzero = importance > 0.0; mask_2 *= importance_is_nonzero
    const Tensor importance_is_nonzero = ops::greater_than(*importance, 0.0f);
    mask_2 = &f.step("mask_2_nonpadding", {mask_2, importance}, ops::scale_by(*mask_2, importance_is_nonzero));
  }
  // gate_2 = jnp.einsum('GSE,GSE->GS', gates_without_top_1, mask_2); if legacy_mtf_behavior:
  // denom = gate_1 + gate_2 + 1e-9; gate_1 /= denom; gate_2 /= denom.
  GshardGates gates = gshard_gate_2(f, hp, *second.gate_1, *second.gates_without_top_1, *mask_2);

  // position_in_expert_1 = cum_sum(mask_1, exclusive=True, axis=-2): jnp.cumsum(mask_1) - mask_1,
  // int32, NOT multiplied by mask_1 (rows without a choice hold the running count).
  const Tensor& position_in_expert_1 =
      f.step("position_in_expert_1", {mask_1}, ops::gshard_position_in_expert(*mask_1, nullptr));
  // density_1, density_1_proxy (jnp.mean(..., dtype=float32) / density_denom), aux_loss *= E * E
  const float aux_loss = gshard_aux_loss(f, *mask_1, *density_1_proxy, importance, hp.legacy_mtf_behavior);
  // over_capacity_1 = _create_over_capacity_ratio_summary(mask_1, position_in_expert_1, capacity, ...)
  const ops::GshardOverCapacity over_1 = ops::gshard_over_capacity(*mask_1, position_in_expert_1, f.dim("C"));
  f.scalar_step("over_capacity_1", {mask_1, position_in_expert_1}, over_1.ratio);
  // mask_1 *= jnp.less(position_in_expert_1, expert_capacity_dim); position_in_expert_1 = jnp.einsum(...);
  // mask_1_count = jnp.einsum('GSE->GE', mask_1); mask_1_flat = jnp.sum(mask_1, axis=-1)
  const GshardKept kept_1 = gshard_keep_within_capacity(f, 1, *mask_1, position_in_expert_1);
  // 'random': sampled_2 = jnp.less(jax.random.uniform(subkey, gate_2.shape), gate_2 / max(t, 1e-9));
  // gate_2 *= sampled_2; mask_2 *= sampled_2. gate_2 is the normalised gate when legacy.
  const GshardSecondKept policy = gshard_second_expert_policy(f, hp, "random_uniform", *gates.gate_2, *mask_2);
  // position_in_expert_2 = cum_sum(mask_2, exclusive=True, axis=-2) + jnp.expand_dims(mask_1_count, -2):
  // second choices queue behind every kept first choice of their expert.
  const Tensor& position_in_expert_2 = f.step("position_in_expert_2", {policy.mask_2, kept_1.count},
                                              ops::gshard_position_in_expert(*policy.mask_2, kept_1.count));
  const ops::GshardOverCapacity over_2 = ops::gshard_over_capacity(*policy.mask_2, position_in_expert_2, f.dim("C"));
  f.scalar_step("over_capacity_2", {policy.mask_2, position_in_expert_2}, over_2.ratio);
  // mask_2 *= jnp.less(position_in_expert_2, expert_capacity_dim); position_in_expert_2 = jnp.einsum(...);
  // mask_2_flat = jnp.sum(mask_2, axis=-1)
  const GshardKept kept_2 = gshard_keep_within_capacity(f, 2, *policy.mask_2, position_in_expert_2);

  // gate_1 *= mask_1_flat; gate_2 *= mask_2_flat
  gates = gshard_gates_within_capacity(f, {gates.gate_1, policy.gate_2}, *kept_1.mask_flat, *kept_2.mask_flat);
  if (!hp.legacy_mtf_behavior) {
    // denom = gate_1 + gate_2; denom = jnp.where(denom > 0, denom, jnp.ones_like(denom));
    // gate_1 /= denom; gate_2 /= denom
    const Tensor sum = ops::add(*gates.gate_1, *gates.gate_2);
    gates = gshard_divide_gates(f, gates, f.step("denom", {gates.gate_1, gates.gate_2}, ops::positive_or_one(sum)));
  }

  // combine_tensor = first_part_of_combine_tensor + second_part_of_combine_tensor
  PraxisGatingOutputs out;
  out.combine_tensor = &gshard_combine_tensor(f, {first.index, kept_1.position_flat, kept_1.mask_flat, gates.gate_1},
                                              {second.index, kept_2.position_flat, kept_2.mask_flat, gates.gate_2});
  // dispatch_count_tensor = jnp.sum(combine_tensor.astype(bool).astype(jnp.int32), [-2, -1])
  const Tensor& dispatch_count_tensor =
      f.step("dispatch_count_tensor", {out.combine_tensor}, ops::praxis_dispatch_count(*out.combine_tensor));
  // dispatch_k = jnp.sum(dispatch_count_tensor == k); with paddings, dispatch_0 -= jnp.sum(paddings.astype(int32))
  const Tensor* paddings_count =
      paddings ? &f.int32_scalar_step("paddings_count", {paddings}, ops::praxis_paddings_count(*paddings)) : nullptr;
  const int32_t dispatch_0 = ops::praxis_tokens_dispatched(dispatch_count_tensor, 0);
  out.dispatch_counts = {&f.int32_scalar_step("dispatch_0", {dispatch_count_tensor, paddings_count},
                                              paddings_count ? dispatch_0 - paddings_count->i32[0] : dispatch_0),
                         &f.int32_scalar_step("dispatch_1", {dispatch_count_tensor},
                                              ops::praxis_tokens_dispatched(dispatch_count_tensor, 1)),
                         &f.int32_scalar_step("dispatch_2", {dispatch_count_tensor},
                                              ops::praxis_tokens_dispatched(dispatch_count_tensor, 2))};
  // dispatch_tensor = combine_tensor.astype(bool).astype(fprop_dtype)
  out.dispatch_tensor =
      &f.step("dispatch_tensor", {out.combine_tensor}, ops::dispatch_from_combine(*out.combine_tensor));
  if (hp.fprop_dtype == "bfloat16") {
    // combine_tensor = combine_tensor.astype(fprop_dtype): rounded to nearest even.
    Tensor rounded = *out.combine_tensor;
    for (float& v : rounded.f32) v = ops::round_to_bfloat16(v);
    out.combine_tensor = &f.step("combine_tensor_fprop_dtype", {out.combine_tensor}, std::move(rounded));
  }
  out.aux_loss = aux_loss;
  return out;
}

void praxis_top2(Frame& f, const PraxisTop2Hparams& hp) {
  resolve_praxis_layer_dims(f, hp);
  // top2_gating_on_logits: group_size_dim = logits.shape[1], then the capacity rule.
  const ops::PraxisCapacity capacity =
      ops::praxis_top2_expert_capacity(f.dim("S"), hp.capacity_factor, hp.expert_capacity_dim, f.dim("E"));
  f.derived_dim("C", capacity.expert_capacity, "the top2_gating_on_logits capacity rule");
  f.check_routing_size();
  std::string rule = "given: expert_capacity_dim (capacity_factor is null or 0)";
  if (capacity.used_capacity_factor) {
    rule = capacity.raised
               ? "praxis: expert_capacity_dim < int(S * capacity_factor / E), raised to ((auto + 3) // 4) * 4"
               : "praxis: expert_capacity_dim (None -> 1) >= int(S * capacity_factor / E), kept";
  }
  nlohmann::json record = {
      {"expert_capacity", f.dim("C")},
      {"rule", rule},
      {"capacity_factor", hp.capacity_factor ? nlohmann::json(*hp.capacity_factor) : nullptr},
      {"expert_capacity_dim", hp.expert_capacity_dim ? nlohmann::json(*hp.expert_capacity_dim) : nullptr},
      {"group_size", f.dim("S")},
      {"num_groups", f.dim("G")}};
  if (capacity.used_capacity_factor) record["auto_expert_capacity"] = capacity.auto_expert_capacity;
  f.capacity(record);
  praxis_moe_layer(f, hp, [&](const PraxisGatingInputs& in) { return top2_gating_on_logits(f, hp, in); });
}

// The decisions of top2_gating_on_logits that a backend can legitimately make the
// other way when the deciding values are within float tolerance: the two argmax
// choices and the random policy's comparison.
std::optional<NearTie> praxis_top2_near_tie(const NearTieQuery& query, const PraxisTop2Hparams& hp) {
  return gshard_top2_near_tie(query, hp, "random_uniform");
}

}  // namespace

VariantSpec praxis_top2_variant() {
  return define_variant<PraxisTop2Hparams>(
      {"praxis_top2", "praxis top-2 gating (JAX port of lingvo Top2GatingOnLogits) in TransformerFeedForwardMoe",
       "google/praxis praxis/gshard_utils.py: top2_gating_on_logits, compute_gating; "
       "praxis/layers/transformers.py: TransformerFeedForwardMoe",
       "spec/variants/praxis_top2.md"},
      declare_hparams, praxis_top2, praxis_top2_near_tie);
}

}  // namespace moeref
