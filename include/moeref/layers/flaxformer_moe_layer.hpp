// flaxformer's MoeLayer and the common part of its routers (google/flaxformer at 399ea3a,
// flaxformer/architectures/moe/moe_layers.py: MoeLayer.__call__, _mask_and_dispatch_to_experts,
// _scatter_to_experts, _call_experts, _sow_expert_metrics, _num_groups, _maybe_pad;
// flaxformer/architectures/moe/routing.py: Router.__call__, _compute_router_probabilities,
// RouterWeights, _router_z_loss).
//
// The layer pads [B, L, M] to a multiple of E * replicas tokens, cuts the tokens into G groups
// of S (at least E groups), computes the capacity, runs the router (jitter on the router input,
// RouterWeights, softmax, padding mask, the variant's routing instructions, z-loss), the experts
// (MlpBlock without bias, on the dense dispatch and combine tensors), the combine, slices the
// padding off, and records the sown metrics (auxiliary_loss, router_z_loss,
// fraction_tokens_left_behind, router_confidence, expert_usage).
//
// Dims: B batch, L length, G groups, S group size (tokens_per_group), E experts, C expert
//       capacity, M model dim (hidden_dims), H expert hidden dim (intermediate_dim), N = M, K
//       selected experts (tokens-choose routers).
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "moeref/frame/frame.hpp"
#include "moeref/frame/hparam_table.hpp"

namespace moeref {

// MoeLayer's, Router's, RouterWeights' and the expert MlpBlock's hyperparameters.
struct FlaxformerLayerHparams {
  int64_t max_group_size = 0;
  double train_capacity_factor = 0.0;
  double eval_capacity_factor = 0.0;
  int64_t min_expert_capacity = 0;
  int64_t num_expert_replicas = 1;
  bool strict_group_size = false;
  double jitter_noise = 0.0;
  bool ignore_padding_tokens = false;
  bool use_bias = false;
  std::vector<std::string> activations;
  std::string dtype;                 // Router.dtype: the returned combine array's dtype, "float32" or "bfloat16"
  std::string router_weights_dtype;  // RouterWeights.dtype: logits and softmax, "float32" or "bfloat16"
};

// Declares the hyperparameters above under the source's names; the capacity factors' defaults
// are the T5X gin configs' for the variant's router.
template <typename P>
void declare_flaxformer_layer_hparams(HparamTable<P>& table, double train_capacity_factor, double eval_capacity_factor,
                                      const char* dtype) {
  const char* router = "routing.py: Router";
  const char* layer = "moe_layers.py: MoeLayer";
  table.number("jitter_noise", &P::jitter_noise)
      .defaults_to(0.0)
      .between(0.0, 1.0)
      .means("When training, the router input is multiplied by U(1 - jitter_noise, 1 + jitter_noise).")
      .cites(router)
      .about("jitter");
  table.flag("ignore_padding_tokens", &P::ignore_padding_tokens)
      .defaults_to(false)
      .means("Tokens whose inputs are all zero are padding: the masked router drops them, scatter down-weights.")
      .cites(router)
      .about("padding");
  table.flag("use_bias", &P::use_bias)
      .defaults_to(false)
      .means("RouterWeights.use_bias (the class default is True; the T5X gin configs set False).")
      .cites("routing.py: RouterWeights")
      .about("router_bias");
  table.integer("max_group_size", &P::max_group_size)
      .defaults_to(4096)
      .between(1, kMaxHparamExtent)
      .means("Groups are at most this size: G >= B*L // max_group_size, and G >= E * replicas.")
      .cites(layer)
      .about("grouping");
  table.number("train_capacity_factor", &P::train_capacity_factor)
      .defaults_to(train_capacity_factor)
      .at_least(0.0)
      .train_only()
      .means("C = max(int(round(capacity_factor * S / E)), min_expert_capacity) when training.")
      .cites(layer)
      .about("capacity_factor");
  table.number("eval_capacity_factor", &P::eval_capacity_factor)
      .defaults_to(eval_capacity_factor)
      .at_least(0.0)
      .eval_only()
      .means("The capacity factor when train is false.")
      .cites(layer)
      .about("capacity_factor");
  table.integer("min_expert_capacity", &P::min_expert_capacity)
      .defaults_to(4)
      .between(0, kMaxHparamExtent)
      .means("The capacity's floor.")
      .cites(layer)
      .about("min_capacity");
  table.integer("num_expert_replicas", &P::num_expert_replicas)
      .defaults_to(1)
      .between(1, kMaxHparamExtent)
      .means("_num_expert_replicas: max(1, device_count // (expert partitions * model partitions)).")
      .cites(layer)
      .about("device_split");
  table.flag("strict_group_size", &P::strict_group_size)
      .defaults_to(false)
      .means("Fail unless every group has exactly max_group_size tokens.")
      .cites(layer)
      .about("grouping");
  table.choice("router_weights_dtype", &P::router_weights_dtype, {"float32", "bfloat16"})
      .defaults_to("float32")
      .means("RouterWeights.dtype: inputs, kernel, logits and softmax in it (class default bfloat16, gin float32).")
      .cites("routing.py: RouterWeights; spec/bfloat16.md")
      .about("dtype");
  table.choice("dtype", &P::dtype, {"float32", "bfloat16"})
      .defaults_to(dtype)
      .means("Router.dtype: the combine array is converted to it (bfloat16 rounds to nearest even).")
      .cites(router)
      .about("dtype");
  table.choice_list("activations", &P::activations, {"relu", "linear"})
      .defaults_to(nlohmann::json::array({"relu"}))
      .means("The expert MlpBlock's activations: one dense layer each, multiplied elementwise.")
      .cites("dense.py: MlpBlock")
      .about("activation");
}

// What the router's subclass computes (_compute_routing_instructions) and the layer needs.
struct FlaxformerRouting {
  const Tensor* dispatch_tensor = nullptr;  // [G, S, E, C] int32 0/1: dispatch_mask, or scattered indices
  const Tensor* combine_tensor = nullptr;   // [G, S, E, C] float32: combine_array, or gathered weights
  float auxiliary_loss = 0.0f;
  // Scatter routers: successfully_routed [G, S, K] int32 and combine_weights [G, S, K] for the
  // metrics, which the layer computes from them instead of the dense tensors.
  const Tensor* successfully_routed = nullptr;
  const Tensor* combine_weights = nullptr;
  bool experts_choose = false;  // expert_usage = 1.0
};

// jax.lax.convert_element_type(combine, self.dtype): a step `NAME_dtype` holding the values
// rounded to bfloat16 when `dtype` is "bfloat16"; `combine` itself when it is "float32".
const Tensor& convert_to_router_dtype(Frame& frame, const std::string& name, const Tensor& combine,
                                      const std::string& dtype);

// router_probs [G, S, E]; padding_mask [G, S] float32 or nullptr (ignore_padding_tokens off).
using FlaxformerInstructions = std::function<FlaxformerRouting(const Tensor& router_probs, const Tensor* padding_mask)>;

// E, M, H (scope "layer"), N = M; B and L padded and grouped by _maybe_pad and _num_groups, or
// G and S as given; C by the capacity rule. Records the capacity object.
void resolve_flaxformer_layer_dims(Frame& frame, const FlaxformerLayerHparams& hparams);

// Runs the layer (scope "layer") or the router alone (scope "gating") around `instructions`.
void flaxformer_moe_layer(Frame& frame, const FlaxformerLayerHparams& hparams,
                          const FlaxformerInstructions& instructions);

}  // namespace moeref
