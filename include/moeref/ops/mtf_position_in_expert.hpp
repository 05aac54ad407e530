// How mtf queues tokens into an expert's capacity (tensorflow/mesh,
// mesh_tensorflow/transformer/moe.py, _top_2_gating and its siblings):
//   position_in_expert = (cumsum(mask, group_size_dim, exclusive=True) + queued) * mask
//   mask *= to_float(less(position_in_expert, expert_capacity_f))
// queued (second choices: mask_1_count) puts a choice behind every kept earlier one.
#pragma once

#include "moeref/tensor.hpp"

namespace moeref::ops {

// mask [G, S, E] int32 0/1; queued [G, E] int32 or nullptr; position and
// mask_capacity [G, S, E] int32, written.
void mtf_position_in_expert(const Tensor& mask, const Tensor* queued, int64_t expert_capacity, Tensor& position,
                            Tensor& mask_capacity);

}  // namespace moeref::ops
