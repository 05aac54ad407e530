// Max and argmax along the last dim with the lowest index winning ties
// (mtf.top_1 lowers to tf.math.argmax, which returns the smallest index among
// equal maxima).
#pragma once

#include <cstdint>

#include "moeref/tensor.hpp"

namespace moeref::ops {

// values: [rows, E]; writes max_value[rows] and max_index[rows].
void top_1_lowest_index(const float* values, int64_t rows, int64_t num_experts, float* max_value, int32_t* max_index);

// argmax(values, axis=-1) as int32 (tf.math.argmax, jnp.argmax): float32
// [..., E] -> [...], the lowest index among equal maxima.
Tensor argmax_lowest_index(const Tensor& values);

}  // namespace moeref::ops
