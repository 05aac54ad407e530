// Default tolerances and the order in which tolerances apply (spec/trace-format.md,
// "Tolerances", says how the numbers were chosen).

#include <cmath>
#include <set>
#include <string>

#include "moeref/check.hpp"
#include "moeref/error.hpp"

namespace moeref {

namespace {

// Steps that are matrix products over M or H (or einsums over E*C): their
// summation order is the backend's choice (BLAS blocking, SIMD width, FMA), so
// they get a wider default than elementwise steps.
bool is_matrix_product(const std::string& step) {
  static const std::set<std::string> steps = {
      "logits", "expert_inputs", "expert_hidden", "expert_hidden_dropout", "expert_outputs", "outputs",
      // stmoe_topn: the router, the experts' and SparseMoEBlock's GEGLU feed-forwards, the combine einsum.
      "gate_logits", "expert_hidden_x", "expert_hidden_gate", "expert_geglu", "output", "ff_before_hidden_x",
      "ff_before_hidden_gate", "ff_before_geglu", "ff_before_output", "ff_after_hidden_x", "ff_after_hidden_gate",
      "ff_after_geglu", "ff_after_output"};
  return steps.count(step) > 0;
}

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

}  // namespace

Tolerance default_tolerance(const std::string& precision, const std::string& step) {
  const bool product = is_matrix_product(step);
  if (precision == "float32") return product ? Tolerance{1e-5, 1e-4} : Tolerance{1e-6, 1e-5};
  if (precision == "bfloat16") return product ? Tolerance{1e-2, 3.2e-2} : Tolerance{1e-3, 1.6e-2};
  fail_input("candidate check.precision", "\"" + precision + "\"", "\"float32\" or \"bfloat16\"");
}

Tolerance tolerance_for_step(const CheckOptions& options, const Trace& candidate, const std::string& step) {
  auto given = options.per_tensor.find(step);
  if (given != options.per_tensor.end()) return given->second;
  if (candidate.check.contains("tolerances")) {
    const nlohmann::json& tolerances = candidate.check["tolerances"];
    if (!tolerances.is_object()) fail_input("candidate check.tolerances", tolerances.dump(), "an object by step name");
    if (tolerances.contains(step)) return read_tolerance(tolerances[step], "candidate check.tolerances." + step);
  }
  if (options.float_tolerance_given) return options.float_tolerance;
  std::string precision = "float32";
  if (candidate.check.contains("precision")) {
    if (!candidate.check["precision"].is_string()) {
      fail_input("candidate check.precision", candidate.check["precision"].dump(), "\"float32\" or \"bfloat16\"");
    }
    precision = candidate.check["precision"].get<std::string>();
  }
  const Tolerance fallback = default_tolerance(precision, step);
  // Without a stated precision, elementwise steps use float_tolerance (the float32 default
  // unless an API caller changed it).
  if (precision == "float32" && !is_matrix_product(step)) return options.float_tolerance;
  return fallback;
}

}  // namespace moeref
