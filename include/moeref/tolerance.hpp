// The float comparison rules shared by the checker and the near-tie analysis.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "moeref/tensor_buffer.hpp"

namespace moeref {

// An element fails only when |actual - expected| exceeds BOTH atol and
// rtol * |expected| (so tiny values and large values are each judged fairly).
// The rule of the overrides (--tolerance, --atol/--rtol, a candidate's
// check.tolerances) and of the bfloat16 defaults.
struct Tolerance {
  double atol = 1e-6;
  double rtol = 1e-5;

  // The largest difference from `expected` that still passes.
  double allowed(double expected) const {
    const double relative = rtol * (expected < 0 ? -expected : expected);
    return atol > relative ? atol : relative;
  }
};

inline bool operator==(const Tolerance& a, const Tolerance& b) { return a.atol == b.atol && a.rtol == b.rtol; }

// The tolerance in force for one float step: either an atol/rtol rule, or a bound
// per element that the checker derived from the golden itself (the float32
// defaults, spec/trace-format.md "Tolerances").
class StepTolerance {
 public:
  StepTolerance() = default;
  // An atol/rtol rule; `rule` says where it came from ("--atol/--rtol", ...).
  StepTolerance(Tolerance tolerance, std::string rule) : tolerance_(tolerance), rule_(std::move(rule)) {}
  // A bound per element; `values` are the golden's values of the same elements
  // (for `allowed(value)`).
  StepTolerance(std::vector<double> bounds, FloatBuffer values, std::string rule)
      : per_element_(true),
        bounds_(std::make_shared<const std::vector<double>>(std::move(bounds))),
        owned_values_(std::move(values)),
        rule_(std::move(rule)) {}
  // The same, sharing bounds that are kept elsewhere and reading the golden step's values
  // where they are (a large trace's are hundreds of MB: no copies). `golden_values`
  // (null: none) must outlive this tolerance, as the golden trace outlives a check.
  StepTolerance(std::shared_ptr<const std::vector<double>> bounds, const FloatBuffer* golden_values, std::string rule)
      : per_element_(true), bounds_(std::move(bounds)), golden_values_(golden_values), rule_(std::move(rule)) {}

  bool per_element() const { return per_element_; }
  const Tolerance& tolerance() const { return tolerance_; }
  // How the bound was set, for reports: "atol 1e-06, rtol 1e-05 (--atol/--rtol)",
  // "softmax over E: (4 + E) ulp + ...".
  const std::string& rule() const { return rule_; }

  // The largest difference from the golden's value at flat index `i` that passes.
  double allowed_at(int64_t i, double expected) const {
    if (!per_element_) return tolerance_.allowed(expected);
    return i >= 0 && static_cast<size_t>(i) < bounds_->size() ? (*bounds_)[static_cast<size_t>(i)] : 0.0;
  }

  // The bounds per element (null for an atol/rtol rule): allowed_at(i, ...) reads
  // (*bounds())[i], and 0 past their end.
  const std::vector<double>* bounds() const { return per_element_ ? bounds_.get() : nullptr; }

  // The tolerance at a golden value of this step (the near-tie margins): the bound
  // of an element holding that value (the largest, if several do), else the
  // largest bound of the step.
  double allowed(double expected) const {
    if (!per_element_) return tolerance_.allowed(expected);
    double at_value = -1.0, largest = 0.0;
    const std::vector<double>& bounds = *bounds_;
    const FloatBuffer& values_ = golden_values_ != nullptr ? *golden_values_ : owned_values_;
    for (size_t i = 0; i < bounds.size(); ++i) {
      largest = bounds[i] > largest ? bounds[i] : largest;
      if (i < values_.size() && static_cast<double>(values_[i]) == expected && bounds[i] > at_value) {
        at_value = bounds[i];
      }
    }
    return at_value >= 0.0 ? at_value : largest;
  }

 private:
  bool per_element_ = false;
  Tolerance tolerance_;
  std::shared_ptr<const std::vector<double>> bounds_;  // set when per_element_
  FloatBuffer owned_values_;                           // the golden's values, when given as a copy
  const FloatBuffer* golden_values_ = nullptr;         // or where they are
  std::string rule_;
};

// The tolerance in force for a named step.
using ToleranceFor = std::function<StepTolerance(const std::string& step)>;

}  // namespace moeref
