// Exclusive cumulative sum along S of a 0/1 mask (mtf.cumsum(..., exclusive=True)
// is an einsum with a strictly-lower-triangular 0/1 matrix, exact for 0/1 input).
#pragma once

#include <cstdint>

#include "moeref/tensor.hpp"

namespace moeref::ops {

// mask, out: [S, E] row-major; out[s, e] = sum_{t < s} mask[t, e].
void exclusive_cumsum_over_s(const int32_t* mask, int64_t group_size, int64_t num_experts, int32_t* out);

// The same on an int32 tensor [G, S, E], group by group: cumsum(mask, axis=-2, exclusive=True).
Tensor exclusive_cumsum_over_s(const Tensor& mask);

}  // namespace moeref::ops
