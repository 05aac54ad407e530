// Softmax along the last dim as TensorFlow's CPU kernel computes it
// (tensorflow/tensorflow, tensorflow/core/kernels/softmax_op_functor.h,
// SoftmaxEigenImpl::Compute, the non-log branch):
//   shifted = x - max(x); t = exp(shifted); p = t * inverse(sum(t)).
// The normalisation is a multiplication by the reciprocal of the sum, not a
// division. Float32 ops in that order; exp is evaluated in double and rounded
// once; the sum accumulates in double and is rounded once (notation §4.2-4.3);
// the reciprocal is one correctly rounded float32 division.
#pragma once

#include <cstdint>

namespace moeref::ops {

// logits, probs: [rows, E] row-major. probs may not alias logits.
void tf_softmax(const float* logits, float* probs, int64_t rows, int64_t num_experts);

}  // namespace moeref::ops
