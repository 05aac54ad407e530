// The one explicit table of registered variants (no static self-registration:
// the linker would drop it). Adding a variant: spec/adding-a-variant.md.

#include "moeref/registry.hpp"

// One row per variant, in the order `moeref variants` lists them. Each id names
// src/variants/ID.cpp, which defines `VariantSpec ID_variant()`.
#define MOEREF_VARIANTS(ROW) \
  ROW(mtf_top2)              \
  ROW(lingvo_top2)           \
  ROW(praxis_top2)           \
  ROW(lingvo_expert_choice)  \
  ROW(praxis_expert_choice)  \
  ROW(lingvo_hash)           \
  ROW(hf_switch_top1)        \
  ROW(deepspeed_top1)        \
  ROW(deepspeed_top2)        \
  ROW(deepspeed_topk)        \
  ROW(hf_nllb_top2)          \
  ROW(fairseq_top2)          \
  ROW(tutel_topk)            \
  ROW(megablocks_dropless)   \
  ROW(praxis_topk)

namespace moeref {

#define MOEREF_DECLARE_VARIANT(id) VariantSpec id##_variant();
MOEREF_VARIANTS(MOEREF_DECLARE_VARIANT)
#undef MOEREF_DECLARE_VARIANT

const std::vector<VariantSpec>& all_variants() {
#define MOEREF_VARIANT_ENTRY(id) id##_variant(),
  static const std::vector<VariantSpec> variants = {MOEREF_VARIANTS(MOEREF_VARIANT_ENTRY)};
#undef MOEREF_VARIANT_ENTRY
  return variants;
}

const VariantSpec* find_variant(const std::string& id) {
  for (const VariantSpec& spec : all_variants()) {
    if (spec.id == id) return &spec;
  }
  return nullptr;
}

}  // namespace moeref
