// A variant's hyperparameters as a typed struct, declared once.
//
// The variant defines a plain struct P of typed fields and one function that
// declares each field under the source's name (hparams.hpp lists the builders):
//
//   struct MtfTop2Hparams { int64_t group_size = 0; std::string second_policy_train; ... };
//   void declare(HparamTable<MtfTop2Hparams>& table) {
//     table.integer("group_size", &MtfTop2Hparams::group_size).defaults_to(1024).between(1, kMaxExtent)...
//   }
//
// The table gives the type-erased declarations (validation, listings, glossary)
// and parses a resolved hparams object into P once per run.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "moeref/hparams.hpp"

namespace moeref {

// A hyperparameter the source takes as a number or as a tuple of numbers
// (st-moe's `threshold_train: float | Tuple[float, ...]`): the values, and
// whether they were given as a list (a tuple) rather than one number.
struct NumberOrList {
  std::vector<double> values;
  bool is_list = false;
};

// The largest extent a dim-like hparam may take; keeps every index in int32.
inline constexpr int64_t kMaxHparamExtent = int64_t{1} << 24;

template <typename P>
class HparamTable {
 public:
  HparamSpec& flag(const char* name, bool P::*field) { return add(name, HparamKind::kBool, field, false); }
  HparamSpec& integer(const char* name, int64_t P::*field) { return add(name, HparamKind::kInt, field, false); }
  HparamSpec& number(const char* name, double P::*field) { return add(name, HparamKind::kFloat, field, false); }
  // One of `choices`.
  HparamSpec& choice(const char* name, std::string P::*field, std::vector<std::string> choices) {
    HparamSpec& spec = add(name, HparamKind::kString, field, false);
    spec.choices = std::move(choices);
    return spec;
  }
  // One of `choices` or a non-empty list of them; a single name reads as a list of one.
  HparamSpec& choice_list(const char* name, std::vector<std::string> P::*field, std::vector<std::string> choices) {
    HparamSpec& spec = add(name, HparamKind::kStringList, field, false);
    spec.choices = std::move(choices);
    return spec;
  }

  // A finite number or a non-empty list of them (each within the bounds).
  HparamSpec& number_or_list(const char* name, NumberOrList P::*field) {
    return add(name, HparamKind::kFloatOrList, field, false);
  }

  // Nullable: null (the default unless defaults_to says otherwise) reads as nullopt.
  HparamSpec& optional_integer(const char* name, std::optional<int64_t> P::*field) {
    return add(name, HparamKind::kInt, field, true);
  }
  HparamSpec& optional_number(const char* name, std::optional<double> P::*field) {
    return add(name, HparamKind::kFloat, field, true);
  }
  HparamSpec& optional_integer_list(const char* name, std::optional<std::vector<int64_t>> P::*field) {
    return add(name, HparamKind::kIntList, field, true);
  }

  // Required: the source's argument has no default. Null (unset) until a config
  // gives it, and a given null is refused; reads as nullopt while unset, so the
  // variant fails with the source's own reason.
  HparamSpec& required_integer(const char* name, std::optional<int64_t> P::*field) {
    return add(name, HparamKind::kInt, field, false);
  }

  std::vector<HparamSpec> specs() const { return {specs_.begin(), specs_.end()}; }

  // P from a resolved hparams object (every declared name present, values valid).
  P parse(const nlohmann::json& resolved) const {
    P hparams{};
    for (size_t i = 0; i < specs_.size(); ++i) setters_[i](resolved.at(specs_[i].name), hparams);
    return hparams;
  }

 private:
  template <typename T>
  HparamSpec& add(const char* name, HparamKind kind, T P::*field, bool nullable) {
    HparamSpec& spec = specs_.emplace_back();
    spec.name = name;
    spec.kind = kind;
    spec.nullable = nullable;
    setters_.push_back([field](const nlohmann::json& value, P& hparams) { assign(value, hparams.*field); });
    return spec;
  }

  static void assign(const nlohmann::json& value, bool& out) { out = value.get<bool>(); }
  static void assign(const nlohmann::json& value, int64_t& out) { out = value.get<int64_t>(); }
  static void assign(const nlohmann::json& value, double& out) { out = value.get<double>(); }
  static void assign(const nlohmann::json& value, std::string& out) { out = value.get<std::string>(); }
  static void assign(const nlohmann::json& value, std::vector<std::string>& out) {
    out =
        value.is_string() ? std::vector<std::string>{value.get<std::string>()} : value.get<std::vector<std::string>>();
  }
  template <typename T>
  static void assign(const nlohmann::json& value, std::optional<T>& out) {
    if (value.is_null()) {
      out.reset();
      return;
    }
    T inner{};
    assign(value, inner);
    out = std::move(inner);
  }
  static void assign(const nlohmann::json& value, NumberOrList& out) {
    out.is_list = value.is_array();
    out.values = out.is_list ? value.get<std::vector<double>>() : std::vector<double>{value.get<double>()};
  }
  static void assign(const nlohmann::json& value, std::vector<int64_t>& out) {
    out = value.get<std::vector<int64_t>>();
  }

  std::deque<HparamSpec> specs_;  // a deque: the builders hand out references that must stay valid
  std::vector<std::function<void(const nlohmann::json&, P&)>> setters_;
};

}  // namespace moeref
