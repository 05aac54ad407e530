// The order in which tolerances apply, and the atol/rtol defaults (spec/trace-format.md,
// "Tolerances", says how the numbers were chosen). The float32 defaults are bounds per
// element derived from the golden (src/check/step_bounds.cpp).

#include <cmath>
#include <cstdio>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "moeref/check.hpp"
#include "moeref/error.hpp"

namespace moeref {

namespace {

Tolerance read_tolerance(const nlohmann::json& value, const std::string& field) {
  if (!value.is_object() || !value.contains("atol") || !value.contains("rtol") || !value["atol"].is_number() ||
      !value["rtol"].is_number()) {
    fail_input(field, value.dump(), "{\"atol\": A, \"rtol\": R} with two non-negative numbers");
  }
  const Tolerance tolerance{value["atol"].get<double>(), value["rtol"].get<double>()};
  if (!(tolerance.atol >= 0.0) || !(tolerance.rtol >= 0.0) || !std::isfinite(tolerance.atol) ||
      !std::isfinite(tolerance.rtol)) {
    fail_input(field, value.dump(), "non-negative finite atol and rtol");
  }
  return tolerance;
}

std::string number_text(double value) {
  char buffer[32];
  std::snprintf(buffer, sizeof(buffer), "%.3g", value);
  return buffer;
}

std::string abs_rel_text(const Tolerance& tolerance) {
  return "atol " + number_text(tolerance.atol) + ", rtol " + number_text(tolerance.rtol);
}

}  // namespace

Tolerance default_tolerance(const std::string& precision, const std::string& step) {
  const bool product = is_product_step(step);
  if (precision == "float32") return product ? Tolerance{1e-5, 1e-4} : Tolerance{1e-6, 1e-5};
  if (precision == "bfloat16") return product ? Tolerance{1e-2, 3.2e-2} : Tolerance{1e-3, 1.6e-2};
  fail_input("candidate check.precision", "\"" + precision + "\"", "\"float32\" or \"bfloat16\"");
}

bool CheckOptions::float_tolerance_set() const { return float_tolerance_given || !(float_tolerance == Tolerance{}); }

StepTolerance tolerance_for_step(const CheckOptions& options, const Trace& candidate, const std::string& name,
                                 Float32Bounds& defaults, bool loss) {
  auto given = options.per_tensor.find(name);
  if (given != options.per_tensor.end()) {
    return StepTolerance(given->second, abs_rel_text(given->second) + " (--tolerance " + name + ")");
  }
  if (candidate.check.contains("tolerances")) {
    const nlohmann::json& tolerances = candidate.check["tolerances"];
    if (!tolerances.is_object()) fail_input("candidate check.tolerances", tolerances.dump(), "an object by step name");
    if (tolerances.contains(name)) {
      const Tolerance stated = read_tolerance(tolerances[name], "candidate check.tolerances." + name);
      return StepTolerance(stated, abs_rel_text(stated) + " (the candidate's check.tolerances)");
    }
  }
  if (options.float_tolerance_set()) {
    return StepTolerance(options.float_tolerance, abs_rel_text(options.float_tolerance) + " (--atol/--rtol)");
  }
  std::string precision = "float32";
  if (candidate.check.contains("precision")) {
    if (!candidate.check["precision"].is_string()) {
      fail_input("candidate check.precision", candidate.check["precision"].dump(), "\"float32\" or \"bfloat16\"");
    }
    precision = candidate.check["precision"].get<std::string>();
  }
  const Tolerance fallback = default_tolerance(precision, name);
  if (precision == "bfloat16") {
    return StepTolerance(
        fallback, abs_rel_text(fallback) + " (bfloat16 default" + (is_product_step(name) ? ", matrix products)" : ")"));
  }
  if (!loss) {  // a step's bounds are shared with the cache that later steps read, not copied
    if (const std::shared_ptr<const Float32Bound> shared = defaults.shared_step(name)) {
      const Tensor* golden_step = defaults.golden().find_step(name);
      return StepTolerance(std::shared_ptr<const std::vector<double>>(shared, &shared->bound),
                           golden_step != nullptr ? &golden_step->f32 : nullptr, shared->rule);
    }
    return StepTolerance(fallback, abs_rel_text(fallback) + " (float32 default of a step the bound table lacks)");
  }
  std::optional<Float32Bound> bound = defaults.loss(name);
  if (bound) {
    const Tensor* golden_step = loss ? nullptr : defaults.golden().find_step(name);
    FloatBuffer values;
    if (golden_step != nullptr) {
      values = golden_step->f32;
    } else {
      for (const auto& [loss_name, value] : defaults.golden().losses) {
        if (loss_name == name) values = {value};
      }
    }
    return StepTolerance(std::move(bound->bound), std::move(values), std::move(bound->rule));
  }
  return StepTolerance(fallback, abs_rel_text(fallback) + " (float32 default of a step the bound table lacks)");
}

}  // namespace moeref
