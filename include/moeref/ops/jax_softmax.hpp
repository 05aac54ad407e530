// jax.nn.softmax along the last dim (jax-ml/jax, jax/_src/nn/functions.py,
// _softmax):
//   unnormalized = exp(x - max(x)); result = unnormalized / sum(unnormalized).
// The normalisation is a true float32 division. Float32 ops in that order; exp
// is evaluated in double and rounded once; the sum accumulates in double and is
// rounded once (notation §4.2-4.3).
#pragma once

#include <cstdint>

namespace moeref::ops {

// logits, probs: [rows, E] row-major. probs may not alias logits. `round_to`, when
// given, rounds the result of every op to a narrower type (ops/bfloat16.hpp: the
// same softmax on bfloat16 values).
void jax_softmax(const float* logits, float* probs, int64_t rows, int64_t num_experts,
                 float (*round_to)(float) = nullptr);

}  // namespace moeref::ops
