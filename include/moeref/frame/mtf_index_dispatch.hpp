// The fast path of the mtf expert layer (`moeref run --fast`): the dispatch and
// combine einsums computed from the nonzero entries of the dispatch and combine
// tensors instead of as dense matrix products.
//
// Dims: G groups, S group size, E experts, C capacity, M model, N output.
// Each element sums the same nonzero terms in the same order as the literal product
// (ops::matmul, index order) and leaves out only terms that are ±0, so for finite
// values expert_inputs is bit-identical to the literal path and outputs equal in
// value (only the sign of a zero can differ). Parallel over groups. (The fast path's
// expert FFN between the two fuses its multiply-adds: mtf_expert_layer.cpp.)
#pragma once

#include "moeref/tensor.hpp"

namespace moeref {

// expert_inputs [E, G, C, M] (overwritten) = einsum(inputs [G, S, M],
// dispatch_tensor [G, S, E, C] int32) over S.
void index_dispatch(const Tensor& inputs, const Tensor& dispatch_tensor, Tensor& expert_inputs);

// outputs [G, S, N] (overwritten) = einsum(expert_outputs [E, G, C, N],
// combine_tensor [G, S, E, C]) over E and C.
void index_combine(const Tensor& expert_outputs, const Tensor& combine_tensor, Tensor& outputs);

}  // namespace moeref
