// The end of st-moe-pytorch's TopNGating.forward (lucidrains/st-moe-pytorch,
// st_moe_pytorch/st_moe_pytorch.py at d94e65d): the combine tensor of rank-major choices and
// the straight-through dispatch tensor as the forward pass computes it.
#pragma once

#include <cstdint>

#include "moeref/tensor.hpp"

namespace moeref::ops {

// combine_tensor = einx.multiply('k b n, k b n, k b n e, k b n c -> k b n e c', gates,
// mask_flat, one_hot(gate_indices, E), safe_one_hot(positions, C)) summed over k:
// ((gate * mask_flat) * 1[e = index]) * 1[c = position] per rank, ranks added in order. A
// position >= C selects no slot. gates float32, mask_flat, gate_indices, positions int32, all
// [K, G, S]; returns [G, S, E, C].
Tensor stmoe_combine_tensor(const Tensor& gates, const Tensor& mask_flat, const Tensor& gate_indices,
                            const Tensor& positions, int64_t num_experts, int64_t capacity);

// dispatch_tensor + combine_tensor - combine_tensor.detach() in the forward pass:
// (float(dispatch) + combine) - combine in float32, which is 1 - 2^-24 rather than 1 for
// about a quarter of the weights in (0, 1). dispatch int32 0/1, combine float32, same shape.
Tensor straight_through_dispatch(const Tensor& dispatch_tensor, const Tensor& combine_tensor);

}  // namespace moeref::ops
