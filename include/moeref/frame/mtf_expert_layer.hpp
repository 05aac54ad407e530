// The expert half of mtf transformer_moe_layer_v1 (tensorflow/mesh,
// mesh_tensorflow/transformer/moe.py): dispatch einsum, expert FFN
// (mtf.layers.dense_product, optional dropout, mtf.layers.dense), combine einsum.
// lingvo's FeedForwardNetworksApplyGating and praxis's layer compute the same
// einsums for a bias-free FFN, so their variants use it too.
//
// Dims: G groups, S group size, E experts, C capacity, M model, H hidden, N output.
// Matrix products are ops::matmul (every sum in index order, no FMA: the same bits
// on any CPU), single-threaded inside; the loops over groups and experts are the
// OpenMP-parallel ones, so results do not depend on the thread count either.
#pragma once

#include <optional>
#include <vector>

#include "moeref/frame/frame.hpp"
#include "moeref/ops/mtf_activations.hpp"
#include "moeref/tensor.hpp"

namespace moeref {

struct MtfExpertWeights {
  std::vector<const Tensor*> wi;  // one [E, M, H] per activation factor
  const Tensor* wo = nullptr;     // [E, H, N]
};

// The expert weights as inputs (supplied, or generated U[-sqrt(3/M), sqrt(3/M))
// and U[-sqrt(3/H), sqrt(3/H))), under mtf.layers.dense_product's names: "wi" for
// one activation factor, "wi_0", "wi_1", ... for several, and "wo".
MtfExpertWeights take_mtf_expert_weights(Frame& frame, size_t factors, int64_t E, int64_t M, int64_t H, int64_t N);

// mtf.dropout on the expert hidden activations: keep where uniform < keep_prob.
struct MtfDropout {
  const Tensor* uniform = nullptr;  // [E, G, C, H]
  double keep_prob = 1.0;
};

// Records expert_inputs [E, G, C, M], expert_hidden [E, G, C, H],
// expert_hidden_dropout (with dropout), expert_outputs [E, G, C, N] and
// outputs [G, S, N]; returns outputs. In a group shard (Frame::group_shard) these
// steps hold the shard's groups only, computed from those groups of the operands.
const Tensor& mtf_expert_layer(Frame& frame, const Tensor& inputs, const Tensor& dispatch_tensor,
                               const Tensor& combine_tensor, const std::vector<ops::Activation>& activations,
                               const MtfExpertWeights& weights, const std::optional<MtfDropout>& dropout);

}  // namespace moeref
