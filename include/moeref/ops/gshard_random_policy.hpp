// The 'random' second-expert policy of GShard top-2 gating, as lingvo's
// Top2GatingOnLogits (tensorflow/lingvo, lingvo/core/gshard_layers.py) and praxis
// top2_gating_on_logits (google/praxis, praxis/gshard_utils.py) both write it:
//
//   sampled_2 = less(uniform(gate_2.shape), gate_2 / max(second_expert_threshold, 1e-9))
//   gate_2 *= cast(sampled_2); mask_2 *= cast(expand_dims(sampled_2, -1))
//
// max() is Python's, on doubles; the result meets gate_2 as a float32 constant
// and the division is a true float32 division. The comparison is strict.
#pragma once

#include "moeref/tensor.hpp"

namespace moeref::ops {

// f32(max(second_expert_threshold, 1e-9)): what gate_2 is divided by.
float gshard_random_divisor(double second_expert_threshold);

// sampled_2 = less(uniform, gate_2 / divisor): int32 0/1 [G, S].
Tensor gshard_sampled_2(const Tensor& uniform, const Tensor& gate_2, double second_expert_threshold);

}  // namespace moeref::ops
