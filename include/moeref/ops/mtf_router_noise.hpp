// The random perturbations of Mesh TensorFlow's switch-family routers, as
// float32 ops on recorded draws (every draw is an input: spec/notation.md §4.7).
// Each op rounds to float32 in the source's order; log is computed in double
// and rounded once (notation §4.2).
#pragma once

#include "moeref/tensor.hpp"

namespace moeref::ops {

// tf.random.uniform(shape, minval, maxval, dtype=float32) from its raw draw
// rnd ~ U[0, 1) (tensorflow/tensorflow, tensorflow/python/ops/random_ops.py,
// random_uniform): minval and maxval become float32 tensors, then
// rnd * (maxval - minval) + minval, one rounding per op.
Tensor tf_uniform_in_range(const Tensor& rnd, double minval, double maxval);

// x * y, elementwise, float32 of one shape (an mtf multiply of equal shapes).
Tensor mtf_multiply(const Tensor& x, const Tensor& y);

// mtf.dropout(x, is_training=True, keep_prob) (tensorflow/mesh,
// mesh_tensorflow/ops.py, dropout): noise = cast(less(uniform, keep_prob)),
// noise /= keep_prob (a Python scalar: noise * f32(1 / keep_prob)), x * noise.
Tensor mtf_dropout(const Tensor& x, const Tensor& uniform, double keep_prob);

// The Gumbel noise of mtf.sample_with_temperature: g = -log(-log(u)).
Tensor mtf_gumbel(const Tensor& u);

// logits += g * temperature: logits + (g * f32(temperature)).
Tensor mtf_add_scaled(const Tensor& logits, const Tensor& g, double temperature);

}  // namespace moeref::ops
