// mtf_top2: the top-2 MoE layer of Mesh TensorFlow, literal to the source.
//
// Source: tensorflow/mesh, mesh_tensorflow/transformer/moe.py at da90793,
//   transformer_moe_layer_v1 (grouping, capacity, experts, combine) and
//   _top_2_gating (the gating function). Spec: spec/variants/mtf_top2.md.
//
// Dims: B batch, L length, G groups, S group size, E experts, C expert capacity,
//       M model dim, H expert hidden dim, N expert output dim.
//
// _top_2_gating runs here once, inside transformer_moe_layer_v1; MoE2D
// (mtf_moe2d) runs it twice. Its steps, one statement (or a few) of the source
// each, in the source's order and under its variable names, are therefore
// recorded by layers/mtf_top2_gating.hpp, which reads side by side with
// _top_2_gating. This file holds the hyperparameters and the call.

#include <optional>
#include <string>

#include "moeref/frame/define_variant.hpp"
#include "moeref/layers/mtf_moe_layer.hpp"
#include "moeref/layers/mtf_top2_gating.hpp"

namespace moeref {

namespace {

// transformer_moe_layer_v1's hyperparameters, and _top_2_gating's own.
struct MtfTop2Hparams : MtfLayerHparams, MtfTop2GatingHparams {
  std::optional<int64_t> num_microbatches;
};

void declare_hparams(HparamTable<MtfTop2Hparams>& table) {
  using P = MtfTop2Hparams;
  declare_mtf_layer_hparams(table);
  declare_mtf_top2_gating_hparams(table);
  table.optional_integer("num_microbatches", &P::num_microbatches)
      .between(1, kMaxHparamExtent)
      .means("Number of microbatches; when > 1 the gating loss is divided by it.")
      .cites("moe.py: _top_2_gating")
      .about("num_microbatches");
}

// _top_2_gating(inputs, ..., importance, num_microbatches): dispatch, combine and loss.
MtfGatingOutputs top_2_gating(Frame& f, const MtfGatingInputs& in, const MtfTop2Hparams& hp) {
  // raw_gates = mtf.layers.dense(inputs, experts_dim, use_bias=False)
  const Tensor& logits = mtf_router_logits(f, in);  // [G, S, E]
  // raw_gates = mtf.softmax(raw_gates, experts_dim) ... dispatch_tensor, step by step.
  const MtfTop2Gated gated =
      mtf_top_2_gating(f, {{"G"}, "S", "E", "C", ""}, logits, in.importance, hp, hp.num_microbatches);
  return {gated.dispatch_tensor, gated.combine_tensor, gated.loss};
}

void mtf_top2(Frame& f, const MtfTop2Hparams& hp) {
  mtf_moe_layer(f, hp, [&](const MtfGatingInputs& in) { return top_2_gating(f, in, hp); });
}

// The decisions of _top_2_gating that a backend can legitimately make the other
// way when the deciding values are within float tolerance: the two top_1 choices
// and the second-expert policy's comparison.
std::optional<NearTie> mtf_top2_near_tie(const NearTieQuery& query, const MtfTop2Hparams& hp) {
  return mtf_top_2_near_tie(query, hp, "");
}

}  // namespace

VariantSpec mtf_top2_variant() {
  VariantSpec spec = define_variant<MtfTop2Hparams>(
      {"mtf_top2", "Mesh TensorFlow top-2 MoE layer (GShard-style top-2 gating with second-expert policies)",
       "tensorflow/mesh mesh_tensorflow/transformer/moe.py: transformer_moe_layer_v1, _top_2_gating",
       "spec/variants/mtf_top2.md"},
      declare_hparams, mtf_top2, mtf_top2_near_tie);
  // transformer_moe_layer_v1 keeps its groups apart from the gating to the outputs:
  // shards by group merge exactly (spec/sharding.md).
  spec.group_shards = true;
  return spec;
}

}  // namespace moeref
