// lingvo_expert_choice: lingvo's expert-choice gating v2, TokenShufflingOnlogitsV2
// (src/variants/lingvo_expert_choice.cpp).
#pragma once

#include "moeref/variant.hpp"

namespace moeref {

void run_lingvo_expert_choice(const Config& config, Trace& trace);
VariantSpec lingvo_expert_choice_variant();

}  // namespace moeref
