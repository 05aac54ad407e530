// tf.nn.softmax as TensorFlow's CPU kernel computes it (tensorflow/tensorflow,
// tensorflow/core/kernels/softmax_op_functor.h, SoftmaxEigenImpl::Compute):
//   shifted = x - max(x);  t = exp(shifted);  p = t * (1 / sum(t)).
// A reciprocal multiply, not a division and not exp(x - logsumexp) as mtf does.
// Every op rounds to float32 in that order; exp is evaluated in double and
// rounded once; the sum accumulates in double in index order and rounds once
// (spec/notation.md §4.2, §4.3).
#pragma once

#include <cstdint>

namespace moeref::ops {

// logits, probs: [rows, E] row-major. probs may not alias logits.
void tf_softmax(const float* logits, float* probs, int64_t rows, int64_t num_experts);

}  // namespace moeref::ops
