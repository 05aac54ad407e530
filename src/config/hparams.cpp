#include "moeref/hparams.hpp"

#include <cmath>
#include <sstream>
#include <utility>
#include <vector>

#include "moeref/error.hpp"

namespace moeref {

namespace {

std::string join(const std::vector<std::string>& items, const std::string& sep) {
  std::string out;
  for (size_t i = 0; i < items.size(); ++i) {
    if (i > 0) out += sep;
    out += items[i];
  }
  return out;
}

std::string number_text(double value, bool integer) {
  if (integer) return std::to_string(static_cast<int64_t>(value));
  std::ostringstream out;
  out << value;
  return out.str();
}

// json::dump() prints a non-finite double as null; say what it is instead.
std::string value_text(const nlohmann::json& value) {
  if (value.is_number_float() && !std::isfinite(value.get<double>())) {
    const double number = value.get<double>();
    return std::isnan(number) ? "NaN" : (number > 0 ? "Infinity" : "-Infinity");
  }
  return value.dump();
}

bool outside_bounds(const HparamSpec& spec, double value) {
  return (spec.min_value && value < *spec.min_value) || (spec.max_value && value > *spec.max_value);
}

bool is_choice(const HparamSpec& spec, const nlohmann::json& value) {
  if (!value.is_string()) return false;
  for (const std::string& choice : spec.choices) {
    if (value.get_ref<const std::string&>() == choice) return true;
  }
  return false;
}

// "did you mean NAME? ...; " when `unknown` is another spelling of a declared
// hparam: one of its aliases (a source's prefixed or old name), or its name with
// a source's prefix such as "moe_" or "moe_gating_" in front. Empty otherwise.
std::string did_you_mean(const std::vector<HparamSpec>& specs, const std::string& unknown) {
  for (const HparamSpec& spec : specs) {
    for (const std::string& alias : spec.aliases) {
      if (alias == unknown) {
        return "did you mean " + spec.name + "? (" + unknown + " is the sources' name for moeref's " + spec.name +
               "); every hparam: ";
      }
    }
  }
  for (const HparamSpec& spec : specs) {
    const size_t at = unknown.size() > spec.name.size() ? unknown.size() - spec.name.size() : std::string::npos;
    if (at != std::string::npos && unknown.compare(at, std::string::npos, spec.name) == 0 && unknown[at - 1] == '_') {
      return "did you mean " + spec.name + "? (moeref takes the source's name without the prefix \"" +
             unknown.substr(0, at) + "\"); every hparam: ";
    }
  }
  return "";
}

// mtf's MoE1D picks its gating function by the hparam moe_gating; moeref picks
// it by the config's "variant". The string "switch" changed meaning in
// tensorflow/mesh b1b5364 (top-k no-token-left-behind before, top-1 Switch
// after), so an old config must not be silently read as the new one: every
// moe_gating is refused, with the variant it stands for. Empty for other names.
std::string gating_selector_hint(const std::string& name, const nlohmann::json& value) {
  if (name != "moe_gating") return "";
  const std::string given = value.is_string() ? value.get<std::string>() : "";
  const std::string head =
      "no moe_gating: moeref selects Mesh TensorFlow's gating function by the config's "
      "\"variant\", not by an hparam; ";
  if (given == "switch") {
    return head +
           "and \"switch\" is ambiguous: since tensorflow/mesh b1b5364 (2021-01-19, \"Clarify names within Mesh "
           "Tensorflow\") it selects _switch_gating, top-1 (variant mtf_switch; called rand_1 before), but before "
           "that commit it selected the top-k no-token-left-behind gating now named _ntlb_gating (variant mtf_ntlb; "
           "its switch_top_k is now ntlb_top_k). Set \"variant\" to the one the config was written for and remove "
           "moe_gating";
  }
  const std::vector<std::pair<std::string, std::string>> variants = {{"top_2", "mtf_top2"},
                                                                     {"rand_1", "mtf_switch"},
                                                                     {"ntlb", "mtf_ntlb"},
                                                                     {"switch_max", "mtf_switch_max"},
                                                                     {"expert_selection", "mtf_expert_selection"}};
  for (const auto& [gating, variant] : variants) {
    if (given == gating)
      return head + "moe_gating=\"" + gating + "\" is variant \"" + variant + "\"; remove moe_gating";
  }
  return head +
         "moe_gating top_2, switch (since b1b5364; rand_1 before), ntlb (since b1b5364; switch before), "
         "switch_max and expert_selection are the variants mtf_top2, mtf_switch, mtf_ntlb, mtf_switch_max and "
         "mtf_expert_selection";
}

}  // namespace

void check_hparam_value(const HparamSpec& spec, const nlohmann::json& value) {
  const std::string field = "hparams." + spec.name;
  if (value.is_null()) {
    if (spec.nullable) return;
    fail_input(field, "null", describe_allowed(spec));
  }
  switch (spec.kind) {
    case HparamKind::kBool:
      if (!value.is_boolean()) fail_input(field, value_text(value), describe_allowed(spec));
      return;
    case HparamKind::kInt: {
      if (!value.is_number_integer()) fail_input(field, value_text(value), describe_allowed(spec));
      if (outside_bounds(spec, static_cast<double>(value.get<int64_t>()))) {
        fail_input(field, value_text(value), describe_allowed(spec));
      }
      return;
    }
    case HparamKind::kFloat: {
      if (!value.is_number()) fail_input(field, value_text(value), describe_allowed(spec));
      const double as_double = value.get<double>();
      if (!std::isfinite(as_double) || outside_bounds(spec, as_double)) {
        fail_input(field, value_text(value), describe_allowed(spec));
      }
      return;
    }
    case HparamKind::kString:
      if (!is_choice(spec, value)) fail_input(field, value_text(value), describe_allowed(spec));
      return;
    case HparamKind::kStringList:
      if (is_choice(spec, value)) return;
      if (!value.is_array() || value.empty()) fail_input(field, value_text(value), describe_allowed(spec));
      for (const nlohmann::json& item : value) {
        if (!is_choice(spec, item)) fail_input(field, value_text(value), describe_allowed(spec));
      }
      return;
    case HparamKind::kIntList:
      if (!value.is_array()) fail_input(field, value.dump(), describe_allowed(spec));
      for (const nlohmann::json& item : value) {
        if (!item.is_number_integer()) fail_input(field, value.dump(), describe_allowed(spec));
        if (outside_bounds(spec, static_cast<double>(item.get<int64_t>()))) {
          fail_input(field, value.dump(), describe_allowed(spec));
        }
      }
      return;
    case HparamKind::kFloatOrList: {
      auto allowed_number = [&](const nlohmann::json& item) {
        return item.is_number() && std::isfinite(item.get<double>()) && !outside_bounds(spec, item.get<double>());
      };
      if (allowed_number(value)) return;
      if (!value.is_array() || value.empty()) fail_input(field, value_text(value), describe_allowed(spec));
      for (const nlohmann::json& item : value) {
        if (!allowed_number(item)) fail_input(field, value_text(value), describe_allowed(spec));
      }
      return;
    }
  }
}

HparamSpec& HparamSpec::defaults_to(nlohmann::json value) {
  default_value = std::move(value);
  return *this;
}

HparamSpec& HparamSpec::at_least(double minimum) {
  min_value = minimum;
  return *this;
}

HparamSpec& HparamSpec::at_most(double maximum) {
  max_value = maximum;
  return *this;
}

HparamSpec& HparamSpec::between(double minimum, double maximum) {
  min_value = minimum;
  max_value = maximum;
  return *this;
}

HparamSpec& HparamSpec::means(std::string text) {
  meaning = std::move(text);
  return *this;
}

HparamSpec& HparamSpec::train_only() {
  mode = HparamMode::kTrainOnly;
  return *this;
}

HparamSpec& HparamSpec::eval_only() {
  mode = HparamMode::kEvalOnly;
  return *this;
}

HparamSpec& HparamSpec::cites(std::string where) {
  cited_source = std::move(where);
  return *this;
}

HparamSpec& HparamSpec::known_as(std::vector<std::string> names) {
  aliases = std::move(names);
  return *this;
}

HparamSpec& HparamSpec::about(std::string topic_key) {
  topic = std::move(topic_key);
  return *this;
}

HparamSpec& HparamSpec::renamed(std::vector<std::string> old_names, std::string when) {
  renamed_from = std::move(old_names);
  renamed_when = std::move(when);
  return *this;
}

std::string describe_allowed(const HparamSpec& spec) {
  std::string text;
  switch (spec.kind) {
    case HparamKind::kBool:
      text = "true or false";
      break;
    case HparamKind::kInt:
    case HparamKind::kFloat: {
      const bool integer = spec.kind == HparamKind::kInt;
      text = integer ? "an integer" : "a finite number";
      if (spec.min_value && spec.max_value) {
        text += " in [" + number_text(*spec.min_value, integer) + ", " + number_text(*spec.max_value, integer) + "]";
      } else if (spec.min_value) {
        text += " >= " + number_text(*spec.min_value, integer);
      } else if (spec.max_value) {
        text += " <= " + number_text(*spec.max_value, integer);
      }
      break;
    }
    case HparamKind::kString:
      text = "one of " + join(spec.choices, ", ");
      break;
    case HparamKind::kStringList:
      text = "one of " + join(spec.choices, ", ") + ", or a non-empty list of them";
      break;
    case HparamKind::kFloatOrList: {
      std::string bounds;
      if (spec.min_value && spec.max_value) {
        bounds = " in [" + number_text(*spec.min_value, false) + ", " + number_text(*spec.max_value, false) + "]";
      } else if (spec.min_value) {
        bounds = " >= " + number_text(*spec.min_value, false);
      }
      text = "a finite number" + bounds + ", or a non-empty list of them";
      break;
    }
    case HparamKind::kIntList:
      text = "a list (possibly empty) of integers";
      if (spec.min_value && spec.max_value) {
        text += " in [" + number_text(*spec.min_value, true) + ", " + number_text(*spec.max_value, true) + "]";
      }
      break;
  }
  if (spec.nullable) text += ", or null";
  return text;
}

nlohmann::json resolve_hparams(const std::vector<HparamSpec>& specs, const nlohmann::json& given,
                               std::vector<std::string>* warnings) {
  if (!given.is_null() && !given.is_object()) {
    fail_input("hparams", given.dump(), "an object of hyperparameters");
  }
  nlohmann::json resolved = nlohmann::json::object();
  for (const HparamSpec& spec : specs) resolved[spec.name] = spec.default_value;
  if (given.is_object()) {
    for (auto it = given.begin(); it != given.end(); ++it) {
      const HparamSpec* found = nullptr;
      const HparamSpec* renamed = nullptr;
      for (const HparamSpec& spec : specs) {
        if (spec.name == it.key()) found = &spec;
        for (const std::string& old_name : spec.renamed_from) {
          if (old_name == it.key()) renamed = &spec;
        }
      }
      if (found == nullptr && renamed != nullptr) {
        if (given.contains(renamed->name)) {
          fail_input("hparams." + it.key(), "given together with " + renamed->name,
                     "one of the two: " + it.key() + " is the old name of " + renamed->name + " (renamed in " +
                         renamed->renamed_when + ")");
        }
        check_hparam_value(*renamed, it.value());
        resolved[renamed->name] = it.value();
        if (warnings != nullptr) {
          warnings->push_back("hparams." + it.key() + " is the old name of " + renamed->name + " (renamed in " +
                              renamed->renamed_when + "); read as " + renamed->name);
        }
        continue;
      }
      if (found == nullptr) {
        const std::string selector_hint = gating_selector_hint(it.key(), it.value());
        if (!selector_hint.empty()) fail_input("hparams." + it.key(), value_text(it.value()), selector_hint);
        std::vector<std::string> names;
        for (const HparamSpec& spec : specs) names.push_back(spec.name);
        fail_input("hparams." + it.key(), "an unknown hyperparameter",
                   did_you_mean(specs, it.key()) + join(names, ", "));
      }
      check_hparam_value(*found, it.value());
      resolved[it.key()] = it.value();
    }
  }
  return resolved;
}

}  // namespace moeref
