// lingvo_top2: lingvo's GShard top-2 gating (src/variants/lingvo_top2.cpp).
#pragma once

#include "moeref/variant.hpp"

namespace moeref {

void run_lingvo_top2(const Config& config, Trace& trace);
VariantSpec lingvo_top2_variant();

}  // namespace moeref
