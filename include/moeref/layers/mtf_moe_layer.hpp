// Mesh TensorFlow's MoE layer around a gating function: transformer_moe_layer_v1
// (tensorflow/mesh, mesh_tensorflow/transformer/moe.py at da90793).
//
// The layer groups the tokens (_split_into_groups), picks the capacity factor by
// train/eval and applies the capacity rule, hands the grouped inputs to the
// gating function (_top_2_gating, _switch_gating, ...), runs the experts on its
// dispatch and combine tensors, and returns the gating loss times loss_coef.
// Every mtf gating variant runs inside it; the variant file holds only the
// gating function.
//
// Dims: B batch, L length, G groups, S group size, E experts, C expert capacity,
//       M model dim, H expert hidden dim, N expert output dim.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "moeref/frame/frame.hpp"
#include "moeref/frame/hparam_table.hpp"
#include "moeref/ops/mtf_activations.hpp"

namespace moeref {

// The layer's hyperparameters; a variant's hparams struct derives from it.
struct MtfLayerHparams {
  int64_t group_size = 0;
  int64_t mesh_dim_size = 0;
  double capacity_factor_train = 0.0;
  double capacity_factor_eval = 0.0;
  int64_t min_expert_capacity = 0;
  std::optional<int64_t> expert_capacity;
  double loss_coef = 0.0;
  std::vector<std::string> activation;
  double dropout_rate = 0.0;
  std::optional<int64_t> output_dim;

  double capacity_factor(bool train) const { return train ? capacity_factor_train : capacity_factor_eval; }
};

// What transformer_moe_layer_v1 hands its gating function.
struct MtfGatingInputs {
  const Tensor* inputs = nullptr;          // [G, S, M], the regrouped x; null in scope "gating" without x
  const Tensor* router_weights = nullptr;  // [M, E]; null when logits are supplied
  const Tensor* logits = nullptr;          // inputs.logits [G, S, E] when supplied
  const Tensor* importance = nullptr;      // [G, S] step "importance", or null
};

// What the gating function returns to the layer.
struct MtfGatingOutputs {
  const Tensor* dispatch_tensor = nullptr;  // [G, S, E, C] int32
  const Tensor* combine_tensor = nullptr;   // [G, S, E, C] float32
  float loss = 0.0f;                        // the gating loss
};

using MtfGatingFunction = std::function<MtfGatingOutputs(const MtfGatingInputs& inputs)>;

// Runs transformer_moe_layer_v1 around `gating`: dims, inputs, the steps
// "inputs" and "importance", the gating, the experts (scope "layer"), and the
// losses "gating_loss" and "loss".
void mtf_moe_layer(Frame& frame, const MtfLayerHparams& hparams, const MtfGatingFunction& gating);

// raw_gates = mtf.layers.dense(inputs, experts_dim, use_bias=False): the step
// "logits" [G, S, E], or the supplied logits recorded as that step.
const Tensor& mtf_router_logits(Frame& frame, const MtfGatingInputs& inputs);

// The layer's hyperparameters under transformer_moe_layer_v1's names.
template <typename P>
void declare_mtf_layer_hparams(HparamTable<P>& table) {
  const char* layer = "moe.py: transformer_moe_layer_v1";
  table.integer("group_size", &P::group_size)
      .defaults_to(1024)
      .between(1, kMaxHparamExtent)
      .means("Target tokens per routing group when x is [B, L, M]; _split_into_groups may exceed it.")
      .cites("moe.py: transformer_moe_layer_v1, _split_into_groups")
      .known_as({"moe_group_size"})
      .about("grouping");
  table.integer("mesh_dim_size", &P::mesh_dim_size)
      .defaults_to(1)
      .between(1, kMaxHparamExtent)
      .means("Mesh size over which groups are split; the number of groups must be a multiple of it.")
      .cites("moe.py: transformer_moe_layer_v1, _split_into_groups")
      .about("device_split");
  table.number("capacity_factor_train", &P::capacity_factor_train)
      .defaults_to(1.25)
      .at_least(0.0)
      .train_only()
      .means("Training capacity factor: C = max(min(S, int(S * factor / E)), min_expert_capacity).")
      .cites(layer)
      .known_as({"moe_capacity_factor_train"})
      .about("capacity_factor");
  table.number("capacity_factor_eval", &P::capacity_factor_eval)
      .defaults_to(2.0)
      .at_least(0.0)
      .eval_only()
      .means("Evaluation capacity factor, used when train is false.")
      .cites(layer)
      .known_as({"moe_capacity_factor_eval"})
      .about("capacity_factor");
  table.integer("min_expert_capacity", &P::min_expert_capacity)
      .defaults_to(4)
      .between(0, kMaxHparamExtent)
      .means("Lower bound on the expert capacity C (so C may exceed S).")
      .cites(layer)
      .known_as({"moe_min_expert_capacity"})
      .about("min_capacity");
  table.optional_integer("expert_capacity", &P::expert_capacity)
      .between(0, kMaxHparamExtent)
      .means(
          "moeref addition: an explicit capacity C that overrides the capacity rule, as the gating "
          "functions' callers pass it.")
      .cites(layer)
      .about("explicit_capacity");
  table.number("loss_coef", &P::loss_coef)
      .defaults_to(1e-2)
      .at_least(0.0)
      .means("The layer returns the gating loss times this coefficient.")
      .cites(layer)
      .known_as({"moe_loss_coef"})
      .about("balance_loss_coef");
  table.choice_list("activation", &P::activation, ops::activation_names())
      .defaults_to("relu")
      .means("Expert activation; a list multiplies one dense factor per entry (GLU style, mtf dense_product).")
      .cites(layer)
      .known_as({"moe_activation"})
      .about("activation");
  table.number("dropout_rate", &P::dropout_rate)
      .defaults_to(0.0)
      .between(0.0, 0.999999)
      .means("Dropout rate on the expert hidden activations, applied only when training.")
      .cites(layer)
      .known_as({"moe_dropout_rate"})
      .about("expert_dropout");
  table.optional_integer("output_dim", &P::output_dim)
      .between(1, kMaxHparamExtent)
      .means("Expert output dim N; null means the model dim M.")
      .cites(layer)
      .about("output_dim");
}

}  // namespace moeref
