#include "moeref/layers/mtf_moe_layer.hpp"

#include <cmath>

#include "moeref/error.hpp"
#include "moeref/frame/mtf_expert_layer.hpp"
#include "moeref/ops/mtf_capacity.hpp"
#include "moeref/ops/mtf_grouping.hpp"
#include "moeref/ops/router.hpp"

namespace moeref {

namespace {

// x is [B, L, M] (grouped by _split_into_groups) or already [G, S, M]; the
// capacity comes from the rule or from the expert_capacity hparam.
void resolve_dims(Frame& f, const MtfLayerHparams& hp) {
  f.required_dim("E", "the number of experts, an integer >= 1");
  if (f.batch_length_layout("group_size")) {
    // n = product of batch and length dims; _split_into_groups(n, group_size, mesh_dim_size).
    const ops::Grouping grouping = ops::mtf_split_into_groups(f.dim("B") * f.dim("L"), hp.group_size, hp.mesh_dim_size);
    f.derived_dim("G", grouping.num_groups, "_split_into_groups(B*L, group_size, mesh_dim_size)");
    f.derived_dim("S", grouping.group_size, "_split_into_groups(B*L, group_size, mesh_dim_size)");
  }
  f.resolve_model_dims(!f.supplied("logits"), "", "mtf hidden_size");
  if (f.layer_scope()) {
    f.derived_dim("N", hp.output_dim ? *hp.output_dim : f.dim("M"), "output_dim, or M when output_dim is null");
  }
  // The capacity factor by train/eval, then the capacity rule.
  const double capacity_factor = hp.capacity_factor(f.train());
  if (hp.expert_capacity) {
    f.derived_dim("C", *hp.expert_capacity, "the expert_capacity hparam");
  } else {
    f.derived_dim("C", ops::mtf_expert_capacity(f.dim("S"), capacity_factor, f.dim("E"), hp.min_expert_capacity),
                  "max(min(S, int(S * capacity_factor / E)), min_expert_capacity)");
  }
  f.check_routing_size();
  f.capacity({{"expert_capacity", f.dim("C")},
              {"rule", hp.expert_capacity ? "given: hparams.expert_capacity"
                                          : "mtf: max(min(S, int(S * capacity_factor / E)), min_expert_capacity)"},
              {"capacity_factor", capacity_factor},
              {"group_size", f.dim("S")},
              {"num_groups", f.dim("G")}});
}

// mtf.reshape keeps row-major order, so regrouping [B, L, ...] to [G, S, ...]
// only relabels the dims.
Tensor regrouped(const Tensor& tensor, std::vector<std::string> dims, std::vector<int64_t> shape) {
  Tensor out = tensor;
  out.dims = std::move(dims);
  out.shape = std::move(shape);
  return out;
}

}  // namespace

void mtf_moe_layer(Frame& f, const MtfLayerHparams& hp, const MtfGatingFunction& gating) {
  resolve_dims(f, hp);
  const bool batch_length_layout = f.config().dims.count("B") > 0;
  const int64_t G = f.dim("G"), S = f.dim("S"), E = f.dim("E"), C = f.dim("C"), M = f.dim_or("M", 0);

  // ---- Inputs --------------------------------------------------------------------
  InputSet& inputs = f.inputs();
  std::vector<std::string> token_dims = {"G", "S"};
  std::vector<int64_t> token_shape = {G, S};
  if (batch_length_layout) {
    token_dims = {"B", "L"};
    token_shape = {f.dim("B"), f.dim("L")};
  }
  const Tensor* x = nullptr;
  // x feeds the router unless logits are supplied, and the experts in scope "layer";
  // when supplied with logits in scope "gating" it is only recorded as `inputs`.
  if (f.layer_scope() || !f.supplied("logits") || f.supplied("x")) {
    x = &inputs.float_input("x", {token_dims[0], token_dims[1], "M"}, {token_shape[0], token_shape[1], M}, -1.0, 1.0);
  }
  MtfGatingInputs gating_inputs;
  gating_inputs.logits = inputs.optional_input("logits", {"G", "S", "E"}, {G, S, E});
  if (gating_inputs.logits == nullptr) {
    // Uniform with variance 2/M: logits of order one, so routing is neither flat nor one-hot.
    const double bound = std::sqrt(6.0 / static_cast<double>(M));
    gating_inputs.router_weights = &inputs.float_input("router_weights", {"M", "E"}, {M, E}, -bound, bound);
  }
  const Tensor* importance = inputs.optional_input("importance", token_dims, token_shape);

  // ---- Regroup [B, L, ...] to [G, S, ...] ------------------------------------------
  if (x != nullptr) gating_inputs.inputs = &f.step("inputs", {x}, regrouped(*x, {"G", "S", "M"}, {G, S, M}));
  if (importance != nullptr) {
    gating_inputs.importance = &f.step("importance", {importance}, regrouped(*importance, {"G", "S"}, {G, S}));
  }

  // ---- The gating function -----------------------------------------------------------
  const MtfGatingOutputs gated = gating(gating_inputs);

  // ---- Experts and combine -------------------------------------------------------------
  if (f.layer_scope()) {
    const std::vector<ops::Activation> activations = ops::activations_named(hp.activation);
    const int64_t H = f.dim("H");
    const MtfExpertWeights weights = take_mtf_expert_weights(f, activations.size(), E, M, H, f.dim("N"));
    std::optional<MtfDropout> dropout;
    const double keep_prob = 1.0 - hp.dropout_rate;
    if (f.train() && keep_prob != 1.0) {
      dropout = MtfDropout{&inputs.uniform_draw("dropout_uniform", {"E", "G", "C", "H"}, {E, G, C, H}), keep_prob};
    }
    mtf_expert_layer(f, *gating_inputs.inputs, *gated.dispatch_tensor, *gated.combine_tensor, activations, weights,
                     dropout);
  }

  // The layer returns loss * moe_loss_coef (a Python scalar: f32(loss_coef)).
  f.loss("gating_loss", gated.loss);
  f.loss("loss", gated.loss * static_cast<float>(hp.loss_coef));
}

const Tensor& mtf_router_logits(Frame& f, const MtfGatingInputs& in) {
  if (in.logits != nullptr) return f.step("logits", {in.logits}, *in.logits);
  const int64_t G = f.dim("G"), S = f.dim("S"), E = f.dim("E"), M = f.dim("M");
  Tensor& logits = f.float32_step("logits", {in.inputs, in.router_weights}, {"G", "S", "E"});  // [G, S, E]
#pragma omp parallel for schedule(static)
  for (int64_t g = 0; g < G; ++g) {
    ops::router_logits(in.inputs->f32.data() + g * S * M, in.router_weights->f32.data(), S, M, E,
                       logits.f32.data() + g * S * E);
  }
  return logits;
}

}  // namespace moeref
