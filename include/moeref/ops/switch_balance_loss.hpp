// The Switch Transformer load-balancing loss, E^2 * mean_{G,E}(density_proxy * density), with
// means as PyTorch and JAX compute them: a sum, then ONE float32 true division by f32(count)
// (pytorch/pytorch aten/src/ATen/native/ReduceOps.cpp mean_out on CPU: `sum(...).div_(n)`;
// jax-ml/jax jax/_src/numpy/reductions.py _mean: `lax.div(sum, normalizer)`). mtf multiplies by
// f32(1/n) instead (mtf_balance_loss.hpp). Sums accumulate in double and round once
// (spec/notation.md §4.3).
#pragma once

#include <cstdint>

#include "moeref/tensor.hpp"

namespace moeref::ops {

// values [G, S, E] (int32 0/1 or float32) -> [G, E] float32: f32(sum over S) / f32(S).
Tensor mean_over_s_by_division(const Tensor& values);

// (f32(sum over G, E of f32(proxy * density)) / f32(G * E)) * f32(num_experts^2).
float switch_balance_loss(const Tensor& density_proxy, const Tensor& density, int64_t num_experts);

}  // namespace moeref::ops
