// How GShard top-2 gating queues choices into an expert's capacity, as lingvo's
// Top2GatingOnLogits (tensorflow/lingvo, lingvo/core/gshard_layers.py) and praxis
// top2_gating_on_logits (google/praxis, praxis/gshard_utils.py) both write it:
//
//   position_in_expert_1 = cumsum(mask_1, exclusive=True, axis=-2)
//   mask_1 *= less(position_in_expert_1, capacity)
//   position_in_expert_1 = einsum('GSE,GSE->GS', position_in_expert_1, mask_1)
//   mask_1_count = einsum('GSE->GE', mask_1)
//   position_in_expert_2 = cumsum(mask_2, exclusive=True, axis=-2) + expand_dims(mask_1_count, -2)
//
// Unlike mtf, the cumsum is not multiplied by the mask, and a dropped choice's
// flat position is 0. Masks and positions are int32 0/1 and counts (lingvo holds
// them in float32 mask_dtype: every value it can reach is an exact integer there,
// so its float comparisons decide as these integer ones do).
// Dims: G groups, S group size, E experts.
#pragma once

#include <cstdint>

#include "moeref/tensor.hpp"

namespace moeref::ops {

// cumsum(mask, exclusive=True, axis=-2), plus queued [G, E] broadcast over S
// when given: int32 [G, S, E].
Tensor gshard_position_in_expert(const Tensor& mask, const Tensor* queued);

// mask * less(position_in_expert, capacity): int32 [G, S, E].
Tensor gshard_within_capacity(const Tensor& mask, const Tensor& position_in_expert, int64_t capacity);

// einsum('GSE,GSE->GS', position_in_expert, mask): int32 [G, S].
Tensor gshard_flat_position(const Tensor& position_in_expert, const Tensor& mask);

// einsum('GSE->GE', mask): how many choices each expert took, int32 [G, E].
Tensor gshard_expert_count(const Tensor& mask);

}  // namespace moeref::ops
