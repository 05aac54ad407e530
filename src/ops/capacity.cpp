#include "moeref/ops/capacity.hpp"

#include <algorithm>

namespace moeref::ops {

int64_t mtf_expert_capacity(int64_t group_size, double capacity_factor, int64_t num_experts,
                            int64_t min_expert_capacity) {
  const double scaled = (static_cast<double>(group_size) * capacity_factor) / static_cast<double>(num_experts);
  const int64_t expert_capacity = std::min(group_size, static_cast<int64_t>(scaled));
  return std::max(expert_capacity, min_expert_capacity);
}

}  // namespace moeref::ops
