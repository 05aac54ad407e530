// The loss and summary arithmetic of Mesh TensorFlow's switch-family gating
// functions (tensorflow/mesh, mesh_tensorflow/transformer/moe.py at da90793:
// _switch_gating, _switch_max_gating, _ntlb_gating, _expert_selection_gating),
// with mtf's broadcasting: a binary op on named tensors yields the union of
// their dims (ops.py, _infer_binary_broadcast_shape), so `x *= importance_mask`
// can add the S dim to a [G, E] density. Sums of non-integer values accumulate
// in double in the product's index order and round once (notation §4.3);
// reduce_mean is reduce_sum * f32(out_size / in_size) (notation §3).
#pragma once

#include <cstdint>

#include "moeref/tensor.hpp"

namespace moeref::ops {

// density = reduce_mean(x, group_size_dim): [G, S, R...] -> [G, R...], the sum
// over S (exact for int32 masks, double for float32) times f32(1/S). R is E for
// top-1 masks and gates, K and E for NTLB's [G, S, K, E] masks.
Tensor mtf_density_over_s(const Tensor& values);

// density_1_proxy *= cast(equal(importance, 1.0)): [G, E] times [G, S] is
// [G, E, S] (the union of the dims), 0 where the token is not important.
Tensor mtf_proxy_times_important(const Tensor& density_1_proxy, const Tensor& important);

// loss = reduce_mean(density_1_proxy * density_1) * float(E * E), with
// density_1_proxy [G, E] or [G, E, S] and density_1 [G, E] or [G, K, E]. The
// product has the union of the dims: [G, E], [G, E, S], [G, K, E] or
// [G, E, S, K]; its mean divides by that many elements.
float mtf_union_balance_loss(const Tensor& density_1_proxy, const Tensor& density_1);

// reduce_sum(-p * log(p + 1e-9), reduced_dim = `axis`) of a rank-3 float32
// tensor: (-p) * log(p + f32(1e-9)) per element, summed over `axis` (0, 1 or 2).
Tensor mtf_entropy(const Tensor& probs, int axis);

// reduce_mean over every dim: f32(sum) * f32(1 / number of elements).
float mtf_reduce_mean_all(const Tensor& values);

// reduce_sum over every dim of a float32 tensor (0/1 and integer values are exact).
float mtf_reduce_sum_all(const Tensor& values);

// a / b on scalars: a * reciprocal(b) (mtf divide by a tensor, notation §3).
float mtf_divide(float a, float b);

}  // namespace moeref::ops
