// Top-k selection along one row, with the two tie rules the expert-choice
// gating functions inherit from their frameworks. Both compare float32 values
// with <, so -0.0 and +0.0 are equal (JAX canonicalises zeros before sorting;
// TF's comparator treats them as equal). NaN is not handled: moeref's inputs are
// finite, and the scores fed to these ops are products of finite probabilities.
#pragma once

#include <cstdint>

namespace moeref::ops {

// tf.math.top_k on CPU (tensorflow/tensorflow, tensorflow/core/kernels/topk_op.cc,
// TopKFunctor<CPUDevice, T>::Compute): the k entries that come first in the
// strict order "larger value first, then lower index" (its `stable_comp`; the
// k == 1 and k == n fast paths select the same set). Among equal values at the
// cut the LOWER indices are selected. Requires 0 <= k <= n (TopK raises
// InvalidArgument "input must have at least k columns" otherwise). Writes the k
// indices in that order, which is what sorted=True returns; with sorted=False
// TF returns the same set in an unspecified (heap) order.
void tf_top_k_indices(const float* values, int64_t n, int64_t k, int32_t* indices);

// How many entries praxis's top_k returns for k on a row of n: sorted[..., -k:]
// is Python slicing, so k > n returns all n entries and k == 0 ([-0:] == [0:])
// also returns all n.
int64_t praxis_top_k_count(int64_t n, int64_t k);

// praxis top_k (google/praxis, praxis/gshard_utils.py, top_k):
// lax.sort_key_val(x, arange) sorts ascending and is stable (is_stable=True by
// default), then the LAST k entries are taken. Among equal values at the cut the
// HIGHER indices are selected, and the output is in ascending value order (equal
// values in ascending index order). Writes praxis_top_k_count(n, k) indices.
void praxis_top_k_indices(const float* values, int64_t n, int64_t k, int32_t* indices);

}  // namespace moeref::ops
