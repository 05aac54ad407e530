// Comparing a candidate trace with a golden one (`moeref check`).
//
// Order of judgement (spec/trace-format.md, "Checking"): structure (a config that
// differs, missing, extra, wrong dims, shape or dtype), then int32 tensors
// exactly, then float32 tensors against a bound per element, then the
// first divergent step in the golden's step order; every later failing step is
// downstream of it when it reads it (the golden's step dependencies), else
// independent. Nothing compared is never a pass.
#pragma once

#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "moeref/step_bounds.hpp"
#include "moeref/tolerance.hpp"
#include "moeref/trace.hpp"

namespace moeref {

// Which tolerance judges a float step, first match wins (spec/trace-format.md,
// "Tolerances"):
//   1. per_tensor[name]                      (--tolerance NAME=ATOL,RTOL)
//   2. the candidate's "check.tolerances"    (a backend states its own known deviations)
//   3. float_tolerance, when float_tolerance_given (--atol / --rtol), or when an API
//      caller changed it from its default value
//   4. the default for the candidate's precision ("check.precision", float32 unless
//      it says bfloat16): for float32, a bound per element from the golden's own
//      values and the step's kind (step_bounds.hpp); for bfloat16 and for a float32
//      step the table lacks, default_tolerance
struct CheckOptions {
  Tolerance float_tolerance;
  bool float_tolerance_given = false;
  // True when float_tolerance applies to every float step (rule 3).
  bool float_tolerance_set() const;
  std::map<std::string, Tolerance> per_tensor;  // by tensor name
  // Steps the candidate must have (--require): an absent one fails, not "not checked".
  std::vector<std::string> required_steps;
  // Every golden step is required (--complete).
  bool complete = false;
};

// The atol/rtol default for a float step of a candidate computed at `precision`
// ("float32" or "bfloat16"): the bfloat16 defaults, and the float32 fallback for a
// step the bound table lacks. Matrix products (is_product_step) get the wider one.
// Throws InputError for another precision.
Tolerance default_tolerance(const std::string& precision, const std::string& step);

// Resolves the rule above for one step (or, with `loss`, one loss) of the golden that
// `defaults` was made for.
StepTolerance tolerance_for_step(const CheckOptions& options, const Trace& candidate, const std::string& name,
                                 Float32Bounds& defaults, bool loss = false);

struct ElementDiff {
  int64_t flat_index = 0;
  std::string index;  // "[g=0, s=5, e=2]"
  std::string expected;
  std::string actual;
  double abs_error = 0.0;
  double rel_error = 0.0;
  double ulps = 0.0;       // |actual - expected| in float32 ulps of the expected value (NaN for int32)
  double bound = 0.0;      // the largest |actual - expected| that passes here (NaN for int32)
  std::string neighbours;  // expected vs actual along the last dim, around the element
};

enum class TensorStatus { kMatch, kMismatch, kStructure, kMissing, kExtra, kNotChecked };

struct TensorResult {
  std::string section;  // "capacity", "losses", "inputs" or "steps"
  std::string name;
  TensorStatus status = TensorStatus::kMatch;
  std::string message;
  std::string tolerance;  // the rule that judged a float tensor, e.g. "float32 softmax over E: ..."
  std::string dtype;
  int64_t total = 0;
  int64_t mismatches = 0;
  std::optional<ElementDiff> first;
  std::optional<ElementDiff> worst;
  // Float tensors: the largest |actual - expected| / bound over the finite elements (at
  // most 1 when every element passes): how close the tensor came to failing.
  double bound_used = 0.0;
  // A failing step after the first divergent one: downstream when it reads that step,
  // directly or not (the golden's "reads"; every later step when the golden does not
  // say), independent otherwise: a second, separate difference.
  bool downstream = false;
  bool independent = false;
};

// One discrete element where the candidate decided differently from the reference.
struct NearTieFinding {
  std::string step;   // the decision step, e.g. "index_1"
  std::string index;  // "[g=0, s=5]"
  int32_t expected = 0;
  int32_t actual = 0;
  double margin = 0.0;     // how far the reference's choice won by
  double tolerance = 0.0;  // the float tolerance of the deciding values
  std::string detail;
  bool within_tolerance = false;  // a near (or exact) tie: the candidate's choice is admissible
};

struct CheckReport {
  bool pass = true;
  std::string first_divergent_step;  // empty when none
  std::vector<TensorResult> results;
  // Filled by check_traces: decisions the candidate made differently. When every
  // one is a near tie and the candidate matches the reference re-run with its
  // decisions forced, the verdict is a consistent alternative (pass).
  std::vector<NearTieFinding> near_ties;
  bool consistent_alternative = false;
  // No tensor was compared (none of the golden's inputs, steps or losses is in the
  // candidate): never a pass.
  bool nothing_checked = false;

  nlohmann::json to_json() const;
  std::string to_text() const;
};

const char* status_name(TensorStatus status);

// Compares the two traces as they are.
CheckReport compare_traces(const Trace& golden, const Trace& candidate, const CheckOptions& options);

// compare_traces, then the near-tie analysis (spec/trace-format.md, "Near ties"):
// when the first divergent step is a decision the variant can force and every
// differing element of it was decided within float tolerance, re-run the
// reference with the candidate's decisions forced and compare again, repeating
// for later decisions. Also derives combine/dispatch from a candidate's index form.
CheckReport check_traces(const Trace& golden, const Trace& candidate, const CheckOptions& options);

}  // namespace moeref
