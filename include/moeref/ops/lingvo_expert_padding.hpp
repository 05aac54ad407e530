// lingvo's disabled experts (tensorflow/lingvo, lingvo/core/gshard_layers.py,
// Top2GatingOnLogits, the expert_padding_idx argument):
//
//   epad_mask = np.zeros(logits.shape); epad_mask[:, :, np.array(expert_padding_idx)] = 1.0
//   very_negative_logits = ones_like(logits) * logits.dtype.max * -0.7
//   logits = where(epad_mask > 0, very_negative_logits, logits)
//
// numpy indexing: negative indices count from the end, duplicates are harmless.
#pragma once

#include <cstdint>
#include <vector>

#include "moeref/tensor.hpp"

namespace moeref::ops {

// logits float32 [G, S, E]; every index in [-E, E-1] (the caller checked).
Tensor lingvo_expert_padded_logits(const Tensor& logits, const std::vector<int64_t>& expert_padding_idx);

}  // namespace moeref::ops
