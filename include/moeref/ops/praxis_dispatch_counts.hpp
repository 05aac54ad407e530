// praxis's dispatch statistics (google/praxis, praxis/gshard_utils.py,
// top2_gating_on_logits, returned to the layer for its summaries):
//
//   dispatch_count_tensor = jnp.sum(combine_tensor.astype(bool).astype(jnp.int32), [-2, -1])
//   dispatch_k = jnp.sum(dispatch_count_tensor == k)                  # k = 0, 1, 2
//   if paddings is not None:
//     dispatch_0 -= jnp.sum(paddings.astype(jnp.int32))
#pragma once

#include <cstdint>

#include "moeref/tensor.hpp"

namespace moeref::ops {

// How many slots each token is dispatched to: combine [G, S, E, C] -> int32 [G, S].
Tensor praxis_dispatch_count(const Tensor& combine_tensor);

// How many tokens are dispatched to exactly k slots.
int32_t praxis_tokens_dispatched(const Tensor& dispatch_count_tensor, int32_t k);

// sum(paddings.astype(int32)): each padding truncated toward zero (0.5 counts 0).
int32_t praxis_paddings_count(const Tensor& paddings);

}  // namespace moeref::ops
