// Expert-capacity rules, one function per source rule.
#pragma once

#include <cstdint>

namespace moeref::ops {

// mtf transformer_moe_layer_v1: C = max(min(S, int((S * cf) / E)), min_expert_capacity),
// in Python double arithmetic, int() truncating toward zero.
int64_t mtf_expert_capacity(int64_t group_size, double capacity_factor, int64_t num_experts,
                            int64_t min_expert_capacity);

}  // namespace moeref::ops
