// lingvo_hash: lingvo's hash gating, HashGatingOnLogits (src/variants/lingvo_hash.cpp).
#pragma once

#include "moeref/variant.hpp"

namespace moeref {

void run_lingvo_hash(const Config& config, Trace& trace);
VariantSpec lingvo_hash_variant();

}  // namespace moeref
