// The one explicit table of gating variants (src/registry.cpp).
#pragma once

#include <string>
#include <vector>

#include "moeref/variant.hpp"

namespace moeref {

const std::vector<VariantSpec>& all_variants();

// nullptr when no variant has this id.
const VariantSpec* find_variant(const std::string& id);

}  // namespace moeref
