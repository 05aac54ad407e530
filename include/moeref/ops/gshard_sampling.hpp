// The 'sampling' second-expert policy of GShard top-2 gating: a Gumbel-max draw
// of the second expert among all but the first, as lingvo's Top2GatingOnLogits
// (tensorflow/lingvo, lingvo/core/gshard_layers.py) and praxis
// top2_gating_on_logits (google/praxis, praxis/gshard_utils.py) both write it:
//
//   noise = -log(-log(uniform(logits.shape)))
//   very_negative_logits = ones_like(logits) * logits.dtype.max * -0.7
//   updated_logits = where(mask_1 > 0.0, very_negative_logits, logits)
//   noised_logits = updated_logits + noise
//   index_2 = argmax(noised_logits, axis=-1)
//
// Dims: G groups, S group size, E experts. log is evaluated in double and
// rounded once, op by op; there is no clamp (U = 0 gives -inf).
#pragma once

#include "moeref/tensor.hpp"

namespace moeref::ops {

// -0.7 * float32 max in float32: f32(FLT_MAX * f32(-0.7)) = -2.3819763e38 (lingvo
// multiplies max by -0.7, praxis -0.7 by max; in float32 both give this value).
float gshard_very_negative_logit();

// noise = -log(-log(U)), float32 [G, S, E].
Tensor gumbel_noise(const Tensor& uniform);

// updated_logits = where(mask_1 > 0, very_negative_logits, logits): the first
// choice's logit replaced, float32 [G, S, E].
Tensor gshard_updated_logits(const Tensor& logits, const Tensor& mask_1);

}  // namespace moeref::ops
