// mtf.top_k along one row, as Mesh TensorFlow dispatches it (tensorflow/mesh,
// mesh_tensorflow/ops.py at da90793: top_k, _iterative_top_k, top_1,
// TopKOperation.__init__ and .lower). n entries per row, k returned.
//
//   2 <= k <= 4: _iterative_top_k. k rounds of top_1 (the max, lowest index
//     among equal maxima); after every round but the last the chosen entry gets
//     one_hot(index, on_value=-1e9) added, i.e. x + f32(-1e9). Nothing checks
//     k <= n: with k > n the rounds after the n-th pick entries already chosen,
//     whose values are now x - 1e9 (exactly -1e9 for 0 <= x < 32), so the
//     returned values hold -1e9 and the indices repeat.
//   k == 1: TopKOperation lowered to reduce_max and argmax (lowest index).
//   k == 0 and k >= 5: TopKOperation lowered to tf.math.top_k: larger values
//     first, the lower index first among equal values. TopKOperation raises
//     ValueError ("k_dim.size must be <= reduced_dim.size") when k > n.
// For k <= n every branch returns the same entries in the same order.
#pragma once

#include <cstdint>

namespace moeref::ops {

// True when mtf.top_k takes the iterative path for k (2 <= k <= 4).
bool mtf_top_k_is_iterative(int64_t k);

// True when mtf.top_k runs for k on rows of n; false where TopKOperation
// raises (k > n and k not in [2, 4]).
bool mtf_top_k_runs(int64_t n, int64_t k);

// One row of n entries at row[0], row[stride], ..., row[(n - 1) * stride]:
// writes values[0..k) and indices[0..k). Requires mtf_top_k_runs(n, k).
void mtf_top_k(const float* row, int64_t stride, int64_t n, int64_t k, float* values, int32_t* indices);

}  // namespace moeref::ops
