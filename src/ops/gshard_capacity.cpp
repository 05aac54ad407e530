#include "moeref/ops/gshard_capacity.hpp"

#include "moeref/ops/lingvo_capacity.hpp"

namespace moeref::ops {

namespace {

// int((S * cf) / E) in Python double arithmetic; the quotient is >= 0.
int64_t python_int_of_quotient(int64_t group_size, double capacity_factor, int64_t num_experts) {
  const double scaled = (static_cast<double>(group_size) * capacity_factor) / static_cast<double>(num_experts);
  return static_cast<int64_t>(scaled);
}

}  // namespace

GshardCapacity lingvo_token_shuffling_capacity(int64_t group_size, int64_t num_experts, int64_t expert_capacity_dim,
                                               std::optional<double> capacity_factor) {
  // The same rule as Top2GatingOnLogits: one implementation (lingvo_capacity.cpp).
  const LingvoCapacity lingvo = lingvo_expert_capacity(expert_capacity_dim, capacity_factor, group_size, num_experts);
  GshardCapacity out;
  out.expert_capacity = lingvo.expert_capacity;
  out.rule_applied = lingvo.has_capacity_factor;
  out.auto_expert_capacity = lingvo.auto_expert_capacity.value_or(-1);
  out.raised = lingvo.raised;
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

nlohmann::json gshard_capacity_record(const GshardCapacity& capacity, const std::string& rule,
                                      int64_t expert_capacity_dim, const nlohmann::json& capacity_factor,
                                      int64_t group_size, int64_t num_groups) {
  return {{"expert_capacity", capacity.expert_capacity},
          {"rule", rule},
          {"expert_capacity_dim", expert_capacity_dim},
          {"capacity_factor", capacity_factor},
          {"auto_expert_capacity",
           capacity.rule_applied ? nlohmann::json(capacity.auto_expert_capacity) : nlohmann::json(nullptr)},
          {"group_size", group_size},
          {"num_groups", num_groups}};
}

}  // namespace moeref::ops
