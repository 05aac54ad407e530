// Softmax as jax.nn.softmax computes it (jax-ml/jax, jax/_src/nn/functions.py,
// `_softmax`, at cec06d116c): x_max = max(x); unnormalized = exp(x - x_max);
// result = unnormalized / sum(unnormalized). One true float32 division per
// element, unlike mtf's exp(x - logsumexp) (ops/softmax.hpp).
//
// Every op rounds to float32 in that order; exp is evaluated in double and
// rounded once; the sum accumulates in double and rounds once (notation §4).
#pragma once

#include <cstdint>

namespace moeref::ops {

// logits, probs: [rows, E] row-major. probs may not alias logits.
void jax_softmax(const float* logits, float* probs, int64_t rows, int64_t num_experts);

}  // namespace moeref::ops
