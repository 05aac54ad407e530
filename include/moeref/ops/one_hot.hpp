// one_hot and its inverse reductions over the experts dim, on int32 tensors.
#pragma once

#include <string>

#include "moeref/tensor.hpp"

namespace moeref::ops {

// index [...] int32 -> [..., depth] int32 0/1 under dim `depth_dim`; an index
// outside [0, depth) gives an all-zero row (as tf.one_hot and mtf.one_hot do).
Tensor one_hot(const Tensor& index, int64_t depth, const std::string& depth_dim);

// reduce_sum over the last dim of an int32 tensor: [..., E] -> [...].
Tensor sum_over_last(const Tensor& values);

}  // namespace moeref::ops
