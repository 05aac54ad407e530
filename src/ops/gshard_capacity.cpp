#include "moeref/ops/gshard_capacity.hpp"

namespace moeref::ops {

namespace {

// int((S * cf) / E) in Python double arithmetic; the quotient is >= 0.
int64_t python_int_of_quotient(int64_t group_size, double capacity_factor, int64_t num_experts) {
  const double scaled = (static_cast<double>(group_size) * capacity_factor) / static_cast<double>(num_experts);
  return static_cast<int64_t>(scaled);
}

}  // namespace

GshardCapacity lingvo_expert_capacity(int64_t group_size, int64_t num_experts, int64_t expert_capacity_dim,
                                      std::optional<double> capacity_factor) {
  GshardCapacity out;
  out.expert_capacity = expert_capacity_dim;
  if (!capacity_factor.has_value() || *capacity_factor == 0.0) return out;  // `if capacity_factor:`
  out.rule_applied = true;
  int64_t auto_expert_capacity = python_int_of_quotient(group_size, *capacity_factor, num_experts);
  if (auto_expert_capacity == 0) auto_expert_capacity = 4;
  out.auto_expert_capacity = auto_expert_capacity;
  if (expert_capacity_dim < auto_expert_capacity) {
    int64_t capacity = auto_expert_capacity;
    while (capacity % 4 != 0) capacity += 1;  // round up to a multiple of 4
    out.expert_capacity = capacity;
    out.raised = true;
  }
  return out;
}

GshardCapacity praxis_expert_choice_capacity(int64_t group_size, int64_t num_experts, int64_t expert_capacity_dim,
                                             std::optional<double> capacity_factor) {
  GshardCapacity out;
  out.expert_capacity = expert_capacity_dim;
  if (!capacity_factor.has_value()) return out;  // `if capacity_factor is not None:`
  out.rule_applied = true;
  const int64_t auto_expert_capacity = python_int_of_quotient(group_size, *capacity_factor, num_experts);
  out.auto_expert_capacity = auto_expert_capacity;
  if (expert_capacity_dim < auto_expert_capacity) {
    out.expert_capacity = ((auto_expert_capacity + 3) / 4) * 4;
    out.raised = true;
  }
  return out;
}

}  // namespace moeref::ops
