// jax.nn.softmax along the last dim (jax-ml/jax, jax/_src/nn/functions.py,
// _softmax):
//   unnormalized = exp(x - max(x)); result = unnormalized / sum(unnormalized).
// The normalisation is a true float32 division. Float32 ops in that order; exp
// is evaluated in double and rounded once; the sum accumulates in double and is
// rounded once (notation §4.2-4.3).
#pragma once

#include <cstdint>

namespace moeref::ops {

// logits, probs: [rows, E] row-major. probs may not alias logits.
void jax_softmax(const float* logits, float* probs, int64_t rows, int64_t num_experts);

}  // namespace moeref::ops
