// The over-capacity summary of GShard top-2 gating: lingvo's
// _CreateOverCapacityRatioSummary inside Top2GatingOnLogits (tensorflow/lingvo,
// lingvo/core/gshard_layers.py) and praxis _create_over_capacity_ratio_summary
// (google/praxis, praxis/gshard_utils.py):
//
//   over_capacity = reduce_sum(cast(greater_equal(mask * position_in_expert, capacity), float32))
//   over_capacity_ratio = over_capacity / maximum(1.0, cast(reduce_sum(mask), float32))
//
// over every (g, s, e) at once, before the capacity drop. With capacity 0 every
// entry counts (0 >= 0).
#pragma once

#include <cstdint>

#include "moeref/tensor.hpp"

namespace moeref::ops {

struct GshardOverCapacity {
  int32_t count = 0;   // over_capacity (an exact count)
  float ratio = 0.0f;  // over_capacity_ratio
};

// mask int32 0/1 [G, S, E], position_in_expert int32 [G, S, E].
GshardOverCapacity gshard_over_capacity(const Tensor& mask, const Tensor& position_in_expert, int64_t capacity);

}  // namespace moeref::ops
