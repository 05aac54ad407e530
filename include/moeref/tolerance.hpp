// The float comparison rule shared by the checker and the near-tie analysis.
#pragma once

#include <functional>
#include <string>

namespace moeref {

// An element fails only when |actual - expected| exceeds BOTH atol and
// rtol * |expected| (so tiny values and large values are each judged fairly).
struct Tolerance {
  double atol = 1e-6;
  double rtol = 1e-5;

  // The largest difference from `expected` that still passes.
  double allowed(double expected) const {
    const double relative = rtol * (expected < 0 ? -expected : expected);
    return atol > relative ? atol : relative;
  }
};

// The tolerance in force for a named step.
using ToleranceFor = std::function<Tolerance(const std::string& step)>;

}  // namespace moeref
