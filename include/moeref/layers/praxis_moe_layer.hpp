// praxis's MoE layer around a gating function: TransformerFeedForwardMoe
// (google/praxis, praxis/layers/transformers.py at feeaff1: setup,
// _dispatch_and_combine_expert_outputs, __call__).
//
// The layer groups the tokens (x [B, L, M] into num_groups groups, or x already
// [G, S, M]), computes the router logits, hands them and the grouped paddings to
// the gating function (top2_gating_on_logits, ...), then adds the dispatch
// summaries, runs the experts on the dispatch and combine tensors, zeroes the
// padded outputs and returns the aux loss times moe_load_balance_loss_weight.
//
// Dims: B batch, L length, G groups, S group size, E experts, C expert capacity,
//       M model dim (input_dims), H expert hidden dim (hidden_dims), N = M.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "moeref/frame/frame.hpp"
#include "moeref/frame/hparam_table.hpp"

namespace moeref {

// The layer's hyperparameters; a variant's hparams struct derives from it.
struct PraxisLayerHparams {
  std::optional<int64_t> num_groups;
  std::optional<int64_t> min_group_size;
  double moe_load_balance_loss_weight = 0.0;
  std::string activation;
  // The layer's fprop_dtype: "float32", or "bfloat16" (the router einsum in bfloat16 and the
  // gating function's combine tensor converted to it; spec/bfloat16.md).
  std::string fprop_dtype = "float32";
};

// What the layer hands its gating function.
struct PraxisGatingInputs {
  const Tensor* logits = nullptr;    // step "logits" [G, S, E]
  const Tensor* paddings = nullptr;  // step "paddings" [G, S], or null
};

// What the gating function returns to the layer.
struct PraxisGatingOutputs {
  const Tensor* combine_tensor = nullptr;   // [G, S, E, C] float32
  const Tensor* dispatch_tensor = nullptr;  // [G, S, E, C] int32
  // dispatch_0, dispatch_1, dispatch_2 (scalar steps) for the layer's
  // summaries, or empty when the gating function returns none.
  std::vector<const Tensor*> dispatch_counts;
  float aux_loss = 0.0f;
};

using PraxisGatingFunction = std::function<PraxisGatingOutputs(const PraxisGatingInputs& inputs)>;

// E; B and L grouped by num_groups (lowered by min_group_size) into G and S, or
// G and S as given; M when the router or the experts need it; H and N = M in
// scope "layer". The capacity is the gating function's to derive.
void resolve_praxis_layer_dims(Frame& frame, const PraxisLayerHparams& hparams);

// Runs the layer around `gating`: inputs, the steps "inputs", "paddings" and
// "logits", the gating, then in scope "layer" the dispatch summaries, the experts
// and "outputs_nonpadding"; the losses "aux_loss" and "aux_moe_load_balance_loss".
void praxis_moe_layer(Frame& frame, const PraxisLayerHparams& hparams, const PraxisGatingFunction& gating);

// Declares the layer's num_groups, min_group_size, moe_load_balance_loss_weight and
// activation under TransformerFeedForwardMoe's names, for gating functions that
// run in the layer (praxis_top2, praxis_topk).
template <typename P>
void declare_praxis_layer_hparams(HparamTable<P>& table) {
  const char* layer = "transformers.py: TransformerFeedForwardMoe";
  table.optional_integer("num_groups", &P::num_groups)
      .between(1, kMaxHparamExtent)
      .means("TransformerFeedForwardMoe.num_groups: G when x is [B, L, M] (the source default 0 fails its own assert).")
      .cites(layer)
      .about("grouping");
  table.optional_integer("min_group_size", &P::min_group_size)
      .between(1, kMaxHparamExtent)
      .means("If B*L / num_groups is below it, G becomes ceil(B*L / min_group_size).")
      .cites(layer)
      .about("grouping");
  table.number("moe_load_balance_loss_weight", &P::moe_load_balance_loss_weight)
      .defaults_to(1.0)
      .at_least(0.0)
      .means("The layer's aux loss is aux_loss times this weight (must be > 0).")
      .cites(layer)
      .about("balance_loss_coef");
  table.choice("activation", &P::activation, {"linear", "relu", "swish", "sigmoid", "tanh"})
      .defaults_to("relu")
      .means("Expert activation (activation_tpl: Identity, ReLU, Swish, Sigmoid, Tanh).")
      .cites(layer)
      .known_as({"activation_tpl"})
      .about("activation");
}

}  // namespace moeref
