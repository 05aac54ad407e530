// The expert half of mtf transformer_moe_layer_v1 (tensorflow/mesh,
// mesh_tensorflow/transformer/moe.py): dispatch einsum, expert FFN
// (mtf.layers.dense_product, optional dropout, mtf.layers.dense), combine einsum.
//
// Dims: G groups, S group size, E experts, C capacity, M model, H hidden, N output.
// Matrix products use Eigen float32 GEMM, single-threaded inside; the loops over
// groups and experts are the OpenMP-parallel ones, so results do not depend on
// the thread count.
#pragma once

#include <vector>

#include "moeref/inputs.hpp"
#include "moeref/ops/activations.hpp"
#include "moeref/tensor.hpp"
#include "moeref/trace.hpp"

namespace moeref::ops {

struct ExpertLayerInputs {
  const Tensor* inputs = nullptr;           // [G, S, M] float32
  const Tensor* dispatch_tensor = nullptr;  // [G, S, E, C] int32 (0/1)
  const Tensor* combine_tensor = nullptr;   // [G, S, E, C] float32
  std::vector<Activation> activations;      // one factor per activation
  std::vector<const Tensor*> wi;            // one [E, M, H] per factor
  const Tensor* wo = nullptr;               // [E, H, N]
  const Tensor* dropout_uniform = nullptr;  // [E, G, C, H] or nullptr for no dropout
  double keep_prob = 1.0;
};

// Fills layer.wi and layer.wo from `inputs` (supplied, or generated U[-sqrt(3/M), sqrt(3/M))
// and U[-sqrt(3/H), sqrt(3/H))), under mtf.layers.dense_product's names: "wi" for one
// activation, "wi_0", "wi_1", ... for several, and "wo". layer.activations must be set.
void add_mtf_expert_weights(ExpertLayerInputs& layer, InputSet& inputs, int64_t E, int64_t M, int64_t H, int64_t N);

// Records expert_inputs [E,G,C,M], expert_hidden [E,G,C,H], expert_hidden_dropout
// (when dropout_uniform is set), expert_outputs [E,G,C,N] and outputs [G,S,N].
void mtf_expert_layer(const ExpertLayerInputs& in, Trace& trace);

}  // namespace moeref::ops
