// The checker's near-tie analysis and index-form candidates (spec/trace-format.md,
// "Near ties" and "Index form"). Inputs are built so that ties are present or
// absent on purpose.
#include <cmath>

#include "moeref/check.hpp"
#include "moeref/config_reader.hpp"
#include "test_support.hpp"

using moeref::CheckOptions;
using moeref::CheckReport;
using moeref::Config;
using moeref::Tensor;
using moeref::Trace;

namespace {

// One group of 4 tokens, 3 experts, supplied logits, second policy `all`, ample capacity.
nlohmann::json gating_config(const std::vector<float>& logits, const std::string& policy = "all") {
  return {{"variant", "mtf_top2"},
          {"scope", "gating"},
          {"train", true},
          {"dims", {{"G", 1}, {"S", 4}, {"E", 3}}},
          {"hparams", {{"second_policy_train", policy}, {"expert_capacity", 4}, {"second_threshold_train", 0.5}}},
          {"inputs", {{"logits", moeref::testing::tensor_json({"G", "S", "E"}, {1, 4, 3}, logits)}}}};
}

// A "backend" that made other decisions: the reference run with them forced.
Trace forced_run(const nlohmann::json& config_doc, const std::string& step, const std::vector<int32_t>& choices) {
  Config config = moeref::config_from_json(config_doc, "test");
  Tensor forced = Tensor::int32({"G", "S"}, {1, 4});
  forced.i32.assign(choices.begin(), choices.end());
  config.decision_overrides[step] = forced;
  return moeref::run_config(config);
}

}  // namespace

TEST_CASE("near ties: an exact tie decided the other way is a consistent alternative", "[check][near_tie]") {
  // Token 1 has logits [1, 1, 0]: raw_gates e=0 and e=1 are equal; mtf's top_1 takes e=0
  // (lowest index). A backend taking e=1 is equally right.
  const nlohmann::json config = gating_config({3, 0, 0, 1, 1, 0, 0, 2, 0, 0, 0, 2});
  const Trace golden = moeref::testing::run_json(config);
  REQUIRE(moeref::testing::step(golden, "index_1").i32[1] == 0);
  const Trace candidate = forced_run(config, "index_1", {-1, 1, -1, -1});
  REQUIRE(candidate.find_step("index_1")->i32[1] == 1);

  // Compared plainly, they differ from index_1 on.
  const CheckReport plain = moeref::compare_traces(golden, candidate, CheckOptions{});
  CHECK_FALSE(plain.pass);
  CHECK(plain.first_divergent_step == "index_1");

  const CheckReport report = moeref::check_traces(golden, candidate, CheckOptions{});
  INFO(report.to_text());
  CHECK(report.pass);
  CHECK(report.consistent_alternative);
  REQUIRE(report.near_ties.size() == 1);
  CHECK(report.near_ties[0].step == "index_1");
  CHECK(report.near_ties[0].index == "[g=0, s=1]");
  CHECK(report.near_ties[0].margin == 0.0);
  CHECK(report.near_ties[0].within_tolerance);
  CHECK_THAT(report.to_text(), Catch::Matchers::Contains("consistent alternative at a near tie"));
}

TEST_CASE("near ties: a choice one ulp away is a near tie, a clear loser is a real bug", "[check][near_tie]") {
  // Token 0: logits [1, nextafter(1, 0), -1] give raw_gates about an ulp apart.
  const float almost_one = std::nextafter(1.0f, 0.0f);
  const nlohmann::json config = gating_config({1, almost_one, -1, 2, 0, 0, 0, 2, 0, 0, 0, 2});
  const Trace golden = moeref::testing::run_json(config);
  REQUIRE(moeref::testing::step(golden, "index_1").i32[0] == 0);

  const CheckReport near = moeref::check_traces(golden, forced_run(config, "index_1", {1, -1, -1, -1}), CheckOptions{});
  INFO(near.to_text());
  CHECK(near.pass);
  CHECK(near.consistent_alternative);
  REQUIRE(near.near_ties.size() == 1);
  CHECK(near.near_ties[0].margin > 0.0);
  CHECK(near.near_ties[0].margin <= near.near_ties[0].tolerance);

  // Token 1 has logits [2, 0, 0]: e=1 loses by about 0.67 in probability. Choosing it is a bug.
  const CheckReport bug = moeref::check_traces(golden, forced_run(config, "index_1", {-1, 1, -1, -1}), CheckOptions{});
  INFO(bug.to_text());
  CHECK_FALSE(bug.pass);
  CHECK_FALSE(bug.consistent_alternative);
  REQUIRE(bug.near_ties.size() == 1);
  CHECK_FALSE(bug.near_ties[0].within_tolerance);
  CHECK(bug.first_divergent_step == "index_1");
  CHECK_THAT(bug.to_text(), Catch::Matchers::Contains("NOT a near tie"));
}

TEST_CASE("near ties: a consistent alternative still fails when a later step is wrong", "[check][near_tie]") {
  const nlohmann::json config = gating_config({3, 0, 0, 1, 1, 0, 0, 2, 0, 0, 0, 2});
  const Trace golden = moeref::testing::run_json(config);
  Trace candidate = forced_run(config, "index_1", {-1, 1, -1, -1});
  // A wrong constant downstream of the tie: the renormalisation denominator.
  for (moeref::NamedTensor& step : candidate.steps) {
    if (step.name == "denom") step.tensor.f32[2] *= 1.01f;
  }
  const CheckReport report = moeref::check_traces(golden, candidate, CheckOptions{});
  INFO(report.to_text());
  CHECK_FALSE(report.pass);
  CHECK_FALSE(report.consistent_alternative);
  CHECK(report.first_divergent_step == "denom");
  REQUIRE(report.near_ties.size() == 1);
  CHECK(report.near_ties[0].within_tolerance);
}

TEST_CASE("near ties: the random policy's draw at its bound is a near tie", "[check][near_tie]") {
  // Policy random with threshold 0.5: keep iff U < gate_2_normalized * f32(1/0.5).
  // Token 0 draws U exactly at its bound, so keeping and dropping are both admissible.
  nlohmann::json config = gating_config({1, 0, -1, 2, 0, 0, 0, 2, 0, 0, 0, 2}, "random");
  const Trace probe = moeref::testing::run_json(config);
  const float bound = moeref::testing::step(probe, "gate_2_normalized").f32[0] * 2.0f;
  config["inputs"]["second_policy_uniform"] =
      moeref::testing::tensor_json({"G", "S"}, {1, 4}, {bound, 0.99f, 0.99f, 0.99f});
  const Trace golden = moeref::testing::run_json(config);
  REQUIRE(moeref::testing::step(golden, "second_policy_keep").i32[0] == 0);  // U < bound is false at equality
  const CheckReport report =
      moeref::check_traces(golden, forced_run(config, "second_policy_keep", {1, -1, -1, -1}), CheckOptions{});
  INFO(report.to_text());
  CHECK(report.pass);
  CHECK(report.consistent_alternative);
  REQUIRE(report.near_ties.size() == 1);
  CHECK(report.near_ties[0].step == "second_policy_keep");
}

TEST_CASE("index form: a candidate with only routing_* gets combine and dispatch checked", "[check][index_form]") {
  const nlohmann::json config = gating_config({3, 0, 0, 1, 2, 0, 0, 2, 1, 0, 1, 2});
  const Trace golden = moeref::testing::run_json(config);
  Trace candidate;
  candidate.config = golden.config;
  for (const char* name : {"index_1", "index_2", "routing_expert", "routing_slot", "routing_weight"}) {
    candidate.add_step(name, moeref::testing::step(golden, name));
  }
  const CheckReport good = moeref::check_traces(golden, candidate, CheckOptions{});
  INFO(good.to_text());
  CHECK(good.pass);
  bool combine_checked = false;
  for (const moeref::TensorResult& result : good.results) {
    if (result.name == "combine_tensor") {
      combine_checked = result.status == moeref::TensorStatus::kMatch;
      CHECK_THAT(result.message, Catch::Matchers::Contains("index form"));
    }
    if (result.name == "raw_gates") CHECK(result.status == moeref::TensorStatus::kNotChecked);
  }
  CHECK(combine_checked);

  // The same candidate with token 2's second choice in the wrong slot.
  for (moeref::NamedTensor& step : candidate.steps) {
    if (step.name == "routing_slot") step.tensor.i32[2 * 2 + 1] += 1;
  }
  const CheckReport bad = moeref::check_traces(golden, candidate, CheckOptions{});
  INFO(bad.to_text());
  CHECK_FALSE(bad.pass);
  CHECK(bad.first_divergent_step == "routing_slot");
}
