#include "moeref/layers/grouped_tokens.hpp"

#include "moeref/frame/mtf_expert_layer.hpp"
#include "moeref/ops/activations.hpp"

namespace moeref {

void resolve_grouped_dims(Frame& f, bool needs_router, const std::string& why_not_batch_length) {
  f.forbid_dim("B", why_not_batch_length);
  f.forbid_dim("L", why_not_batch_length);
  f.required_dim("G", "the number of groups, an integer >= 1");
  f.required_dim("S", "the group size, an integer >= 1");
  f.required_dim("E", "the number of experts, an integer >= 1");
  if (f.layer_scope() || needs_router) {
    f.required_dim("M", "the model dim, needed for the router or the experts");
  } else {
    f.optional_dim("M");
  }
  if (f.layer_scope()) {
    f.required_dim("H", "the expert hidden dim, needed with scope \"layer\"");
    f.derived_dim("N", f.dim("M"), "the experts' output dim is M (wo is [E, H, M])");
  }
}

const Tensor* take_grouped_x(Frame& f, bool needs_router) {
  if (!f.layer_scope() && !needs_router && !f.supplied("x")) return nullptr;
  return &f.inputs().float_input("x", {"G", "S", "M"}, {f.dim("G"), f.dim("S"), f.dim("M")}, -1.0, 1.0);
}

void grouped_expert_layer(Frame& f, const Tensor& x, const Tensor& dispatch_tensor, const Tensor& combine_tensor,
                          const std::vector<std::string>& activation) {
  const std::vector<ops::Activation> activations = ops::activations_named(activation);
  const MtfExpertWeights weights =
      take_mtf_expert_weights(f, activations.size(), f.dim("E"), f.dim("M"), f.dim("H"), f.dim("N"));
  mtf_expert_layer(f, x, dispatch_tensor, combine_tensor, activations, weights, std::nullopt);
}

}  // namespace moeref
