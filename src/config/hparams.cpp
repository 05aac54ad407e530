#include "moeref/hparams.hpp"

#include <cmath>
#include <sstream>

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

bool is_choice(const HparamSpec& spec, const nlohmann::json& value) {
  if (!value.is_string()) return false;
  for (const std::string& choice : spec.choices) {
    if (value.get_ref<const std::string&>() == choice) return true;
  }
  return false;
}

void check_value(const HparamSpec& spec, const nlohmann::json& value) {
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
      const double as_double = static_cast<double>(value.get<int64_t>());
      if (as_double < spec.min_value || as_double > spec.max_value) {
        fail_input(field, value_text(value), describe_allowed(spec));
      }
      return;
    }
    case HparamKind::kFloat: {
      if (!value.is_number()) fail_input(field, value_text(value), describe_allowed(spec));
      const double as_double = value.get<double>();
      if (!std::isfinite(as_double) || as_double < spec.min_value || as_double > spec.max_value) {
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
        const double as_double = static_cast<double>(item.get<int64_t>());
        if (as_double < spec.min_value || as_double > spec.max_value) {
          fail_input(field, value.dump(), describe_allowed(spec));
        }
      }
      return;
  }
}

}  // namespace

std::string describe_allowed(const HparamSpec& spec) {
  std::string text;
  switch (spec.kind) {
    case HparamKind::kBool:
      text = "true or false";
      break;
    case HparamKind::kInt:
    case HparamKind::kFloat: {
      text = spec.kind == HparamKind::kInt ? "an integer" : "a finite number";
      if (spec.max_value < 1e300) {
        text += " in [" + number_text(spec.min_value, spec.kind == HparamKind::kInt) + ", " +
                number_text(spec.max_value, spec.kind == HparamKind::kInt) + "]";
      } else {
        text += " >= " + number_text(spec.min_value, spec.kind == HparamKind::kInt);
      }
      break;
    }
    case HparamKind::kString:
      text = "one of " + join(spec.choices, ", ");
      break;
    case HparamKind::kStringList:
      text = "one of " + join(spec.choices, ", ") + ", or a non-empty list of them";
      break;
    case HparamKind::kIntList:
      text = "a list (possibly empty) of integers in [" + number_text(spec.min_value, true) + ", " +
             number_text(spec.max_value, true) + "]";
      break;
  }
  if (spec.nullable) text += ", or null";
  return text;
}

nlohmann::json resolve_hparams(const std::vector<HparamSpec>& specs, const nlohmann::json& given) {
  if (!given.is_null() && !given.is_object()) {
    fail_input("hparams", given.dump(), "an object of hyperparameters");
  }
  nlohmann::json resolved = nlohmann::json::object();
  for (const HparamSpec& spec : specs) resolved[spec.name] = spec.default_value;
  if (given.is_object()) {
    for (auto it = given.begin(); it != given.end(); ++it) {
      const HparamSpec* found = nullptr;
      for (const HparamSpec& spec : specs) {
        if (spec.name == it.key()) found = &spec;
      }
      if (found == nullptr) {
        std::vector<std::string> names;
        for (const HparamSpec& spec : specs) names.push_back(spec.name);
        fail_input("hparams." + it.key(), "an unknown hyperparameter", join(names, ", "));
      }
      check_value(*found, it.value());
      resolved[it.key()] = it.value();
    }
  }
  return resolved;
}

}  // namespace moeref
