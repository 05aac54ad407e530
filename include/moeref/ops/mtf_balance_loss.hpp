// mtf's load-balancing loss and its densities (tensorflow/mesh,
// mesh_tensorflow/transformer/moe.py, _top_2_gating and _switch_gating):
//   density = reduce_mean(x, group_size_dim)   (reduce_sum * f32(1/S))
//   loss = reduce_mean(density_proxy * density) * float(E * E)
#pragma once

#include "moeref/tensor.hpp"

namespace moeref::ops {

// [G, S, E] (int32 masks or float32 gates) -> [G, E] float32: the sum over S
// (exact for 0/1 masks, accumulated in double for gates) times f32(1/S).
Tensor mtf_density(const Tensor& values);

// reduce_mean(density_proxy * density) * E^2 in the source's float32 ops: the
// products summed in double, then * f32(1/(G*E)), then * f32(E*E).
float mtf_balance_loss(const Tensor& density_proxy, const Tensor& density);

}  // namespace moeref::ops
