// Verdicts a CI can trust (spec/trace-format.md, "Checking"): nothing checked never
// passes, required steps, non-finite values named, configs compared, true
// downstream from the step dependencies, integer differences read as such.

#include <cmath>
#include <string>

#include "moeref/check.hpp"
#include "moeref/error.hpp"
#include "moeref/json_number.hpp"
#include "test_support.hpp"

using Catch::Matchers::Contains;
using moeref::CheckOptions;
using moeref::CheckReport;
using moeref::TensorResult;
using moeref::TensorStatus;
using moeref::Trace;
using moeref::testing::mutable_step;
using moeref::testing::tiny_mtf_top2_layer_trace;

namespace {

const TensorResult& result_named(const CheckReport& report, const std::string& section, const std::string& name) {
  for (const TensorResult& result : report.results) {
    if (result.section == section && result.name == name) return result;
  }
  FAIL("no result " << section << "." << name);
  throw std::logic_error("unreachable");
}

// The golden with only the named steps, its inputs and its losses dropped.
Trace with_steps_only(const Trace& golden, const std::vector<std::string>& names) {
  Trace candidate;
  candidate.config = golden.config;
  for (const std::string& name : names) candidate.add_step(name, *golden.find_step(name));
  return candidate;
}

}  // namespace

TEST_CASE("check verdicts: a candidate with nothing the golden has never passes", "[check][verdict]") {
  const Trace& golden = tiny_mtf_top2_layer_trace();
  Trace empty;
  empty.config = golden.config;
  const CheckReport report = moeref::check_traces(golden, empty, CheckOptions{});
  CHECK_FALSE(report.pass);
  CHECK(report.nothing_checked);
  CHECK_THAT(report.to_text(), Contains("FAIL: 0 tensors checked") && Contains("NOTHING CHECKED") &&
                                   Contains("steps.raw_gates") && Contains("losses.gating_loss"));
  CHECK(report.to_json()["nothing_checked"] == true);
  // One step is enough to be a check.
  const CheckReport one = moeref::check_traces(golden, with_steps_only(golden, {"raw_gates"}), CheckOptions{});
  CHECK(one.pass);
  CHECK_FALSE(one.nothing_checked);
}

TEST_CASE("check verdicts: --require and --complete turn an absent step into a failure", "[check][verdict]") {
  const Trace& golden = tiny_mtf_top2_layer_trace();
  const Trace candidate = with_steps_only(golden, {"raw_gates", "index_1"});
  CheckOptions require;
  require.required_steps = {"index_1", "combine_tensor"};
  const CheckReport report = moeref::check_traces(golden, candidate, require);
  CHECK_FALSE(report.pass);
  CHECK(result_named(report, "steps", "combine_tensor").status == TensorStatus::kMissing);
  CHECK(result_named(report, "steps", "index_1").status == TensorStatus::kMatch);
  CHECK(result_named(report, "steps", "gate_1").status == TensorStatus::kNotChecked);
  CHECK_THAT(report.to_text(), Contains("steps.combine_tensor") && Contains("--require"));

  CheckOptions complete;
  complete.complete = true;
  const CheckReport all = moeref::check_traces(golden, candidate, complete);
  CHECK_FALSE(all.pass);
  CHECK(result_named(all, "steps", "gate_1").status == TensorStatus::kMissing);
  CHECK(moeref::check_traces(golden, golden, complete).pass);

  CheckOptions unknown;
  unknown.required_steps = {"index_3"};
  CHECK_THROWS_WITH(moeref::check_traces(golden, candidate, unknown),
                    Contains("--require") && Contains("index_3") && Contains("raw_gates"));
}

TEST_CASE("check verdicts: NaN and Infinity as Python's json writes them are read and named", "[check][verdict]") {
  const Trace& golden = tiny_mtf_top2_layer_trace();
  // Python's json.dumps writes the bare words NaN, Infinity, -Infinity.
  const std::string text = R"({"format":"moeref-trace","format_version":1,"losses":{"gating_loss":NaN},
    "steps":[{"name":"gate_1","dims":["G","S"],"shape":[)" +
                           std::to_string(golden.find_step("gate_1")->shape[0]) + "," +
                           std::to_string(golden.find_step("gate_1")->shape[1]) + R"(],"dtype":"float32","data":[)";
  std::string data;
  const moeref::Tensor& gate_1 = *golden.find_step("gate_1");
  for (size_t k = 0; k < gate_1.f32.size(); ++k) {
    std::string value;
    moeref::append_float32(value, gate_1.f32[k]);
    data += (k > 0 ? "," : "") + (k == 1 ? std::string("NaN") : k == 2 ? std::string("-Infinity") : value);
  }
  const moeref::ParsedDocument parsed = moeref::parse_json_document(text + data + "]}]}", "candidate");
  const Trace candidate = moeref::trace_from_json(parsed.doc, "candidate", &parsed.arrays);
  REQUIRE(std::isnan(candidate.find_step("gate_1")->f32[1]));
  REQUIRE(std::isinf(candidate.find_step("gate_1")->f32[2]));
  const CheckReport report = moeref::check_traces(golden, candidate, CheckOptions{});
  CHECK_FALSE(report.pass);
  CHECK(report.first_divergent_step == "gate_1");
  const TensorResult& result = result_named(report, "steps", "gate_1");
  CHECK(result.mismatches == 2);
  REQUIRE(result.first.has_value());
  CHECK(result.first->index == gate_1.named_index(1));
  CHECK(result.first->actual == "NaN");
  CHECK(result_named(report, "losses", "gating_loss").status == TensorStatus::kMismatch);
  // The same words inside a string stay text.
  const moeref::ParsedDocument quoted = moeref::parse_json_document(
      R"({"format":"moeref-trace","format_version":1,"generator":{"note":"NaN Infinity"}})", "candidate");
  CHECK(quoted.doc["generator"]["note"] == "NaN Infinity");
}

TEST_CASE("check verdicts: a config that changes the numbers is a structure failure", "[check][verdict]") {
  const Trace& golden = tiny_mtf_top2_layer_trace();
  Trace candidate = golden;
  candidate.config["hparams"]["second_threshold_eval"] = 0.3;
  candidate.config["train"] = !golden.config["train"].get<bool>();
  const CheckReport report = moeref::check_traces(golden, candidate, CheckOptions{});
  CHECK_FALSE(report.pass);
  const TensorResult& hparam = result_named(report, "config", "hparams.second_threshold_eval");
  CHECK(hparam.status == TensorStatus::kStructure);
  CHECK_THAT(hparam.message, Contains("0.2") && Contains("0.3"));
  CHECK(result_named(report, "config", "train").status == TensorStatus::kStructure);
  CHECK_THAT(report.to_text(), Contains("config.hparams.second_threshold_eval"));

  // Another seed with every input recorded computes the same numbers: no failure.
  Trace reseeded = golden;
  reseeded.config["seed"] = golden.config["seed"].get<uint64_t>() + 1;
  CHECK(moeref::check_traces(golden, reseeded, CheckOptions{}).pass);
  // Without the inputs, the seed decides them: a failure naming it.
  reseeded.inputs.clear();
  const CheckReport seed_report = moeref::check_traces(golden, reseeded, CheckOptions{});
  CHECK_FALSE(seed_report.pass);
  CHECK(result_named(seed_report, "config", "seed").status == TensorStatus::kStructure);
}

TEST_CASE("check verdicts: downstream means reading the first divergent step, not coming after it",
          "[check][verdict]") {
  const Trace& golden = tiny_mtf_top2_layer_trace();
  Trace candidate = golden;
  // gate_1_normalized diverges first; density_1 (from mask_1) comes later but does not
  // read it; gate_1_capacity and combine_tensor do.
  mutable_step(candidate, "gate_1_normalized").f32[0] += 0.25f;
  mutable_step(candidate, "density_1").f32[0] += 0.25f;
  mutable_step(candidate, "gate_1_capacity").f32[0] += 0.25f;
  const CheckReport report = moeref::compare_traces(golden, candidate, CheckOptions{});
  CHECK(report.first_divergent_step == "gate_1_normalized");
  CHECK(result_named(report, "steps", "density_1").independent);
  CHECK_FALSE(result_named(report, "steps", "density_1").downstream);
  CHECK(result_named(report, "steps", "gate_1_capacity").downstream);
  CHECK_FALSE(result_named(report, "steps", "gate_1_capacity").independent);
  CHECK_THAT(report.to_text(), Contains("[independent of gate_1_normalized: does not read it]") &&
                                   Contains("[downstream of gate_1_normalized]"));
  CHECK(report.to_json()["tensors"].size() == report.results.size());
}

TEST_CASE("check verdicts: an integer difference has no relative error", "[check][verdict]") {
  const Trace& golden = tiny_mtf_top2_layer_trace();
  Trace candidate = golden;
  moeref::Tensor& index_1 = mutable_step(candidate, "index_1");
  REQUIRE(index_1.i32[0] == 2);  // the tiny trace routes token 0 to expert 2 first
  index_1.i32[0] = 0;
  const CheckReport report = moeref::compare_traces(golden, candidate, CheckOptions{});
  const std::string text = report.to_text();
  CHECK_THAT(text, Contains("steps.index_1") && Contains("(differs by 2)"));
  CHECK_THAT(text, !Contains("rel 0)"));
  const nlohmann::json json = report.to_json();
  for (const nlohmann::json& item : json["tensors"]) {
    if (item["name"] == "index_1") CHECK(item["first"]["rel_error"].is_null());
  }
}

TEST_CASE(
    "check verdicts: a large step's worst score, mismatches and non-finite matches are the element-by-element ones",
    "[check][verdict]") {
  // Four stretches of 65536 elements and a tail: the checker first tries each stretch
  // with no branch per element, and goes element by element only where a value is not
  // finite or out of bounds. The verdict must not depend on which stretch took which way.
  const int64_t n = 3 * 65536 + 1003;
  moeref::Tensor golden_values = moeref::Tensor::float32({"S"}, {n});
  uint32_t state = 4242;
  auto next = [&state]() {
    state = state * 1664525u + 1013904223u;
    return static_cast<double>(state >> 8) / 16777216.0;  // [0, 1)
  };
  for (float& value : golden_values.f32) value = static_cast<float>(4.0 * next() - 2.0);
  golden_values.f32[3] = 0.05f;  // allows 1e-3: a mismatch put here below scores about 10
  const moeref::Tolerance rule{1e-3, 1e-2};
  moeref::Tensor within = golden_values;
  for (size_t i = 0; i < within.f32.size(); ++i) {
    const double e = golden_values.f32[i];
    within.f32[i] = static_cast<float>(e + (2.0 * next() - 1.0) * 0.9 * rule.allowed(e));
  }
  // The largest score within the bounds is in the first stretch, which has nothing else
  // out of the way; the second and fourth hold a NaN and an infinity matched exactly.
  const size_t largest_at = 1000, nan_at = 65536 + 17, inf_at = 3 * 65536 + 5, bad_at = 2 * 65536 + 300;
  within.f32[largest_at] =
      static_cast<float>(golden_values.f32[largest_at] + 0.95 * rule.allowed(golden_values.f32[largest_at]));
  golden_values.f32[nan_at] = within.f32[nan_at] = std::nanf("");
  golden_values.f32[inf_at] = within.f32[inf_at] = -INFINITY;
  // The largest |a - e| / allowed(e) over the elements finite in both, and where it is.
  auto worst_of = [&](const moeref::Tensor& candidate_values) {
    std::pair<double, size_t> worst{0.0, 0};
    for (size_t i = 0; i < candidate_values.f32.size(); ++i) {
      const double e = golden_values.f32[i], a = candidate_values.f32[i];
      if (!std::isfinite(e) || !std::isfinite(a)) continue;
      const double score = std::fabs(a - e) / rule.allowed(e);
      if (score > worst.first) worst = {score, i};
    }
    return worst;
  };
  Trace golden;
  golden.config = {{"variant", "hand_built"}};
  golden.add_step("big", golden_values);
  CheckOptions options;
  options.per_tensor["big"] = rule;
  auto check_with = [&](const moeref::Tensor& candidate_values) {
    Trace candidate;
    candidate.config = golden.config;
    candidate.add_step("big", candidate_values);
    const CheckReport report = moeref::check_traces(golden, candidate, options);
    return std::make_pair(report.pass, result_named(report, "steps", "big"));
  };

  SECTION("every element within its bound: passes, with the largest score") {
    const auto [pass, big] = check_with(within);
    CHECK(pass);
    CHECK(big.mismatches == 0);
    REQUIRE(worst_of(within).second == largest_at);
    CHECK(big.bound_used == worst_of(within).first);
  }
  SECTION("one mismatch, then a second in a stretch that held none") {
    moeref::Tensor one_bad = within;
    one_bad.f32[bad_at] = golden_values.f32[bad_at] + 1.0f;
    REQUIRE(worst_of(one_bad).second == bad_at);
    for (const bool second_mismatch : {false, true}) {
      CAPTURE(second_mismatch);
      moeref::Tensor candidate_values = one_bad;
      if (second_mismatch) candidate_values.f32[3] = 0.04f;  // the first, not the worst
      const auto [pass, big] = check_with(candidate_values);
      CHECK_FALSE(pass);
      CHECK(big.bound_used == worst_of(candidate_values).first);
      REQUIRE(big.first.has_value());
      REQUIRE(big.worst.has_value());
      CHECK(big.worst->flat_index == static_cast<int64_t>(bad_at));
      CHECK(big.mismatches == (second_mismatch ? 2 : 1));
      CHECK(big.first->flat_index == (second_mismatch ? 3 : static_cast<int64_t>(bad_at)));
    }
  }
}

TEST_CASE("check verdicts: one bit changed anywhere in a step of many MB is found", "[check][verdict]") {
  // Steps over 8 MiB are compared for identical bits in slices shared among the threads.
  const int64_t n = (int64_t{9} << 20) / 4 + 3;
  moeref::Tensor values = moeref::Tensor::float32({"S"}, {n});
  for (size_t i = 0; i < values.f32.size(); ++i) values.f32[i] = static_cast<float>(i % 1000) * 0.25f;
  moeref::Tensor indices = moeref::Tensor::int32({"S"}, {n});
  for (size_t i = 0; i < indices.i32.size(); ++i) indices.i32[i] = static_cast<int32_t>(i % 77);
  Trace golden;
  golden.config = {{"variant", "hand_built"}};
  golden.add_step("values", values);
  golden.add_step("indices", indices);
  CheckOptions options;
  options.per_tensor["values"] = moeref::Tolerance{0.0, 0.0};
  CHECK(moeref::check_traces(golden, golden, options).pass);
  for (const size_t at : {size_t{0}, static_cast<size_t>(n) / 2 + 1, static_cast<size_t>(n) - 1}) {
    CAPTURE(at);
    Trace candidate = golden;
    float& value = mutable_step(candidate, "values").f32[at];
    value = std::nextafter(value, 1e9f);
    mutable_step(candidate, "indices").i32[at] += 1;
    const CheckReport report = moeref::check_traces(golden, candidate, options);
    CHECK_FALSE(report.pass);
    CHECK(result_named(report, "steps", "values").mismatches == 1);
    CHECK(result_named(report, "steps", "indices").mismatches == 1);
  }
}
