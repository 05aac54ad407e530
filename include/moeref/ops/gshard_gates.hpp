// The gate values of GShard top-2 gating, as lingvo's Top2GatingOnLogits
// (tensorflow/lingvo, lingvo/core/gshard_layers.py) and its JAX port praxis
// top2_gating_on_logits (google/praxis, praxis/gshard_utils.py) both write them.
//
// Dims: G groups, S group size, E experts.
#pragma once

#include "moeref/tensor.hpp"

namespace moeref::ops {

// gate_k = einsum('GSE,GSE->GS', gates, cast(mask_k, float32)): gates float32
// [G, S, E], mask int32 0/1 [G, S, E] -> [G, S]. A one-hot mask selects one
// term, so the sum (in double, rounded once) is exact.
Tensor gshard_gate(const Tensor& gates, const Tensor& mask);

// gates_without_top_1 = raw_gates * (1.0 - cast(mask_1, float32)): [G, S, E].
// A token whose mask_1 was cleared keeps all its gates.
Tensor gshard_gates_without_top_1(const Tensor& raw_gates, const Tensor& mask_1);

}  // namespace moeref::ops
