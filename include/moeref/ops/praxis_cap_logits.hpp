// praxis's soft cap on gating logits (google/praxis, praxis/gshard_utils.py,
// _cap_logits inside the gating functions):
//
//   cap = jnp.array(gating_logit_cap, dtype=logits.dtype)
//   logits = cap * jnp.tanh(logits / cap)
//
// float32: the division, tanh in double rounded once, then the product.
#pragma once

#include "moeref/tensor.hpp"

namespace moeref::ops {

// logits float32 [...]; gating_logit_cap > 0 (the sources skip the cap otherwise).
Tensor praxis_cap_logits(const Tensor& logits, double gating_logit_cap);

}  // namespace moeref::ops
