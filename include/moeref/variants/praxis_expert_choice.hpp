// praxis_expert_choice: praxis's expert-choice gating v2, expert_choice_gating_on_logits_v2
// (src/variants/praxis_expert_choice.cpp).
#pragma once

#include "moeref/variant.hpp"

namespace moeref {

void run_praxis_expert_choice(const Config& config, Trace& trace);
VariantSpec praxis_expert_choice_variant();

}  // namespace moeref
