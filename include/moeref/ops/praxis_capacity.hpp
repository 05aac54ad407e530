// Expert capacity as praxis top2_gating_on_logits derives it (google/praxis,
// praxis/gshard_utils.py, `top2_gating_on_logits`, at feeaff1).
//
//   assert capacity_factor or expert_capacity_dim
//   if capacity_factor:
//     auto = int(S * capacity_factor / E)            # Python doubles, truncation
//     if expert_capacity_dim is None: expert_capacity_dim = 1
//     if expert_capacity_dim < auto: C = ((auto + 3) // 4) * 4
//   C = expert_capacity_dim otherwise
//
// Unlike lingvo there is no "auto == 0 -> 4" floor, so C = 0 is possible.
#pragma once

#include <cstdint>
#include <optional>

namespace moeref::ops {

struct PraxisCapacity {
  int64_t expert_capacity = 0;        // C
  bool used_capacity_factor = false;  // `if capacity_factor:` was taken
  int64_t auto_expert_capacity = 0;   // int(S * capacity_factor / E), when used
  bool raised = false;                // C was raised to the multiple of 4 above auto
};

// capacity_factor and expert_capacity_dim are the Python values (nullopt = None).
// Throws InputError when both are falsy (the source's assert) or when the
// capacity would not fit the int32 `capacity` tensor.
PraxisCapacity praxis_top2_expert_capacity(int64_t group_size, std::optional<double> capacity_factor,
                                           std::optional<int64_t> expert_capacity_dim, int64_t num_experts);

}  // namespace moeref::ops
