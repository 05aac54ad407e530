// lingvo_expert_choice: lingvo's expert-choice gating (token shuffling v2), literal to the source.
//
// Source: tensorflow/lingvo, lingvo/core/gshard_layers.py at e0be5dc4ce9b,
//   TokenShufflingOnlogitsV2 (the gating function), as driven by ComputeGating
//   (gating_func='token_shuffle_v2': logits = einsum('GSM,ME->GSE', inputs, w))
//   and consumed by FeedForwardNetworksApplyGating (dispatch 'GSEC,GSM->EGCM',
//   experts, combine). Spec: spec/variants/lingvo_expert_choice.md.
//
// Dims: G groups, S group size, E experts, C expert capacity, M model dim,
//       H expert hidden dim, N expert output dim (= M).
//
// Each expert picks its C best tokens by padding-masked probability
// (tf.math.top_k: lower token index first on ties). The selection becomes a
// 0/1 mask, and a token's slot in an expert is the number of earlier tokens
// (token order, not score order) that the expert also picked. A token may be
// picked by several experts; its weight for each is its raw probability.
// TokenShufflingOnlogitsV2 returns combine and dispatch in [G, S, E, C] (its
// docstring's "G`EC" / "G`ECS" is wrong); the trace records them so.
// Masks, indices and positions are integers in the source (mask_dtype must be
// an integer type, see mask_dtype below) and are stored as int32.
// praxis_expert_choice restates the same rule; the steps both share from the
// gates on are recorded by layers/gshard_expert_choice.hpp.

#include <optional>
#include <string>
#include <vector>

#include "moeref/error.hpp"
#include "moeref/frame/define_variant.hpp"
#include "moeref/layers/grouped_tokens.hpp"
#include "moeref/layers/gshard_expert_choice.hpp"
#include "moeref/ops/gshard_capacity.hpp"
#include "moeref/ops/tf_softmax.hpp"
#include "moeref/ops/top_k.hpp"

namespace moeref {

namespace {

// TokenShufflingOnlogitsV2's arguments, and FeedForwardNetworksApplyGating's activation.
struct LingvoExpertChoiceHparams {
  std::optional<int64_t> expert_capacity_dim;  // required: the source gives it no default
  std::optional<double> capacity_factor;
  std::string mask_dtype;
  std::vector<std::string> activation;
};

void declare_hparams(HparamTable<LingvoExpertChoiceHparams>& table) {
  using P = LingvoExpertChoiceHparams;
  const char* gating = "gshard_layers.py: TokenShufflingOnlogitsV2";
  table.required_integer("expert_capacity_dim", &P::expert_capacity_dim)
      .between(0, kMaxHparamExtent)
      .means("Required: C0, tokens each expert takes per group (raised by capacity_factor); C must not exceed S.")
      .cites(gating)
      .known_as({"c_dim"})
      .about("explicit_capacity");
  table.optional_number("capacity_factor", &P::capacity_factor)
      .between(0.0, static_cast<double>(kMaxHparamExtent))
      .means(
          "If non-zero, C is raised to int(S * capacity_factor / E) (0 -> 4) rounded up to a multiple of 4 when C0 "
          "is smaller.")
      .cites(gating)
      .about("capacity_factor");
  table.choice("mask_dtype", &P::mask_dtype, {"int32", "float32", "bfloat16"})
      .defaults_to("int32")
      .means(
          "dtype of the masks and positions; only int32 works (a float dtype makes the source's tf.one_hot raise "
          "TypeError).")
      .cites(gating)
      .about("dtype");
  declare_grouped_activation(table, &P::activation, "gshard_layers.py: FeedForwardNetworksApplyGating",
                             {"moe_activation"});
}

// TokenShufflingOnlogitsV2(logits, paddings, ..., expert_capacity_dim, ..., capacity_factor, mask_dtype),
// with ComputeGating's router before it and FeedForwardNetworksApplyGating after it.
void token_shuffling_on_logits_v2(Frame& f, const LingvoExpertChoiceHparams& hp) {
  resolve_grouped_dims(f, grouped_router_runs(f),
                       "G and S only: lingvo_expert_choice routes the groups it is given (the callers' grouping is "
                       "not modelled)");
  const int64_t G = f.dim("G"), S = f.dim("S"), E = f.dim("E");

  // mask_dtype: the source's one_hot on a mask_dtype tensor needs integer indices.
  if (hp.mask_dtype != "int32") {
    fail_input("hparams.mask_dtype", "\"" + hp.mask_dtype + "\"",
               "\"int32\": TokenShufflingOnlogitsV2 calls tf.one_hot(expert_indices[:, :, i], E) and "
               "tf.one_hot(pos_i, C) on mask_dtype tensors, and TF's OneHot accepts only integer indices "
               "(TI in {uint8, int32, int64}), so a float mask_dtype raises TypeError while the graph is built");
  }
  // The capacity rule, which the source applies after token_scores; moeref resolves C with
  // the dims so that a config that cannot run fails before any step.
  if (!hp.expert_capacity_dim) {
    fail_input("hparams.expert_capacity_dim", "null (not given)",
               "an integer >= 0: expert_capacity_dim is a required argument of TokenShufflingOnlogitsV2 (no default; "
               "MoEBuilder's c_dim defaults to None, which fails)");
  }
  const int64_t C0 = *hp.expert_capacity_dim;
  const ops::GshardCapacity capacity = ops::lingvo_token_shuffling_capacity(S, E, C0, hp.capacity_factor);
  const int64_t C = f.derived_dim("C", capacity.expert_capacity,
                                  "lingvo: C0 = expert_capacity_dim; with a non-zero capacity_factor, auto = int(S * "
                                  "cf / E) (0 -> 4) and C = auto rounded up to a multiple of 4 when C0 < auto");
  // The capacity_factor exactly as the config spells it (1 and 1.0 stay apart in the record).
  const nlohmann::json& capacity_factor_given = f.config().hparams.at("capacity_factor");
  if (C > S) {
    fail_input("hparams.expert_capacity_dim",
               "C = " + std::to_string(C) + " (expert_capacity_dim " + std::to_string(C0) + ", capacity_factor " +
                   (hp.capacity_factor ? capacity_factor_given.dump() : "null") + ")",
               "a capacity C <= S = " + std::to_string(S) +
                   ": tf.math.top_k(token_scores, k=C) raises InvalidArgument (input must have at least k columns)");
  }
  f.check_routing_size();
  f.capacity(ops::gshard_capacity_record(capacity,
                                         capacity.rule_applied
                                             ? "lingvo: auto = int(S * capacity_factor / E), 0 -> 4; C = auto rounded "
                                               "up to a multiple of 4 if expert_capacity_dim < auto, else "
                                               "expert_capacity_dim"
                                             : "lingvo: no capacity_factor, C = expert_capacity_dim",
                                         C0, capacity_factor_given, S, G));

  // ComputeGating: logits = einsum('GSM,ME->GSE', inputs, w), no bias (or the supplied logits).
  const Tensor* x = take_grouped_x(f, grouped_router_runs(f));
  const Tensor& logits = grouped_router_logits(f, x);                                                  // [G, S, E]
  const Tensor* paddings = take_grouped_paddings(f, false, "a padding in [0, 1] (1 = padded token)");  // [G, S]

  // gates = tf.nn.softmax(logits, axis=-1)  (fprop_dtype float32: the cast is a no-op)
  Tensor& gates = f.float32_step("gates", {logits}, {"G", "S", "E"});  // [G, S, E]
  ops::tf_softmax(logits.f32.data(), gates.f32.data(), G * S, E);

  // nonpaddings, token_scores, _, token_indices = tf.math.top_k(token_scores, k=expert_capacity_dim,
  // sorted=False), mask, mask *= nonpaddings, expert_indices.
  const ExpertChoiceSelection selection =
      gshard_expert_choice_selection(f, logits, gates, paddings, C, {ops::tf_top_k_indices, C, "C"});

  // avg_expert_per_token = tf.reduce_sum(tf.cast(mask, fprop_dtype)) /
  //                        tf.reduce_sum(tf.cast(nonpaddings, fprop_dtype))  (a summary; 0/0 is NaN)
  int64_t selected_count = 0;
  for (int32_t value : selection.mask_nonpadding->i32) selected_count += value;
  double nonpadding_sum = 0.0;
  for (float value : selection.nonpaddings->f32) nonpadding_sum += static_cast<double>(value);
  f.scalar_step("avg_expert_per_token", {selection.mask_nonpadding, selection.nonpaddings},
                static_cast<float>(selected_count) / static_cast<float>(nonpadding_sum));

  // position_in_expert (capacity, mask), for i in range(E): gate_i, combine_tensor += ...; dispatch_tensor.
  const ExpertChoiceRouting routing = gshard_expert_choice_routing(f, gates, selection, C);

  // FeedForwardNetworksApplyGating: experts and combine, [G, S, E, C] as returned.
  if (f.layer_scope()) grouped_expert_layer(f, *x, *routing.dispatch_tensor, *routing.combine_tensor, hp.activation);

  // return tf.constant(0.0, dtype=fprop_dtype), combine_tensor, dispatch_tensor
  f.loss("aux_loss", 0.0f);
}

}  // namespace

VariantSpec lingvo_expert_choice_variant() {
  return define_variant<LingvoExpertChoiceHparams>(
      {"lingvo_expert_choice",
       "lingvo expert-choice gating v2 (experts pick their top-C tokens by padding-masked probability)",
       "tensorflow/lingvo lingvo/core/gshard_layers.py: TokenShufflingOnlogitsV2 via ComputeGating",
       "spec/variants/lingvo_expert_choice.md"},
      declare_hparams, token_shuffling_on_logits_v2, gshard_expert_choice_near_tie<LingvoExpertChoiceHparams>);
}

}  // namespace moeref
