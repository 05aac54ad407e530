// Elementwise arithmetic and comparisons on whole tensors, one float32 rounding
// per operation in the order written (spec/notation.md §2), as TensorFlow's and
// JAX's elementwise kernels compute them. Shapes follow the first operand.
#pragma once

#include "moeref/tensor.hpp"

namespace moeref::ops {

// x * expand_dims(cast(factor, x.dtype), -1): values [..., E] times a per-row
// factor [...] (or values and factor of the same shape). int32 values take the
// factor truncated toward zero (tf.cast and astype(int32) of a float32);
// float32 values take it as float32. The factor may have other dims of the same
// element count (a reshape, as lingvo's ComputeGating regroups).
Tensor scale_by(const Tensor& values, const Tensor& factor);

// 1.0 - x, float32.
Tensor one_minus(const Tensor& x);

// equal(x, value) and greater(x, value) on float32 x, as int32 0/1.
Tensor equal_to(const Tensor& x, float value);
Tensor greater_than(const Tensor& x, float value);

// a + b and a / b (a true float32 division, TF RealDiv and jnp.divide), float32
// of one shape; and a + f32(scalar), a Python scalar meeting a float32 tensor.
Tensor add(const Tensor& a, const Tensor& b);
Tensor add(const Tensor& a, float scalar);
Tensor divide(const Tensor& a, const Tensor& b);

// where(x > 0, x, ones_like(x)), float32: a denominator that cannot be zero.
Tensor positive_or_one(const Tensor& x);

}  // namespace moeref::ops
