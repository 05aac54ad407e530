#include "moeref/ops/praxis_capacity.hpp"

#include <cmath>
#include <string>

#include "moeref/error.hpp"

namespace moeref::ops {

PraxisCapacity praxis_top2_expert_capacity(int64_t group_size, std::optional<double> capacity_factor,
                                           std::optional<int64_t> expert_capacity_dim, int64_t num_experts) {
  // Python truthiness: None and 0 are false.
  const bool capacity_factor_truthy = capacity_factor.has_value() && *capacity_factor != 0.0;
  const bool expert_capacity_dim_truthy = expert_capacity_dim.has_value() && *expert_capacity_dim != 0;
  if (!capacity_factor_truthy && !expert_capacity_dim_truthy) {
    fail_input("hparams.capacity_factor, hparams.expert_capacity_dim", "both null or 0",
               "at least one of them non-zero (top2_gating_on_logits: assert capacity_factor or "
               "expert_capacity_dim)");
  }
  PraxisCapacity result;
  int64_t capacity = expert_capacity_dim.value_or(0);
  if (capacity_factor_truthy) {
    result.used_capacity_factor = true;
    // group_size_dim * capacity_factor / experts_dim: left to right in double, then int().
    const double product = static_cast<double>(group_size) * *capacity_factor;
    const double quotient = product / static_cast<double>(num_experts);
    if (!(quotient < 2147483644.0)) {
      fail_input("hparams.capacity_factor", std::to_string(*capacity_factor),
                 "a factor with S * capacity_factor / E below 2^31 - 4 (capacity is an int32 tensor)");
    }
    result.auto_expert_capacity = static_cast<int64_t>(std::trunc(quotient));
    if (!expert_capacity_dim.has_value()) capacity = 1;  // `if expert_capacity_dim is None: ... = 1`
    if (capacity < result.auto_expert_capacity) {
      // Round up to a multiple of 4: ((C + 3) // 4) * 4.
      capacity = ((result.auto_expert_capacity + 3) / 4) * 4;
      result.raised = true;
    }
  }
  result.expert_capacity = capacity;
  return result;
}

}  // namespace moeref::ops
