// The one explicit table of registered variants. Adding a variant: one file in
// src/variants/, one line here, one page in spec/variants/, goldens in golden/ID/.

#include "moeref/registry.hpp"

#include "moeref/variants/lingvo_expert_choice.hpp"
#include "moeref/variants/lingvo_hash.hpp"
#include "moeref/variants/lingvo_top2.hpp"
#include "moeref/variants/mtf_top2.hpp"
#include "moeref/variants/praxis_expert_choice.hpp"
#include "moeref/variants/praxis_top2.hpp"

namespace moeref {

const std::vector<VariantSpec>& all_variants() {
  static const std::vector<VariantSpec> variants = {
      mtf_top2_variant(),
      lingvo_top2_variant(),
      praxis_top2_variant(),
      lingvo_expert_choice_variant(),
      praxis_expert_choice_variant(),
      lingvo_hash_variant(),
  };
  return variants;
}

const VariantSpec* find_variant(const std::string& id) {
  for (const VariantSpec& spec : all_variants()) {
    if (spec.id == id) return &spec;
  }
  return nullptr;
}

}  // namespace moeref
