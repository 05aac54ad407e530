// lingvo_hash: lingvo's hash gating, literal to the source.
//
// Source: tensorflow/lingvo, lingvo/core/gshard_layers.py at e0be5dc4ce9b,
//   HashGatingOnLogits (the gating function), as called by ComputeGating
//   (gating_func='hashing', importance=None) from the hash MoE builder in
//   lingvo/core/gshard_builder.py (expert_id = floormod(token ids, e_dim)) and
//   consumed by FeedForwardNetworksApplyGating (dispatch 'GSEC,GSM->EGCM',
//   experts, combine 'GSEC,GECM->GSM'). Spec: spec/variants/lingvo_hash.md.
//
// Dims: G groups, S group size, E experts, C expert capacity, M model dim,
//       H expert hidden dim, N expert output dim (= M).
//
// A token goes to the expert its supplied id names, in token order, while the
// expert has room. The combine weight is 1 and is NOT multiplied by
// mask_1_flat: a padded or over-capacity token has position 0 after masking, so
// it is still written into slot 0 of its expert (the "slot-0 leak", see the
// spec page). The source ignores the router logits that ComputeGating computes
// for this gating function, so moeref computes none.
// mask_dtype is modelled as the MoEBuilder passes it (None, i.e. the float32
// fprop dtype); with 0/1 paddings every mask, count and position is an exact
// integer, so the trace stores them as int32.

#include <optional>
#include <string>
#include <vector>

#include "moeref/error.hpp"
#include "moeref/frame/define_variant.hpp"
#include "moeref/layers/grouped_tokens.hpp"
#include "moeref/ops/cumsum.hpp"
#include "moeref/ops/dispatch_tensor.hpp"
#include "moeref/ops/one_hot.hpp"

namespace moeref {

namespace {

// HashGatingOnLogits's expert_capacity_dim, and FeedForwardNetworksApplyGating's activation.
struct LingvoHashHparams {
  std::optional<int64_t> expert_capacity_dim;  // required: the source gives it no default
  std::vector<std::string> activation;
};

void declare_hparams(HparamTable<LingvoHashHparams>& table) {
  using P = LingvoHashHparams;
  table.required_integer("expert_capacity_dim", &P::expert_capacity_dim)
      .between(0, kMaxHparamExtent)
      .means("Required: C, slots per expert per group (no capacity factor in hash gating).")
      .cites("gshard_layers.py: HashGatingOnLogits")
      .known_as({"c_dim"})
      .about("explicit_capacity");
  declare_grouped_activation(table, &P::activation, "gshard_layers.py: FeedForwardNetworksApplyGating",
                             {"moe_activation"});
}

// HashGatingOnLogits(inputs, expert_id, paddings, ..., expert_capacity_dim, ..., importance),
// with FeedForwardNetworksApplyGating after it.
void hash_gating_on_logits(Frame& f, const LingvoHashHparams& hp) {
  resolve_grouped_dims(f, false,
                       "G and S only: lingvo_hash routes the groups it is given (the builder's reshape to num_groups "
                       "is not modelled)");
  const int64_t G = f.dim("G"), S = f.dim("S"), E = f.dim("E");
  if (!hp.expert_capacity_dim) {
    fail_input("hparams.expert_capacity_dim", "null (not given)",
               "an integer >= 0: expert_capacity_dim is a required argument of HashGatingOnLogits (no default, no "
               "capacity_factor; the builder passes its c_dim)");
  }
  const int64_t C = f.derived_dim("C", *hp.expert_capacity_dim, "C = expert_capacity_dim");
  f.check_routing_size();
  f.capacity({{"expert_capacity", C},
              {"rule", "given: hparams.expert_capacity_dim (HashGatingOnLogits has no capacity rule)"},
              {"group_size", S},
              {"num_groups", G}});

  // `del inputs`: x feeds only the experts (and is recorded when supplied).
  const Tensor* x = take_grouped_x(f, false);
  // expert_id: the builder's floormod(ids, e_dim) lies in [0, E); a generated one does too.
  const Tensor& expert_id = f.inputs().int_input("expert_id", {"G", "S"}, {G, S}, 0, static_cast<int32_t>(E));
  const Tensor* paddings = take_grouped_paddings(f, true,
                                                 "0 or 1 (the builder's paddings are 1[segment_id == 0]; fractional "
                                                 "paddings would make float positions, which moeref does not model)");
  const Tensor* importance = f.inputs().optional_input("importance", {"G", "S"}, {G, S});

  // index_1 = expert_id
  const Tensor& index_1 = f.step("index_1", {expert_id}, expert_id);  // [G, S]
  // mask_1 = tf.one_hot(index_1, experts_dim, dtype=mask_dtype): an id outside [0, E) gives a zero row.
  const Tensor& mask_1 = f.step("mask_1", {index_1}, ops::one_hot(index_1, E, "E"));  // [G, S, E]

  // if importance is not None: mask_1 *= tf.expand_dims(tf.cast(tf.equal(importance, 1.0), ...), -1)
  // elif paddings is not None: mask_1 *= tf.expand_dims(tf.cast(1.0 - paddings, ...), -1)
  const Tensor* mask_1_now = &mask_1;
  if (importance != nullptr) {
    Tensor& mask_1_important = f.int32_step("mask_1_important", {mask_1, importance}, {"G", "S", "E"});
    for (int64_t k = 0; k < G * S * E; ++k) {
      mask_1_important.i32[k] = mask_1.i32[k] * (importance->f32[static_cast<size_t>(k / E)] == 1.0f ? 1 : 0);
    }
    mask_1_now = &mask_1_important;
  } else if (paddings != nullptr) {
    Tensor& mask_1_nonpadding = f.int32_step("mask_1_nonpadding", {mask_1, paddings}, {"G", "S", "E"});
    for (int64_t k = 0; k < G * S * E; ++k) {
      // 0/1 paddings: 1.0 - paddings is exactly 0 or 1.
      mask_1_nonpadding.i32[k] = mask_1.i32[k] * static_cast<int32_t>(1.0f - paddings->f32[static_cast<size_t>(k / E)]);
    }
    mask_1_now = &mask_1_nonpadding;
  }

  // position_in_expert_1 = tf.cumsum(mask_1, exclusive=True, axis=-2): not multiplied by mask_1.
  const Tensor& position_in_expert_1 =
      f.step("position_in_expert_1", {mask_1_now}, ops::exclusive_cumsum_over_s(*mask_1_now));  // [G, S, E]
  // mask_1 *= tf.cast(tf.less(position_in_expert_1, capacity), dtype=mask_1.dtype)
  Tensor& mask_1_capacity = f.int32_step("mask_1_capacity", {mask_1_now, position_in_expert_1}, {"G", "S", "E"});
  for (int64_t k = 0; k < G * S * E; ++k) {
    mask_1_capacity.i32[k] = mask_1_now->i32[k] * (position_in_expert_1.i32[k] < C ? 1 : 0);
  }
  // position_in_expert_1 = tf.einsum('...GSE,...GSE->...GS', position_in_expert_1, mask_1):
  // 0 for a dropped or padded token.
  Tensor& position_in_expert_1_flat =
      f.int32_step("position_in_expert_1_flat", {position_in_expert_1, mask_1_capacity}, {"G", "S"});  // [G, S]
  for (int64_t k = 0; k < G * S * E; ++k) {
    position_in_expert_1_flat.i32[k / E] += position_in_expert_1.i32[k] * mask_1_capacity.i32[k];
  }
  // mask_1_count = tf.einsum('...GSE->...GE', mask_1): how many tokens go to each expert.
  Tensor& mask_1_count = f.int32_step("mask_1_count", {mask_1_capacity}, {"G", "E"});  // [G, E]
  for (int64_t k = 0; k < G * S * E; ++k) mask_1_count.i32[(k / (S * E)) * E + k % E] += mask_1_capacity.i32[k];
  // mask_1_flat = tf.einsum('...GSE->...GS', mask_1): recorded, though combine_tensor never reads it.
  f.step("mask_1_flat", {mask_1_capacity}, ops::sum_over_last(mask_1_capacity));  // [G, S]

  // b = tf.one_hot(tf.cast(position_in_expert_1, dtype=tf.int32), expert_capacity_dim, dtype=fprop_dtype)
  const Tensor& b = f.step("b", {position_in_expert_1_flat}, ops::one_hot(position_in_expert_1_flat, C, "C"));
  // a = tf.one_hot(index_1, experts_dim, dtype=fprop_dtype): NOT masked, and combine is not
  // multiplied by mask_1_flat: a padded or dropped token still takes slot 0 of its expert.
  // combine_tensor = tf.einsum('...GSE,...GSC->...GSEC', a, b)
  Tensor& combine_tensor = f.float32_step("combine_tensor", {index_1, b}, {"G", "S", "E", "C"});  // [G, S, E, C]
  for (int64_t t = 0; t < G * S; ++t) {
    for (int64_t e = 0; e < E; ++e) {
      const float a = index_1.i32[t] == e ? 1.0f : 0.0f;
      for (int64_t c = 0; c < C; ++c)
        combine_tensor.f32[(t * E + e) * C + c] = a * static_cast<float>(b.i32[t * C + c]);
    }
  }
  // dispatch_tensor = tf.cast(tf.cast(combine_tensor, tf.bool), fprop_dtype)
  const Tensor& dispatch_tensor =
      f.step("dispatch_tensor", {combine_tensor}, ops::dispatch_from_combine(combine_tensor));  // [G, S, E, C]

  // FeedForwardNetworksApplyGating: experts and combine.
  if (f.layer_scope()) grouped_expert_layer(f, *x, dispatch_tensor, combine_tensor, hp.activation);

  // return 0.0, combine_tensor, dispatch_tensor
  f.loss("aux_loss", 0.0f);
}

}  // namespace

VariantSpec lingvo_hash_variant() {
  return define_variant<LingvoHashHparams>(
      {"lingvo_hash", "lingvo hash gating (a supplied expert id per token; padded and dropped tokens leak into slot 0)",
       "tensorflow/lingvo lingvo/core/gshard_layers.py: HashGatingOnLogits via ComputeGating",
       "spec/variants/lingvo_hash.md"},
      declare_hparams, hash_gating_on_logits);
}

}  // namespace moeref
