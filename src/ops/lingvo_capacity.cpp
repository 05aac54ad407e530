#include "moeref/ops/lingvo_capacity.hpp"

namespace moeref::ops {

LingvoCapacity lingvo_expert_capacity(int64_t expert_capacity_dim, std::optional<double> capacity_factor,
                                      int64_t group_size, int64_t num_experts) {
  LingvoCapacity result;
  result.expert_capacity = expert_capacity_dim;
  // has_capacity_factor = (capacity_factor is not None and capacity_factor > 0)
  result.has_capacity_factor = capacity_factor.has_value() && *capacity_factor > 0.0;
  if (!result.has_capacity_factor) return result;
  // auto_expert_capacity = int((group_size_dim * capacity_factor) / experts_dim)
  const double scaled = (static_cast<double>(group_size) * *capacity_factor) / static_cast<double>(num_experts);
  int64_t auto_expert_capacity = static_cast<int64_t>(scaled);
  if (auto_expert_capacity == 0) auto_expert_capacity = 4;
  result.auto_expert_capacity = auto_expert_capacity;
  if (expert_capacity_dim < auto_expert_capacity) {
    int64_t expert_capacity = auto_expert_capacity;
    // Round up to a multiple of 4 to avoid possible padding.
    while (expert_capacity % 4 != 0) ++expert_capacity;
    result.expert_capacity = expert_capacity;
    result.raised = true;
  }
  return result;
}

}  // namespace moeref::ops
