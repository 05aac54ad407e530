// The combine and dispatch tensors of GShard top-2 gating, as lingvo's
// Top2GatingOnLogits (tensorflow/lingvo, lingvo/core/gshard_layers.py) and praxis
// top2_gating_on_logits (google/praxis, praxis/gshard_utils.py) both write them,
// for each rank k:
//
//   b = one_hot(cast(position_in_expert_k, int32), C)                     # GSC
//   a = expand_dims(gate_k * cast(mask_k_flat), -1) * one_hot(index_k, E) # GSE
//   part_k = einsum('GSE,GSC->GSEC', a, b)
//   combine_tensor = part_1 + part_2
//   dispatch_tensor = cast(cast(combine_tensor, bool))
//
// all float32. one_hot of a position >= C is an all-zero row. A dropped choice
// has position 0 but weight 0, so it adds 0 to slot 0.
// Dims: G groups, S group size, E experts, C expert capacity.
#pragma once

#include <cstdint>

#include "moeref/tensor.hpp"

namespace moeref::ops {

// One rank's choice per token, each [G, S].
struct GshardRank {
  const Tensor& gate;           // float32 gate_k, final
  const Tensor& mask_flat;      // int32 mask_k_flat
  const Tensor& index;          // int32 index_k
  const Tensor& position_flat;  // int32 position_in_expert_k, flat
};

// combine_tensor float32 [G, S, E, C].
Tensor gshard_combine_tensor(const GshardRank& first, const GshardRank& second, int64_t E, int64_t C);

}  // namespace moeref::ops
