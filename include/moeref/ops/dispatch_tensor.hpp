// dispatch_tensor = cast(cast(combine_tensor, bool), fprop_dtype), as the GShard
// gating functions of lingvo (tensorflow/lingvo lingvo/core/gshard_layers.py) and
// praxis (google/praxis praxis/gshard_utils.py) end: a slot is dispatched when
// its combine weight is nonzero (NaN is nonzero too). A token that holds a slot
// with weight exactly 0 is not dispatched.
#pragma once

#include "moeref/tensor.hpp"

namespace moeref::ops {

// combine_tensor [G, S, E, C] float32 -> dispatch_tensor [G, S, E, C] int32 0/1.
Tensor dispatch_from_combine(const Tensor& combine_tensor);

}  // namespace moeref::ops
