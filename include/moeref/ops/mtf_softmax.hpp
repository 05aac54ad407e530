// Softmax as mtf computes it (tensorflow/mesh, mesh_tensorflow/ops.py, softmax ->
// log_softmax -> reduce_logsumexp): exp(x - (log(sum_j exp(x_j - max)) + max)).
// No division. Every op rounds to float32 in the source's order; exp and log
// are evaluated in double and rounded once; the sum accumulates in double.
#pragma once

#include <cstdint>

namespace moeref::ops {

// logits, probs: [rows, E] row-major. probs may not alias logits.
void mtf_softmax(const float* logits, float* probs, int64_t rows, int64_t num_experts);

// log(sum_j exp(x_j - max)) + max for one row of E values (mtf reduce_logsumexp).
float mtf_logsumexp(const float* row, int64_t num_experts);

}  // namespace moeref::ops
