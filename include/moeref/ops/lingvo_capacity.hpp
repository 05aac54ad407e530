// The expert-capacity rule of lingvo's gating functions (tensorflow/lingvo,
// lingvo/core/gshard_layers.py, Top2GatingOnLogits; TokenShufflingOnlogitsV2
// repeats it):
//
//   if capacity_factor is not None and capacity_factor > 0:
//     auto = int((S * capacity_factor) / E)         # Python double, truncated
//     if auto == 0: auto = 4
//     if expert_capacity_dim < auto:
//       C = auto, then rounded UP to a multiple of 4
//     else: C = expert_capacity_dim                 # unchanged, not rounded
//   else: C = expert_capacity_dim                   # may be 0
//
// There is no cap at S: C may exceed the group size.
#pragma once

#include <cstdint>
#include <optional>

namespace moeref::ops {

struct LingvoCapacity {
  int64_t expert_capacity = 0;                  // C
  bool has_capacity_factor = false;             // capacity_factor is set and > 0
  std::optional<int64_t> auto_expert_capacity;  // after the 0 -> 4 floor; only with a capacity factor
  bool raised = false;                          // expert_capacity_dim < auto: C = roundup4(auto)
};

// capacity_factor: std::nullopt for Python None. group_size is logits.shape[1].
LingvoCapacity lingvo_expert_capacity(int64_t expert_capacity_dim, std::optional<double> capacity_factor,
                                      int64_t group_size, int64_t num_experts);

}  // namespace moeref::ops
