// torch.softmax along the last dim as PyTorch's CPU kernel computes it in
// float32 (pytorch/pytorch, aten/src/ATen/native/cpu/SoftMaxKernel.cpp,
// _vec_softmax_lastdim): max_input = max(x); out = exp(x - max_input);
// tmp_sum = sum(out); tmp_sum = 1 / tmp_sum; out = out * tmp_sum. A reciprocal
// then a multiply: the same rule as TensorFlow's CPU kernel, so it is computed
// by ops::tf_softmax (exp in double rounded once, the sum in double in index
// order, notation §4.2-4.3). torch's vectorised exp and its SIMD sum order can
// differ from that in the last bit (notation §5).
#pragma once

#include <cstdint>

#include "moeref/ops/tf_softmax.hpp"

namespace moeref::ops {

// logits, probs: [rows, E] row-major. probs may not alias logits.
inline void torch_softmax(const float* logits, float* probs, int64_t rows, int64_t num_experts) {
  tf_softmax(logits, probs, rows, num_experts);
}

}  // namespace moeref::ops
