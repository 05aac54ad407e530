// The index form of a routing, the form index-dispatch backends (DeepSpeed,
// Tutel, MegaBlocks) hold instead of dense [G, S, E, C] tensors:
//   routing_expert [G, S, K] int32    the expert chosen at rank k (before any mask)
//   routing_slot   [G, S, K] int32    the slot it occupies in that expert, -1 if none
//   routing_weight [G, S, K] float32  its combine weight (0 when it has no slot)
// K = number of ranks (2 for top-2). A slot with weight exactly 0 is occupied but
// not dispatched, as in the sources (dispatch = combine != 0).
#pragma once

#include <vector>

#include "moeref/frame/frame.hpp"
#include "moeref/tensor.hpp"

namespace moeref {

// One rank's decisions, each [G, S].
struct RankRouting {
  const Tensor* expert;         // int32: index_k
  const Tensor* position;       // int32: position_in_expert_k_flat
  const Tensor* occupies_slot;  // int32: mask_k_flat after policy and capacity (0 or 1)
  const Tensor* weight;         // float32: the weight combine_tensor holds for this rank
};

// Records routing_expert (reading each rank's expert), routing_slot (positions
// and slot masks) and routing_weight (slot masks and weights).
void record_routing_index_form(Frame& frame, const std::vector<RankRouting>& ranks);

// The same from rank-major steps, each [K, G, S] (st-moe keeps the top-n dim
// first): expert int32, position int32, occupies_slot int32 0/1, weight float32.
void record_routing_index_form_rank_major(Frame& frame, const Tensor& expert, const Tensor& position,
                                          const Tensor& occupies_slot, const Tensor& weight);

}  // namespace moeref
