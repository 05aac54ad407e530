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
#include <vector>

#include "moeref/frame/frame.hpp"

namespace moeref {

// Resolves G, S, E (required), M (required in scope "layer" or when
// `needs_router`, else optional), and in scope "layer" H and N = M. Fails
// naming dims.B or dims.L, with `why_not_batch_length`, when either is given.
void resolve_grouped_dims(Frame& frame, bool needs_router, const std::string& why_not_batch_length);

// x [G, S, M], U[-1, 1) when generated, taken when the layer runs, the router
// needs it, or the config supplies it (then only recorded); nullptr otherwise.
const Tensor* take_grouped_x(Frame& frame, bool needs_router);

// The experts and combine of FeedForwardNetworksApplyGating on x [G, S, M], with
// weights "wi" (or "wi_0", "wi_1", ... for several activation factors) and "wo".
void grouped_expert_layer(Frame& frame, const Tensor& x, const Tensor& dispatch_tensor, const Tensor& combine_tensor,
                          const std::vector<std::string>& activation);

}  // namespace moeref
