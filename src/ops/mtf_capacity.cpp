#include "moeref/ops/mtf_capacity.hpp"

#include <algorithm>

namespace moeref::ops {

int64_t mtf_expert_capacity(int64_t group_size, double capacity_factor, int64_t num_experts,
                            int64_t min_expert_capacity) {
  const double scaled = (static_cast<double>(group_size) * capacity_factor) / static_cast<double>(num_experts);
  // min(S, int(scaled)) without converting a huge double (capacity_factor up to 1e300) to int64.
  const int64_t expert_capacity = scaled >= static_cast<double>(group_size) ? group_size : static_cast<int64_t>(scaled);
  return std::max(expert_capacity, min_expert_capacity);
}

}  // namespace moeref::ops
