// Reading the index form of a routing, the form index-dispatch backends
// (DeepSpeed, Tutel, MegaBlocks) hold instead of dense [G, S, E, C] tensors
// (frame/routing_index_form.hpp writes it):
//   routing_expert [G, S, K] int32    the expert chosen at rank k (before any mask)
//   routing_slot   [G, S, K] int32    the slot it occupies in that expert, -1 if none
//   routing_weight [G, S, K] float32  its combine weight (0 when it has no slot)
// K = number of ranks (2 for top-2). A slot with weight exactly 0 is occupied but
// not dispatched, as in the sources (dispatch = combine != 0).
#pragma once

#include <cstdint>

#include "moeref/tensor.hpp"

namespace moeref::ops {

// Dense combine [G, S, E, C] and dispatch (combine != 0) from the index form.
// Throws InputError naming the tensor when an expert or slot is out of range.
void dense_from_index_form(const Tensor& routing_expert, const Tensor& routing_slot, const Tensor& routing_weight,
                           int64_t E, int64_t C, Tensor& combine_tensor, Tensor& dispatch_tensor);

}  // namespace moeref::ops
