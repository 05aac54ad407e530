// Reductions and index arithmetic of the PyTorch routers: torch.cumsum along
// the tokens (inclusive, exact on 0/1 masks), torch.argmax on an integer mask,
// torch.mean over the tokens, and the sum over the experts of a per-expert
// value where a mask holds.
//
// Dims: G groups, S tokens per group, E experts.
#pragma once

#include "moeref/tensor.hpp"

namespace moeref::ops {

// torch.cumsum(mask, dim=-2) of an int32 [G, S, E], plus `offset` (the sources'
// `cumsum(...) - 1` is offset -1): out[g, s, e] = sum_{t <= s} mask[g, t, e] + offset.
Tensor torch_cumsum_over_s(const Tensor& mask, int32_t offset = 0);

// torch.argmax(values, dim=-1) of an int32 [..., E]: the first index of the row's
// maximum (an all-zero row gives 0). -> int32 [...].
Tensor torch_argmax_of_mask(const Tensor& values);

// torch.mean(x, dim=-2) of x [G, S, E] (float32, or int32 0/1 cast to float32
// first, as `mask.float()`): the sum over S (double, rounded once), then one
// float32 division by S (notation §5). -> float32 [G, E].
Tensor torch_mean_over_s(const Tensor& x);

// mask * keep.unsqueeze(-1) of an int32 mask [..., E] and an int32 0/1 keep [...]
// (`mask * sampled.repeat(E, 1).transpose(1, 0)`, `mask * non_padding.unsqueeze(-1)`).
Tensor torch_mask_rows(const Tensor& mask, const Tensor& keep);

// torch.max(values, dim=-1).values of a float32 [..., E] -> [...].
Tensor torch_max_over_last(const Tensor& values);

// ~mask.bool() of a float32 mask [...] (nonzero = true): int32 1 where the mask is 0.
Tensor torch_not_bool(const Tensor& mask);

// torch.sum(values * mask, dim=-1) of two int32 [..., E] tensors -> int32 [...].
Tensor torch_sum_where(const Tensor& values, const Tensor& mask);

}  // namespace moeref::ops
