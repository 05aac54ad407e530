// The index form of a routing, the form index-dispatch backends (DeepSpeed,
// Tutel, MegaBlocks) hold instead of dense [G, S, E, C] tensors:
//   routing_expert [G, S, K] int32    the expert chosen at rank k (before any mask)
//   routing_slot   [G, S, K] int32    the slot it occupies in that expert, -1 if none
//   routing_weight [G, S, K] float32  its combine weight (0 when it has no slot)
// K = number of ranks (2 for top-2). A slot with weight exactly 0 is occupied but
// not dispatched, as in the sources (dispatch = combine != 0).
#pragma once

#include <cstdint>
#include <vector>

#include "moeref/tensor.hpp"
#include "moeref/trace.hpp"

namespace moeref::ops {

// One rank's decisions, each [G, S].
struct RankDecisions {
  const int32_t* expert;         // index_k
  const int32_t* position;       // position_in_expert_k_flat
  const int32_t* occupies_slot;  // mask_k_flat after policy and capacity (0 or 1)
  const float* weight;           // the weight combine_tensor holds for this rank
};

// Records routing_expert, routing_slot and routing_weight.
void record_routing_index_form(int64_t G, int64_t S, const std::vector<RankDecisions>& ranks, Trace& trace);

// Dense combine [G, S, E, C] and dispatch (combine != 0) from the index form.
// Throws InputError naming the tensor when an expert or slot is out of range.
void dense_from_index_form(const Tensor& routing_expert, const Tensor& routing_slot, const Tensor& routing_weight,
                           int64_t E, int64_t C, Tensor& combine_tensor, Tensor& dispatch_tensor);

}  // namespace moeref::ops
