// Near ties of mtf's switch-family variants (spec/trace-format.md, "Near ties"):
// a "backend" that decided an exact tie the other way is the reference run with
// Config::decision_overrides, the re-run the checker makes; a clear loser forced
// the same way is a real bug. Decisions: expert_index (mtf_switch, mtf_switch_max:
// top-1 of raw_gates, or of sample_logits under sample; mtf_ntlb: the ranking of
// raw_gates) and expert_gate_indices (mtf_switch_max, mtf_expert_selection: which
// token each slot holds).
#include <string>
#include <utility>
#include <vector>

#include "moeref/check.hpp"
#include "moeref/config_reader.hpp"
#include "mtf_switch_test_helpers.hpp"
#include "test_support.hpp"

using namespace moeref::testing::mtf;
using moeref::CheckOptions;
using moeref::CheckReport;

namespace {

using Choices = std::vector<std::pair<int64_t, int32_t>>;

// The reference run with `choices` forced at step `decision` (-1 elsewhere).
Trace forced_run(const json& config_doc, const Trace& golden, const std::string& decision, const Choices& choices) {
  moeref::Config config = moeref::config_from_json(config_doc, "test");
  Tensor forced = Tensor::int32(step(golden, decision).dims, step(golden, decision).shape);
  for (int32_t& value : forced.i32) value = -1;
  for (const auto& [flat, value] : choices) forced.i32[static_cast<size_t>(flat)] = value;
  config.decision_overrides[decision] = forced;
  return moeref::run_config(config);
}

CheckReport check_forced(const json& config, const Trace& golden, const std::string& decision, const Choices& choices) {
  return moeref::check_traces(golden, forced_run(config, golden, decision, choices), CheckOptions{});
}

void require_consistent_alternative(const CheckReport& report, const std::string& decision) {
  INFO(report.to_text());
  CHECK(report.pass);
  CHECK(report.consistent_alternative);
  REQUIRE_FALSE(report.near_ties.empty());
  for (const moeref::NearTieFinding& tie : report.near_ties) {
    CHECK(tie.step == decision);
    CHECK(tie.within_tolerance);
  }
}

void require_real_difference(const CheckReport& report, const std::string& decision) {
  INFO(report.to_text());
  CHECK_FALSE(report.pass);
  CHECK(report.first_divergent_step == decision);
  CHECK_THAT(report.to_text(), Catch::Matchers::Contains("NOT a near tie"));
}

}  // namespace

TEST_CASE("mtf_switch near ties: expert_index at an exact tie of raw_gates, and under sample",
          "[mtf_switch][near_tie][check]") {
  // t0 logits (0.5, 0.5): exact tie, reference e0. t1 (2, 0): e1 is a clear loser.
  const json config =
      variant_config("mtf_switch", 1, 2, 2, {0.5f, 0.5f, 2.0f, 0.0f}, {{"switch_policy_eval", "argmax"}}, false);
  const Trace golden = run_json(config);
  REQUIRE(ints(golden, "expert_index") == std::vector<int32_t>{0, 0});
  const CheckReport report = check_forced(config, golden, "expert_index", {{0, 1}});
  require_consistent_alternative(report, "expert_index");
  CHECK_THAT(report.near_ties.at(0).detail, Catch::Matchers::Contains("raw_gates"));
  require_real_difference(check_forced(config, golden, "expert_index", {{1, 1}}), "expert_index");

  SECTION("sample at temperature 0 decides over the logits") {
    const json cold = variant_config("mtf_switch", 1, 2, 2, {0.5f, 0.5f, 2.0f, 0.0f},
                                     {{"switch_policy_eval", "sample"}, {"switch_temperature", 0.0}}, false);
    const Trace sampled = run_json(cold);
    const CheckReport tie = check_forced(cold, sampled, "expert_index", {{0, 1}});
    require_consistent_alternative(tie, "expert_index");
    CHECK_THAT(tie.near_ties.at(0).detail, Catch::Matchers::Contains("logits"));
  }
}

TEST_CASE("mtf_switch_max near ties: the token an expert keeps at a slot, at an exact tie of gates",
          "[mtf_switch_max][near_tie][check]") {
  // Three tokens (0.5, 0.5) -> expert 0 with gate 0.5 each, t3 (0, 3) -> expert 1. C = 2:
  // expert 0 keeps t0, t1 (lower indices at the tie); keeping t2 at slot 1 is as good.
  // Expert 1's slot 1 is a zero filler (t0); putting t3 there is a clear difference.
  json hp = {{"switch_policy_eval", "argmax"}, {"expert_capacity", 2}};
  const json config =
      variant_config("mtf_switch_max", 1, 4, 2, {0.5f, 0.5f, 0.5f, 0.5f, 0.5f, 0.5f, 0.0f, 3.0f}, hp, false);
  const Trace golden = run_json(config);
  REQUIRE(ints(golden, "expert_gate_indices") == std::vector<int32_t>{0, 1, 3, 0});
  // [g=0, e=0, c=1] is flat 1.
  const CheckReport report = check_forced(config, golden, "expert_gate_indices", {{1, 2}});
  require_consistent_alternative(report, "expert_gate_indices");
  CHECK_THAT(report.near_ties.at(0).detail, Catch::Matchers::Contains("expert_masked_probs"));
  // Expert 0 keeping t3 (gate 0 at expert 0) instead of t1 (0.5): a bug.
  require_real_difference(check_forced(config, golden, "expert_gate_indices", {{1, 3}}), "expert_gate_indices");
}

TEST_CASE("mtf_expert_selection near ties: equal probabilities over the tokens at the cut",
          "[mtf_expert_selection][near_tie][check]") {
  // Expert 0's softmax over the tokens: t0 0.5, t1 0.25, t2 0.25 (logits log 2, 0, 0); C = 2:
  // the reference keeps t0, t1; a backend keeping t2 at slot 1 decided an exact tie.
  const json config = variant_config("mtf_expert_selection", 1, 3, 2, {0.6931472f, 0.0f, 0.0f, 1.0f, 0.0f, 2.0f},
                                     {{"switch_policy_eval", "argmax"}, {"expert_capacity", 2}}, false, ones(3));
  const Trace golden = run_json(config);
  REQUIRE(ints(golden, "expert_gate_indices")[1] == 1);
  const Tensor& raw_gates = step(golden, "raw_gates");
  REQUIRE(f_at(raw_gates, {0, 1, 0}) == f_at(raw_gates, {0, 2, 0}));
  const CheckReport report = check_forced(config, golden, "expert_gate_indices", {{1, 2}});
  require_consistent_alternative(report, "expert_gate_indices");
  CHECK_THAT(report.near_ties.at(0).detail, Catch::Matchers::Contains("raw_gates"));
  // Slot 0 holding t1 instead of t0 (0.25 vs 0.5): a bug.
  require_real_difference(check_forced(config, golden, "expert_gate_indices", {{0, 1}}), "expert_gate_indices");
}

TEST_CASE("mtf_ntlb near ties: the ranking of a token's experts at an exact tie", "[mtf_ntlb][near_tie][check]") {
  // t0 logits (1, 0, 0): rank 1 is an exact tie between experts 1 and 2 (reference: 1).
  const json config =
      variant_config("mtf_ntlb", 1, 2, 3, {1, 0, 0, 0, 2, 1},
                     {{"switch_policy_eval", "argmax"}, {"ntlb_top_k", 2}, {"expert_capacity", 2}}, false);
  const Trace golden = run_json(config);
  REQUIRE(ints(golden, "expert_index") == std::vector<int32_t>{0, 1, 1, 2});
  const CheckReport report = check_forced(config, golden, "expert_index", {{1, 2}});
  require_consistent_alternative(report, "expert_index");
  // t1 ranking expert 0 first (raw_gates 0.09 against 0.67): a bug.
  require_real_difference(check_forced(config, golden, "expert_index", {{2, 0}}), "expert_index");
}
