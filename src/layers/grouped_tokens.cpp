#include "moeref/layers/grouped_tokens.hpp"

#include <cmath>

#include "moeref/error.hpp"
#include "moeref/frame/mtf_expert_layer.hpp"
#include "moeref/json_number.hpp"
#include "moeref/ops/mtf_activations.hpp"
#include "moeref/ops/router.hpp"

namespace moeref {

void resolve_grouped_dims(Frame& f, bool needs_router, const std::string& why_not_batch_length) {
  f.forbid_dim("B", why_not_batch_length);
  f.forbid_dim("L", why_not_batch_length);
  f.required_dim("G", "the number of groups, an integer >= 1");
  f.required_dim("S", "the group size, an integer >= 1");
  f.required_dim("E", "the number of experts, an integer >= 1");
  f.resolve_model_dims(needs_router, "", "");
  if (f.layer_scope()) {
    f.derived_dim("N", f.dim("M"), "the experts' output dim is M (wo is [E, H, M])");
  }
}

bool grouped_router_runs(const Frame& f) { return !f.supplied("logits"); }

const Tensor* take_grouped_x(Frame& f, bool needs_router) {
  if (!f.layer_scope() && !needs_router && !f.supplied("x")) return nullptr;
  return &f.inputs().float_input("x", {"G", "S", "M"}, {f.dim("G"), f.dim("S"), f.dim("M")}, -1.0, 1.0);
}

const Tensor& grouped_router_logits(Frame& f, const Tensor* x) {
  const int64_t G = f.dim("G"), S = f.dim("S"), E = f.dim("E");
  const Tensor* logits = f.inputs().optional_input("logits", {"G", "S", "E"}, {G, S, E});
  if (logits != nullptr) return f.step("logits", {logits}, *logits);
  const int64_t M = f.dim("M");
  const double bound = std::sqrt(6.0 / static_cast<double>(M));
  const Tensor& router_weights = f.inputs().float_input("router_weights", {"M", "E"}, {M, E}, -bound, bound);
  return f.step("logits", {x, router_weights}, ops::router_logits(*x, router_weights));
}

const Tensor* take_grouped_paddings(Frame& f, bool zero_or_one, const std::string& allowed) {
  const Tensor* paddings = f.inputs().optional_input("paddings", {"G", "S"}, {f.dim("G"), f.dim("S")});
  if (paddings == nullptr) return nullptr;
  for (size_t i = 0; i < paddings->f32.size(); ++i) {
    const float padding = paddings->f32[i];
    const bool allowed_value =
        zero_or_one ? (padding == 0.0f || padding == 1.0f) : (padding >= 0.0f && padding <= 1.0f);
    if (!allowed_value) {
      std::string value;
      append_float32(value, padding);
      fail_input("inputs.paddings" + paddings->named_index(static_cast<int64_t>(i)), value, allowed);
    }
  }
  return paddings;
}

void grouped_expert_layer(Frame& f, const Tensor& x, const Tensor& dispatch_tensor, const Tensor& combine_tensor,
                          const std::vector<std::string>& activation) {
  const std::vector<ops::Activation> activations = ops::activations_named(activation);
  const MtfExpertWeights weights =
      take_mtf_expert_weights(f, activations.size(), f.dim("E"), f.dim("M"), f.dim("H"), f.dim("N"));
  mtf_expert_layer(f, x, dispatch_tensor, combine_tensor, activations, weights, std::nullopt);
}

}  // namespace moeref
