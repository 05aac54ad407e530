// mtf_top2: Mesh TensorFlow's top-2 MoE layer (src/variants/mtf_top2.cpp).
#pragma once

#include "moeref/variant.hpp"

namespace moeref {

void run_mtf_top2(const Config& config, Trace& trace);
VariantSpec mtf_top2_variant();

}  // namespace moeref
