// Hyperparameter declarations: each variant lists its own, under the source's names.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace moeref {

enum class HparamKind {
  kBool,
  kInt,
  kFloat,
  kString,      // one of `choices`
  kStringList,  // one of `choices`, or a non-empty list of them (mtf activations)
  kIntList,     // a list of integers, possibly empty, each in [min_value, max_value] (lingvo expert_padding_idx)
};

struct HparamSpec {
  std::string name;
  HparamKind kind = HparamKind::kFloat;
  nlohmann::json default_value;  // null when the default is "not set"
  bool nullable = false;
  std::vector<std::string> choices;  // kString / kStringList
  double min_value = 0.0;            // kInt / kFloat / kIntList items, inclusive
  double max_value = 1e300;          // kInt / kFloat / kIntList items, inclusive
  std::string meaning;               // one sentence for `moeref variants ID`
};

// "0 <= x <= 1", "one of all, none", ... for messages and listings.
std::string describe_allowed(const HparamSpec& spec);

// Validates `given` (an object, or null for none) against `specs` and returns an
// object holding every hparam, defaults filled in. Throws InputError naming
// "hparams.NAME" for unknown names and bad values.
nlohmann::json resolve_hparams(const std::vector<HparamSpec>& specs, const nlohmann::json& given);

}  // namespace moeref
