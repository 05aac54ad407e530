// praxis_top2: praxis's top-2 gating, top2_gating_on_logits, as TransformerFeedForwardMoe
// drives it (src/variants/praxis_top2.cpp).
#pragma once

#include "moeref/variant.hpp"

namespace moeref {

void run_praxis_top2(const Config& config, Trace& trace);
VariantSpec praxis_top2_variant();

}  // namespace moeref
