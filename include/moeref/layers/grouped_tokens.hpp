// The scaffolding shared by the variants that route tokens already grouped as
// [G, S, ...]: lingvo's gating functions as ComputeGating drives them
// (tensorflow/lingvo lingvo/core/gshard_layers.py) and praxis's
// (google/praxis praxis/gshard_utils.py), whose callers' own grouping moeref
// does not model. Their experts are FeedForwardNetworksApplyGating's einsums,
// the same as mtf's (frame/mtf_expert_layer.hpp).
//
// Dims: G groups, S group size, E experts, C expert capacity, M model dim,
//       H expert hidden dim, N expert output dim (= M).
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "moeref/frame/frame.hpp"
#include "moeref/frame/hparam_table.hpp"
#include "moeref/ops/mtf_activations.hpp"

namespace moeref {

// Resolves G, S, E (required), M (required in scope "layer" or when
// `needs_router`, else optional), and in scope "layer" H and N = M. Fails
// naming dims.B or dims.L, with `why_not_batch_length`, when either is given.
void resolve_grouped_dims(Frame& frame, bool needs_router, const std::string& why_not_batch_length);

// Whether ComputeGating's router runs: unless the config supplies the logits.
bool grouped_router_runs(const Frame& frame);

// x [G, S, M], U[-1, 1) when generated, taken when the layer runs, the router
// needs it, or the config supplies it (then only recorded); nullptr otherwise.
const Tensor* take_grouped_x(Frame& frame, bool needs_router);

// The router of lingvo's ComputeGating (and of praxis's layer): the supplied
// logits [G, S, E], or logits = einsum('GSM,ME->GSE', x, router_weights) without
// bias, router_weights [M, E] generated U[-sqrt(6/M), sqrt(6/M)) (variance 2/M,
// logits of order one) unless supplied. Records step "logits"; `x` is the input
// take_grouped_x returned (never nullptr when logits are not supplied).
const Tensor& grouped_router_logits(Frame& frame, const Tensor* x);

// paddings [G, S] (1 = padded token) when the config supplies it, else nullptr.
// Fails naming the element and `allowed` when a value lies outside [0, 1] or,
// with `zero_or_one`, is neither 0 nor 1.
const Tensor* take_grouped_paddings(Frame& frame, bool zero_or_one, const std::string& allowed);

// Declares `activation`, the experts' activation of FeedForwardNetworksApplyGating
// (read in scope "layer" only), cited at `where`, known to the source as `aliases`.
template <typename P>
void declare_grouped_activation(HparamTable<P>& table, std::vector<std::string> P::*field, const std::string& where,
                                std::vector<std::string> aliases) {
  table.choice_list("activation", field, ops::activation_names())
      .defaults_to("relu")
      .means("Expert activation (scope layer); a list multiplies one dense factor per entry (GLU style).")
      .cites(where)
      .known_as(std::move(aliases))
      .about("activation");
}

// The experts and combine of FeedForwardNetworksApplyGating on x [G, S, M], with
// weights "wi" (or "wi_0", "wi_1", ... for several activation factors) and "wo".
void grouped_expert_layer(Frame& frame, const Tensor& x, const Tensor& dispatch_tensor, const Tensor& combine_tensor,
                          const std::vector<std::string>& activation);

}  // namespace moeref
