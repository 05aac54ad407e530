// Hyperparameter declarations: each variant declares its own, under the source's names.
//
// A declaration is written once, as named fields, in the variant's file
// (frame/hparam_table.hpp binds it to a typed struct):
//
//   table.number("second_threshold_train", &P::second_threshold_train)
//       .defaults_to(0.2).at_least(0.0).train_only()
//       .means("Threshold t of the threshold and random second policies when training.")
//       .cites("moe.py: _top_2_gating").known_as({"moe_second_threshold_train"})
//       .about("second_expert_threshold");
//
// The same declaration validates configs, drives `moeref variants ID`, fills the
// resolved config written into every trace, and feeds the glossary.
#pragma once

#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

namespace moeref {

enum class HparamKind {
  kBool,
  kInt,
  kFloat,
  kString,       // one of `choices`
  kStringList,   // one of `choices`, or a non-empty list of them (mtf activations)
  kIntList,      // a list of integers, possibly empty, each within the bounds (lingvo expert_padding_idx)
  kFloatOrList,  // a finite number, or a non-empty list of them, each within the bounds (st-moe threshold_train)
};

// When the source reads the hyperparameter.
enum class HparamMode {
  kAlways,     // training and evaluation alike
  kTrainOnly,  // only when train is true (e.g. second_policy_train)
  kEvalOnly,   // only when train is false (e.g. capacity_factor_eval)
};

struct HparamSpec {
  std::string name;  // the source's own name, as configs spell it
  HparamKind kind = HparamKind::kFloat;
  nlohmann::json default_value;      // null when the default is "not set"
  bool nullable = false;             // null is an allowed value ("not set")
  std::vector<std::string> choices;  // kString / kStringList
  std::optional<double> min_value;   // inclusive; kInt / kFloat / kIntList / kFloatOrList items
  std::optional<double> max_value;   // inclusive; kInt / kFloat / kIntList / kFloatOrList items
  std::string meaning;               // one sentence for `moeref variants ID`
  HparamMode mode = HparamMode::kAlways;
  std::string cited_source;               // where the source reads it: "moe.py: _top_2_gating"
  std::vector<std::string> aliases;       // the sources' other spellings: "did you mean" only
  std::vector<std::string> renamed_from;  // the source's own old names: accepted, with a warning
  // The idea this hyperparameter is one spelling of: a key of the topic table
  // (src/teach/hparam_topics.cpp), which says it in plain words and gives the names
  // other implementations use. The glossary groups every variant's hyperparameters
  // of one topic together. (Not called `concept`: that is a keyword in C++20.)
  std::string topic;

  // Builders, so that a declaration reads as named fields.
  HparamSpec& defaults_to(nlohmann::json value);
  HparamSpec& at_least(double minimum);
  HparamSpec& at_most(double maximum);
  HparamSpec& between(double minimum, double maximum);
  HparamSpec& means(std::string text);
  HparamSpec& train_only();
  HparamSpec& eval_only();
  HparamSpec& cites(std::string where);
  HparamSpec& known_as(std::vector<std::string> names);
  // The glossary topic, e.g. about("capacity_factor") (spec/glossary.md).
  HparamSpec& about(std::string topic_key);
  // Old names the source itself used before a rename (mtf's rand_1_* before b1b5364):
  // a config may still use them; the resolved config holds the new name.
  HparamSpec& renamed(std::vector<std::string> old_names, std::string when);
  std::string renamed_when;  // e.g. "tensorflow/mesh commit b1b5364 (rand_1 became switch)"
};

// "0 <= x <= 1", "one of all, none", ... for messages and listings.
std::string describe_allowed(const HparamSpec& spec);

// Fails (InputError naming hparams.NAME) when `value` is not allowed by `spec`.
void check_hparam_value(const HparamSpec& spec, const nlohmann::json& value);

// Validates `given` (an object, or null for none) against `specs` and returns an
// object holding every hparam, defaults filled in. Throws InputError naming
// "hparams.NAME" for unknown names and bad values. An old name (renamed_from)
// is read as its new name, with one line in `warnings` (when not null).
nlohmann::json resolve_hparams(const std::vector<HparamSpec>& specs, const nlohmann::json& given,
                               std::vector<std::string>* warnings = nullptr);

}  // namespace moeref
