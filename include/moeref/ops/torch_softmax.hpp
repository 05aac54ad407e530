// torch.softmax and torch.logsumexp along the last dim, as PyTorch's CPU
// kernels compute them (pytorch/pytorch v1.13.1, the version of Debian 12's
// python3-torch):
//   softmax: aten/src/ATen/native/cpu/SoftMaxKernel.cpp, _vec_softmax_lastdim:
//     max_input = max(x); out = exp(x - max_input); tmp_sum = sum(out);
//     tmp_sum = 1 / tmp_sum; out = out * tmp_sum.
//     The same operations, in the same order, as TensorFlow's CPU softmax
//     (tf_softmax.hpp): a reciprocal multiply, not a division.
//   logsumexp: aten/src/ATen/native/ReduceOps.cpp, logsumexp_out_impl:
//     maxes = amax(x) (an infinite max becomes 0); sum(exp(x - maxes)).log_().add_(maxes).
// Every op rounds to float32 in that order; exp and log are evaluated in double
// and rounded once; sums accumulate in double in index order and round once
// (spec/notation.md §4.2, §4.3). torch's vectorised exp (Sleef, <= 1 ulp) and its
// own summation order may differ from these in the last bits.
#pragma once

#include <cstdint>

namespace moeref::ops {

// logits, probs: [rows, E] row-major. probs may not alias logits.
void torch_softmax(const float* logits, float* probs, int64_t rows, int64_t num_experts);

// x: [rows, E] row-major; out: [rows].
void torch_logsumexp(const float* x, float* out, int64_t rows, int64_t num_experts);

}  // namespace moeref::ops
