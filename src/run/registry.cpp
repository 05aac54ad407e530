// The one explicit table of registered variants (no static self-registration:
// the linker would drop it). The rows are in variants.def, one line per variant;
// adding a variant: spec/adding-a-variant.md.

#include "moeref/registry.hpp"

namespace moeref {

#define MOEREF_VARIANT(id) VariantSpec id##_variant();
#include "variants.def"
#undef MOEREF_VARIANT

const std::vector<VariantSpec>& all_variants() {
#define MOEREF_VARIANT(id) id##_variant(),
  static const std::vector<VariantSpec> variants = {
#include "variants.def"
  };
#undef MOEREF_VARIANT
  return variants;
}

const VariantSpec* find_variant(const std::string& id) {
  for (const VariantSpec& spec : all_variants()) {
    if (spec.id == id) return &spec;
  }
  return nullptr;
}

}  // namespace moeref
