// praxis's soft cap on gating logits (google/praxis, praxis/gshard_utils.py,
// _cap_logits inside the gating functions):
//   cap = jnp.array(gating_logit_cap, dtype=logits.dtype)
//   logits = cap * jnp.tanh(logits / cap)
// Float32 ops in that order; tanh is evaluated in double and rounded once
// (spec/notation.md §4, rule 2).
#pragma once

#include "moeref/tensor.hpp"

namespace moeref::ops {

// logits float32 of any shape; cap > 0 (the callers skip the cap when it is 0).
Tensor praxis_cap_logits(const Tensor& logits, float cap);

}  // namespace moeref::ops
