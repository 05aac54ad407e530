// A decision as the checker's near-tie replay forces it (spec/trace-format.md,
// "Near ties"): the variant takes the forced tensor from Frame::forced_decision
// and applies it right where the source decides. -1 (or any value outside the
// decision's range) leaves the reference's own choice.
#pragma once

#include <cstdint>

#include "moeref/tensor.hpp"

namespace moeref {

// A top-1 choice per row, int32 [...]: where forced holds an index in [0, n),
// it replaces the choice. forced may be nullptr (nothing forced).
Tensor with_forced_top_1(Tensor index, const Tensor* forced, int64_t n);

// A keep decision per row, int32 0/1 [...]: where forced holds 0 or more, the
// decision becomes forced != 0. forced may be nullptr.
Tensor with_forced_keep(Tensor keep, const Tensor* forced);

}  // namespace moeref
