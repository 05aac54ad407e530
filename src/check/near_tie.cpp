// The checker's second look: index-form candidates and near ties.

#include <map>
#include <memory>
#include <optional>
#include <string>

#include "moeref/check.hpp"
#include "moeref/config_reader.hpp"
#include "moeref/error.hpp"
#include "moeref/ops/routing_form.hpp"
#include "moeref/registry.hpp"
#include "moeref/run.hpp"

namespace moeref {

namespace {

// Forced re-runs are bounded: each one settles at least one decision step.
constexpr int kMaxForcedReruns = 8;

// A candidate that holds only the index form gets dense combine/dispatch
// derived from it, so that those steps are checked too.
std::optional<Trace> with_dense_routing(const Trace& golden, const Trace& candidate) {
  const Tensor* expert = candidate.find_step("routing_expert");
  const Tensor* slot = candidate.find_step("routing_slot");
  const Tensor* weight = candidate.find_step("routing_weight");
  const Tensor* golden_combine = golden.find_step("combine_tensor");
  if (expert == nullptr || slot == nullptr || weight == nullptr || golden_combine == nullptr ||
      candidate.find_step("combine_tensor") != nullptr || golden_combine->rank() != 4) {
    return std::nullopt;
  }
  if (expert->shape != slot->shape || expert->shape != weight->shape || expert->rank() != 3 ||
      expert->dtype != DType::kInt32 || slot->dtype != DType::kInt32 || weight->dtype != DType::kFloat32) {
    fail_input("candidate routing_expert/routing_slot/routing_weight", expert->shape_string(),
               "three [G, S, K] tensors: int32, int32, float32");
  }
  // The dense form is [G, S, E, C] with G and S the candidate's and E, C the golden's: a
  // candidate with other G, S would not match anyway, and could ask for a huge tensor.
  if (expert->shape[0] != golden_combine->shape[0] || expert->shape[1] != golden_combine->shape[1]) {
    fail_input("candidate routing_expert", expert->shape_string(),
               "[G, S, K] with G=" + std::to_string(golden_combine->shape[0]) +
                   " and S=" + std::to_string(golden_combine->shape[1]) + ", as in the golden's combine_tensor");
  }
  Trace derived = candidate;
  Tensor combine, dispatch;
  ops::dense_from_index_form(*expert, *slot, *weight, golden_combine->shape[2], golden_combine->shape[3], combine,
                             dispatch);
  derived.add_step("combine_tensor", std::move(combine));
  derived.add_step("dispatch_tensor", std::move(dispatch));
  return derived;
}

const TensorResult* result_for(const CheckReport& report, const std::string& step) {
  for (const TensorResult& result : report.results) {
    if (result.section == "steps" && result.name == step) return &result;
  }
  return nullptr;
}

}  // namespace

CheckReport check_traces(const Trace& golden, const Trace& candidate_as_given, const CheckOptions& options) {
  const std::optional<Trace> derived = with_dense_routing(golden, candidate_as_given);
  const Trace& candidate = derived ? *derived : candidate_as_given;
  CheckReport report = compare_traces(golden, candidate, options);
  if (derived) {
    for (TensorResult& result : report.results) {
      if (result.name == "combine_tensor" || result.name == "dispatch_tensor") {
        result.message += result.message.empty() ? "derived from the candidate's index form"
                                                 : " (derived from the candidate's index form)";
      }
    }
  }
  if (report.pass || !golden.config.contains("variant")) return report;
  const VariantSpec* spec = find_variant(golden.config["variant"].get<std::string>());
  if (spec == nullptr || spec->near_tie == nullptr) return report;

  Trace reference = golden;
  // The tolerances of the deciding values, at the reference they were decided in.
  std::unique_ptr<Float32Bounds> defaults = std::make_unique<Float32Bounds>(reference);
  const ToleranceFor tolerance_for = [&options, &candidate, &defaults](const std::string& step) {
    return tolerance_for_step(options, candidate, step, *defaults);
  };
  std::map<std::string, Tensor> overrides;
  std::vector<NearTieFinding> findings;
  bool all_within = true;
  for (int rerun = 0; rerun < kMaxForcedReruns && !report.pass && all_within; ++rerun) {
    const std::string step = report.first_divergent_step;
    const TensorResult* result = step.empty() ? nullptr : result_for(report, step);
    const Tensor* expected = step.empty() ? nullptr : reference.find_step(step);
    const Tensor* actual = step.empty() ? nullptr : candidate.find_step(step);
    if (result == nullptr || result->status != TensorStatus::kMismatch || expected == nullptr || actual == nullptr ||
        expected->dtype != DType::kInt32) {
      break;
    }
    // A re-run that still differs where it forced the candidate's value could not
    // take that choice (e.g. a top-k selection of the wrong size): a real difference.
    const auto already = overrides.find(step);
    bool stuck = false;
    for (int64_t i = 0; already != overrides.end() && i < expected->num_elements(); ++i) {
      const int32_t got = actual->i32[static_cast<size_t>(i)];
      if (expected->i32[static_cast<size_t>(i)] == got || already->second.i32[static_cast<size_t>(i)] != got) continue;
      stuck = true;
      for (NearTieFinding& finding : findings) {
        if (finding.step == step && finding.index == expected->named_index(i)) {
          finding.detail += "; the reference re-run cannot take this choice";
        }
      }
    }
    if (stuck) break;
    std::vector<NearTieFinding> here;
    for (int64_t i = 0; i < expected->num_elements(); ++i) {
      const int32_t want = expected->i32[static_cast<size_t>(i)], got = actual->i32[static_cast<size_t>(i)];
      if (want == got) continue;
      const std::optional<NearTie> tie = spec->near_tie(NearTieQuery{reference, step, i, got, tolerance_for});
      if (!tie) {
        here.clear();
        break;
      }
      NearTieFinding finding;
      finding.step = step;
      finding.index = expected->named_index(i);
      finding.expected = want;
      finding.actual = got;
      finding.margin = tie->margin;
      finding.tolerance = tie->tolerance;
      finding.detail = tie->detail;
      finding.within_tolerance = tie->margin <= tie->tolerance;
      all_within = all_within && finding.within_tolerance;
      here.push_back(finding);
    }
    if (here.empty()) break;  // not a decision the variant can force: an ordinary mismatch
    findings.insert(findings.end(), here.begin(), here.end());
    if (!all_within) break;  // a real difference at this decision: report it as is

    // Force the candidate's choices and re-run the reference from the golden's inputs.
    Tensor& forced = overrides[step];
    if (forced.i32.empty()) {
      forced = Tensor::int32(expected->dims, expected->shape);
      for (int32_t& value : forced.i32) value = -1;
    }
    for (int64_t i = 0; i < expected->num_elements(); ++i) {
      if (expected->i32[static_cast<size_t>(i)] != actual->i32[static_cast<size_t>(i)]) {
        forced.i32[static_cast<size_t>(i)] = actual->i32[static_cast<size_t>(i)];
      }
    }
    Config config = config_from_trace(golden, "golden trace");
    config.decision_overrides = overrides;
    reference = run_config(config);
    defaults = std::make_unique<Float32Bounds>(reference);
    report = compare_traces(reference, candidate, options);
  }
  report.near_ties = findings;
  report.consistent_alternative = report.pass && !findings.empty() && all_within;
  return report;
}

}  // namespace moeref
