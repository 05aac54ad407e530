// The load-balancing loss of GShard top-2 gating, as lingvo's Top2GatingOnLogits
// (tensorflow/lingvo, lingvo/core/gshard_layers.py) and praxis
// top2_gating_on_logits (google/praxis, praxis/gshard_utils.py) both write it:
//
//   density_denom = 1.0                                  (legacy_mtf_behavior)
//                 = reduce_mean(importance, axis=1)[:, newaxis] + 1e-6   (otherwise)
//   density_1 = reduce_mean(cast(mask_1, float32), axis=-2) / density_denom
//   density_1_proxy = reduce_mean(density_1_proxy, axis=-2) / density_denom
//   aux_loss = reduce_mean(density_1_proxy * density_1) * (E * E)
//
// reduce_mean and jnp.mean are sum / f32(count), a true division; sums of
// non-integers accumulate in double and round once (spec/notation.md §4.3).
// Dims: G groups, S group size, E experts.
#pragma once

#include "moeref/tensor.hpp"

namespace moeref::ops {

// density_denom [G] (the source's [G, 1]) from importance float32 [G, S].
Tensor gshard_density_denom(const Tensor& importance);

// density [G, E] from an int32 0/1 mask or float32 gates [G, S, E]; divided by
// density_denom [G] when it is given (the legacy 1.0 divides nothing).
Tensor gshard_density(const Tensor& values, const Tensor* density_denom);

// reduce_mean(density_1_proxy * density_1) * f32(E * E): the products summed in
// double and rounded once, / f32(G * E), then * f32(E * E).
float gshard_aux_loss(const Tensor& density_1_proxy, const Tensor& density_1);

}  // namespace moeref::ops
