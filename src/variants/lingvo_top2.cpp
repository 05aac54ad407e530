// lingvo_top2: lingvo's GShard top-2 gating, literal to the source.
//
// Source: tensorflow/lingvo, lingvo/core/gshard_layers.py at e0be5dc4ce9b
//   (2025-08-20): ComputeGating (router logits, local_dispatch) and
//   Top2GatingOnLogits (the gating function). The expert half of the layer is
//   moeref's foundation layer (frame/mtf_expert_layer.hpp), which computes the
//   same einsums as lingvo's FeedForwardNetworksApplyGating for a bias-free ReLU
//   FFN. Spec: spec/variants/lingvo_top2.md.
//
// Dims: G groups, S group size, E experts, C expert capacity, M model dim,
//       H expert hidden dim, N expert output dim (N = M in lingvo).
//
// Each step below is one statement (or a few) of Top2GatingOnLogits, in the
// source's order, under the source's variable name. Where the source reassigns
// a variable (mask_1 *= ..., gate_1 /= ...), the trace keeps every version under
// a suffix naming the stage: mask_1 -> mask_1_nonpadded -> mask_1_capacity.
// lingvo holds masks and positions in mask_dtype (float32 here); their values
// are exact integers, so moeref stores them as int32. The blocks that praxis's
// port writes alike are recorded by layers/gshard_top2_gating.hpp.
//
// Arithmetic is TensorFlow's CPU kernels': tf.nn.softmax multiplies by the
// reciprocal of the sum, `/` is a true float32 division, reduce_mean is
// sum / f32(count) (spec page, "Arithmetic").

#include <cmath>
#include <optional>
#include <string>
#include <vector>

#include "moeref/error.hpp"
#include "moeref/frame/define_variant.hpp"
#include "moeref/frame/forced_choice.hpp"
#include "moeref/json_number.hpp"
#include "moeref/layers/grouped_tokens.hpp"
#include "moeref/layers/gshard_top2_gating.hpp"
#include "moeref/ops/dispatch_tensor.hpp"
#include "moeref/ops/elementwise.hpp"
#include "moeref/ops/gshard_combine.hpp"
#include "moeref/ops/gshard_over_capacity.hpp"
#include "moeref/ops/gshard_position_in_expert.hpp"
#include "moeref/ops/lingvo_capacity.hpp"
#include "moeref/ops/lingvo_expert_padding.hpp"
#include "moeref/ops/mtf_activations.hpp"
#include "moeref/ops/router.hpp"
#include "moeref/ops/tf_softmax.hpp"
#include "moeref/ops/top1.hpp"

namespace moeref {

namespace {

// Top2GatingOnLogits's arguments, ComputeGating's local_dispatch and the
// expert activation.
struct LingvoTop2Hparams : GshardTop2PolicyHparams {
  int64_t expert_capacity_dim = 0;
  std::optional<double> capacity_factor;
  std::optional<std::vector<int64_t>> expert_padding_idx;
  bool local_dispatch = true;
  std::vector<std::string> activation;

  bool expert_padding() const { return expert_padding_idx && !expert_padding_idx->empty(); }
};

void declare_hparams(HparamTable<LingvoTop2Hparams>& table) {
  using P = LingvoTop2Hparams;
  const char* gating = "gshard_layers.py: Top2GatingOnLogits";
  table.integer("expert_capacity_dim", &P::expert_capacity_dim)
      .defaults_to(4)
      .between(0, kMaxHparamExtent)
      .means(
          "Capacity C per expert and group; raised by capacity_factor when smaller (no source default; moeref uses "
          "4).")
      .cites(gating)
      .known_as({"c_dim"})
      .about("explicit_capacity");
  table.optional_number("capacity_factor", &P::capacity_factor)
      .between(0.0, kMaxHparamExtent)
      .means(
          "If > 0: auto = int(S * capacity_factor / E) (0 -> 4); when expert_capacity_dim < auto, C = auto rounded "
          "up to a multiple of 4.")
      .cites(gating)
      .about("capacity_factor");
  declare_gshard_top2_policy_hparams(
      table, gating,
      {"all: greedy second expert; sampling: Gumbel-max draw without the first expert; random: keep with p = gate_2 "
       "/ threshold.",
       "Threshold t of the random policy: keep the second expert iff U < gate_2 / max(t, 1e-9).",
       "true: renormalize gates before capacity and policy (with 1e-9); false: after, without epsilon, and "
       "padding-aware aux loss."});
  table.optional_integer_list("expert_padding_idx", &P::expert_padding_idx)
      .between(-kMaxHparamExtent, kMaxHparamExtent - 1)
      .means("Experts (numpy indices into E) whose logits are replaced by -0.7 * float32 max before the softmax.")
      .cites(gating)
      .about("masked_experts");
  table.flag("local_dispatch", &P::local_dispatch)
      .defaults_to(true)
      .means(
          "ComputeGating: false routes all G*S tokens as one group (C from G*S), then reshapes dispatch/combine "
          "back.")
      .cites("gshard_layers.py: ComputeGating")
      .about("grouping");
  table.choice_list("activation", &P::activation, ops::activation_names())
      .defaults_to("relu")
      .means("Expert activation of the foundation expert layer (lingvo's default moe_activation is RELU).")
      .cites("gshard_layers.py: FeedForwardNetworksApplyGating")
      .known_as({"moe_activation", "activation_name"})
      .about("activation");
}

// _CreateOverCapacityRatioSummary(mask, position_in_expert, capacity, name):
// lingvo sums the over-capacity count over every group, then its ratio.
void over_capacity_summary(Frame& f, const std::string& name, const Tensor& mask, const Tensor& position_in_expert) {
  const ops::GshardOverCapacity over = ops::gshard_over_capacity(mask, position_in_expert, f.dim("C"));
  const Tensor& over_capacity = f.int32_scalar_step(name, {mask, position_in_expert}, over.count);
  f.scalar_step(name + "_ratio", {over_capacity, mask}, over.ratio);
}

struct Top2Gating {
  const Tensor* combine_tensor = nullptr;   // [G, S, E, C] float32
  const Tensor* dispatch_tensor = nullptr;  // [G, S, E, C] int32
  float aux_loss = 0.0f;
};

// Top2GatingOnLogits(inputs, paddings, logits, ..., importance): logits
// [G, S, E] and paddings (0/1, or null) as the gating function sees them.
Top2Gating top2_gating_on_logits(Frame& f, const LingvoTop2Hparams& hp, const Tensor* logits, const Tensor* paddings,
                                 bool direct_call) {
  if (f.supplied("importance") && !direct_call) {
    fail_input("inputs.importance", "supplied",
               "only with scope \"gating\" and supplied logits (a direct Top2GatingOnLogits call): "
               "ComputeGating always passes importance=None");
  }
  const Tensor* importance = f.inputs().optional_input("importance", {"G", "S"}, f.extents({"G", "S"}));

  // if expert_padding_idx: logits = tf.where(epad_mask > 0, very_negative_logits, logits)
  if (hp.expert_padding()) {
    logits =
        &f.step("logits_expert_padded", {logits}, ops::lingvo_expert_padded_logits(*logits, *hp.expert_padding_idx));
  }
  // raw_gates = tf.nn.softmax(logits)  # along E dim
  Tensor& raw_gates = f.float32_step("raw_gates", {logits}, {"G", "S", "E"});  // [G, S, E]
  ops::tf_softmax(logits->f32.data(), raw_gates.f32.data(), raw_gates.num_elements() / f.dim("E"), f.dim("E"));
  // (The capacity rule on expert_capacity_dim and capacity_factor ran with the dims.)

  // index_1 = tf.math.argmax(raw_gates, axis=-1); mask_1 = tf.one_hot(index_1, experts_dim);
  // density_1_proxy = raw_gates; if importance is not None: both *= tf.equal(importance, 1.0)
  const GshardFirstChoice first = gshard_first_choice(f, raw_gates, importance);
  const Tensor* mask_1 = first.mask_1;                    // [G, S, E]
  const Tensor* density_1_proxy = first.density_1_proxy;  // [G, S, E]
  if (importance == nullptr) {
    // importance = tf.ones_like(mask_1[:, :, 0]); if paddings is not None:
    // nonpaddings = 1.0 - paddings; mask_1 *= nonpaddings; density_1_proxy *=
    // nonpaddings; importance = nonpaddings. Paddings are 0 or 1: the mask stays 0/1.
    Tensor nonpaddings = Tensor::float32({"G", "S"}, f.extents({"G", "S"}));  // [G, S]
    for (size_t t = 0; t < nonpaddings.f32.size(); ++t) nonpaddings.f32[t] = paddings ? 1.0f - paddings->f32[t] : 1.0f;
    if (paddings != nullptr) {
      mask_1 = &f.step("mask_1_nonpadded", {mask_1, paddings}, ops::scale_by(*mask_1, nonpaddings));
      density_1_proxy =
          &f.step("density_1_proxy_per_token", {raw_gates, paddings}, ops::scale_by(raw_gates, nonpaddings));
    }
    importance = &f.step("importance", {paddings ? paddings : first.mask_1}, nonpaddings);  // [G, S]
  }

  // gate_1 = einsum('GSE,GSE->GS', raw_gates, mask_1); gates_without_top_1 = raw_gates * (1.0 - mask_1);
  // index_2 = argmax(noised_logits) under 'sampling' (noise = -log(-log(tf.random.uniform(logits.shape))),
  // the first expert's logit very negative), else argmax(gates_without_top_1); mask_2 = tf.one_hot(index_2, E)
  const GshardSecondChoice second = gshard_second_choice(f, hp, "noise_uniform", *logits, raw_gates, *mask_1);
  const Tensor* mask_2 = second.mask_2;  // [G, S, E]
  if (paddings != nullptr) {
    // mask_2 *= tf.greater(importance, 0.0), only when paddings is not None.
    mask_2 =
        &f.step("mask_2_important", {mask_2, importance}, ops::scale_by(*mask_2, ops::greater_than(*importance, 0.0f)));
  }
  // gate_2 = einsum('GSE,GSE->GS', gates_without_top_1, mask_2); if legacy_mtf_behavior:
  // denom = gate_1 + gate_2 + 1e-9; gate_1 /= denom; gate_2 /= denom.
  GshardGates gates = gshard_gate_2(f, hp, *second.gate_1, *second.gates_without_top_1, *mask_2);

  // position_in_expert_1 = tf.cumsum(mask_1, exclusive=True, axis=-2): not multiplied by mask_1.
  const Tensor& position_in_expert_1 =
      f.step("position_in_expert_1", {mask_1}, ops::gshard_position_in_expert(*mask_1, nullptr));
  // density_1, density_1_proxy (over density_denom when not legacy), aux_loss *= experts_dim * experts_dim
  const float aux_loss = gshard_aux_loss(f, *mask_1, *density_1_proxy, importance, hp.legacy_mtf_behavior);
  over_capacity_summary(f, "over_capacity_1", *mask_1, position_in_expert_1);
  // mask_1 *= tf.less(position_in_expert_1, capacity); position_in_expert_1 = einsum(...);
  // mask_1_count = einsum('GSE->GE', mask_1); mask_1_flat = einsum('GSE->GS', mask_1)
  const GshardKept kept_1 = gshard_keep_within_capacity(f, 1, *mask_1, position_in_expert_1);
  // 'random': sampled_2 = tf.less(tf.random.uniform(gate_2.shape), gate_2 / max(second_expert_threshold,
  // 1e-9)); gate_2 *= sampled_2; mask_2 *= sampled_2. gate_2 is the normalised gate when legacy.
  const GshardSecondKept policy = gshard_second_expert_policy(f, hp, "second_policy_uniform", *gates.gate_2, *mask_2);
  // position_in_expert_2 = tf.cumsum(mask_2, exclusive=True, axis=-2) + tf.expand_dims(mask_1_count, -2)
  const Tensor& position_in_expert_2 = f.step("position_in_expert_2", {policy.mask_2, kept_1.count},
                                              ops::gshard_position_in_expert(*policy.mask_2, kept_1.count));
  over_capacity_summary(f, "over_capacity_2", *policy.mask_2, position_in_expert_2);
  // mask_2 *= tf.less(position_in_expert_2, capacity); position_in_expert_2 = einsum(...);
  // mask_2_flat = tf.reduce_sum(mask_2, axis=-1)
  const GshardKept kept_2 = gshard_keep_within_capacity(f, 2, *policy.mask_2, position_in_expert_2);

  // gate_1 *= mask_1_flat; gate_2 *= mask_2_flat
  gates = gshard_gates_within_capacity(f, {gates.gate_1, policy.gate_2}, *kept_1.mask_flat, *kept_2.mask_flat);
  if (!hp.legacy_mtf_behavior) {
    // denom = gate_1 + gate_2; denom = tf.where(denom > 0, denom, tf.ones_like(denom));
    // gate_1 /= denom; gate_2 /= denom. No epsilon.
    const Tensor& denom = f.step("denom", {gates.gate_1, gates.gate_2}, ops::add(*gates.gate_1, *gates.gate_2));
    gates = gshard_divide_gates(f, gates, f.step("denom_safe", {denom}, ops::positive_or_one(denom)));
  }

  // combine_tensor = first_part_of_combine_tensor + second_part_of_combine_tensor
  const Tensor& combine_tensor =
      gshard_combine_tensor(f, {first.index, kept_1.position_flat, kept_1.mask_flat, gates.gate_1},
                            {second.index, kept_2.position_flat, kept_2.mask_flat, gates.gate_2});
  // dispatch_tensor = tf.cast(tf.cast(combine_tensor, tf.bool), fprop_dtype)
  return {&combine_tensor, &f.step("dispatch_tensor", {combine_tensor}, ops::dispatch_from_combine(combine_tensor)),
          aux_loss};
}

// ComputeGating (gating_func='top_2'), then FeedForwardNetworksApplyGating.
void lingvo_top2(Frame& f, const LingvoTop2Hparams& hp) {
  // ---- Dims ------------------------------------------------------------------------
  const bool logits_supplied = f.supplied("logits");
  resolve_grouped_dims(f, !logits_supplied, "no B or L: lingvo_top2 takes tokens already grouped as [G, S, ...]");
  const int64_t G = f.dim("G"), S = f.dim("S"), E = f.dim("E");
  // Top2GatingOnLogits called directly on supplied logits (scope "gating"), as
  // opposed to through ComputeGating (logits from x, or scope "layer").
  const bool direct_call = !f.layer_scope() && logits_supplied;
  if (direct_call && !hp.local_dispatch) {
    fail_input("hparams.local_dispatch", "false",
               "true when logits are supplied with scope \"gating\": that is a direct Top2GatingOnLogits call, "
               "which has no local_dispatch (supply x and router_weights, or use scope \"layer\", for ComputeGating)");
  }
  // if not local_dispatch: inputs = tf.reshape(inputs, [1, G*S, M]). Top2GatingOnLogits
  // sees one group of every token; its steps take these extents.
  const int64_t gating_groups = hp.local_dispatch ? G : 1, gating_group_size = hp.local_dispatch ? S : G * S;
  f.set_step_extent("G", gating_groups);
  f.set_step_extent("S", gating_group_size);
  // Top2GatingOnLogits: group_size_dim = int(logits.shape[1]), then the capacity rule.
  const ops::LingvoCapacity capacity =
      ops::lingvo_expert_capacity(hp.expert_capacity_dim, hp.capacity_factor, gating_group_size, E);
  f.derived_dim("C", capacity.expert_capacity, "the lingvo capacity rule on expert_capacity_dim and capacity_factor");
  f.check_routing_size();
  std::string rule = "lingvo: capacity_factor unset or <= 0, so C = expert_capacity_dim";
  if (capacity.has_capacity_factor) {
    rule = capacity.raised ? "lingvo: auto = int(S * capacity_factor / E), 0 -> 4; expert_capacity_dim < auto, so "
                             "C = auto rounded up to a multiple of 4"
                           : "lingvo: auto = int(S * capacity_factor / E), 0 -> 4; expert_capacity_dim >= auto, so "
                             "C = expert_capacity_dim (not rounded)";
  }
  f.capacity({{"expert_capacity", f.dim("C")},
              {"rule", rule},
              {"expert_capacity_dim", hp.expert_capacity_dim},
              {"capacity_factor", hp.capacity_factor ? nlohmann::json(*hp.capacity_factor) : nlohmann::json()},
              {"auto_expert_capacity",
               capacity.auto_expert_capacity ? nlohmann::json(*capacity.auto_expert_capacity) : nlohmann::json()},
              {"raised", capacity.raised},
              {"group_size", gating_group_size},
              {"num_groups", gating_groups}});
  // epad_mask[:, :, np.array(expert_padding_idx)] = 1.0: numpy indexing, so -E <= i < E.
  for (int64_t index : hp.expert_padding_idx.value_or(std::vector<int64_t>{})) {
    if (index < -E || index >= E) {
      fail_input("hparams.expert_padding_idx", nlohmann::json(*hp.expert_padding_idx).dump(),
                 "expert indices in [-E, E-1] = [" + std::to_string(-E) + ", " + std::to_string(E - 1) +
                     "] (numpy indexing of the E axis)");
    }
  }

  // ---- Inputs ----------------------------------------------------------------------
  // x feeds the router unless logits are supplied, and the experts in scope "layer";
  // when supplied with logits in scope "gating" it is only recorded (lingvo: `del inputs`).
  const Tensor* x = take_grouped_x(f, !logits_supplied);
  const Tensor* logits_given = f.inputs().optional_input("logits", {"G", "S", "E"}, {G, S, E});
  const Tensor* w = nullptr;
  if (logits_given == nullptr) {
    // MoEBuilder._Top2GatingWeights: WeightInit.Uniform(sqrt(1/M) * sqrt(3)).
    const double bound = std::sqrt(3.0 / static_cast<double>(f.dim("M")));
    w = &f.inputs().float_input("router_weights", {"M", "E"}, {f.dim("M"), E}, -bound, bound);
  }
  const Tensor* paddings = f.inputs().optional_input("paddings", {"G", "S"}, {G, S});
  for (size_t i = 0; paddings != nullptr && i < paddings->f32.size(); ++i) {
    if (paddings->f32[i] != 0.0f && paddings->f32[i] != 1.0f) {
      std::string value;
      append_float32(value, paddings->f32[i]);
      fail_input("inputs.paddings" + paddings->named_index(static_cast<int64_t>(i)), value,
                 "0 or 1 (a fractional padding makes lingvo's float mask_1 fractional, which moeref does not model)");
    }
  }

  // ---- ComputeGating ---------------------------------------------------------------
  // The regrouping reshapes are row-major: only the extents change.
  auto regrouped = [&f](Tensor tensor) {
    tensor.shape = f.extents(tensor.dims);
    return tensor;
  };
  // logits = einsum('GSM,ME->GSE', inputs, w), or the supplied logits.
  const Tensor* logits = logits_given ? &f.step("logits", {logits_given}, regrouped(*logits_given)) : nullptr;
  if (logits == nullptr) {
    Tensor& computed = f.float32_step("logits", {x, w}, {"G", "S", "E"});  // [G, S, E]
    ops::router_logits(x->f32.data(), w->f32.data(), G * S, f.dim("M"), E, computed.f32.data());
    logits = &computed;
  }
  if (!direct_call) {
    // top1_expert_per_example = tf.math.argmax(logits, -1): a tpu_summary only.
    const Tensor* forced = f.forced_decision("top1_expert_per_example", {gating_groups, gating_group_size});
    f.step("top1_expert_per_example", {logits},
           with_forced_top_1(ops::argmax_lowest_index(*logits), forced, E));  // [G, S]
  }
  // Top2GatingOnLogits(inputs, paddings, logits, ..., importance=None)
  const Top2Gating gating = top2_gating_on_logits(f, hp, logits, paddings, direct_call);
  const Tensor* dispatch_tensor = gating.dispatch_tensor;
  const Tensor* combine_tensor = gating.combine_tensor;
  if (!hp.local_dispatch) {
    // dispatch_tensor = tf.reshape(dispatch_tensor, orig_inputs.shape[:2] + dispatch_tensor.shape[2:]),
    // and combine_tensor likewise; the slots keep the single group's numbering.
    f.set_step_extent("G", G);
    f.set_step_extent("S", S);
    dispatch_tensor = &f.step("dispatch_tensor_regrouped", {dispatch_tensor}, regrouped(*dispatch_tensor));
    combine_tensor = &f.step("combine_tensor_regrouped", {combine_tensor}, regrouped(*combine_tensor));
  }

  // ---- FeedForwardNetworksApplyGating: experts and combine ----------------------------
  // MoEBuilder: wi ~ Uniform(sqrt(3/M)), wo ~ Uniform(sqrt(3/H)).
  if (f.layer_scope()) grouped_expert_layer(f, *x, *dispatch_tensor, *combine_tensor, hp.activation);
  f.loss("aux_loss", gating.aux_loss);
}

// The decisions that a backend can legitimately make the other way when the
// deciding values are within float tolerance: ComputeGating's summary argmax
// (over the un-padded logits), the two argmax choices and the random policy's
// comparison.
std::optional<NearTie> lingvo_top2_near_tie(const NearTieQuery& query, const LingvoTop2Hparams& hp) {
  if (query.step == "top1_expert_per_example") return top_1_near_tie(query, "logits");
  return gshard_top2_near_tie(query, hp, "second_policy_uniform");
}

}  // namespace

VariantSpec lingvo_top2_variant() {
  return define_variant<LingvoTop2Hparams>(
      {"lingvo_top2", "lingvo GShard top-2 gating (Top2GatingOnLogits via ComputeGating), legacy and non-legacy",
       "tensorflow/lingvo lingvo/core/gshard_layers.py: ComputeGating, Top2GatingOnLogits",
       "spec/variants/lingvo_top2.md"},
      declare_hparams, lingvo_top2, lingvo_top2_near_tie);
}

}  // namespace moeref
