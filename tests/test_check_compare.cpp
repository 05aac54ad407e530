// compare_traces, the judge behind `moeref check`: hand-made candidates built
// by editing a golden trace, one defect at a time.
//
// Dims: G groups, S group size, E experts, C expert capacity. The golden is a
// tiny mtf_top2 layer: G = 2 groups of S = 4 tokens, E = 3 experts.
#include <omp.h>

#include <cmath>
#include <string>
#include <vector>

#include "moeref/check.hpp"
#include "moeref/error.hpp"
#include "test_support.hpp"

using Catch::Contains;
using moeref::CheckOptions;
using moeref::CheckReport;
using moeref::TensorResult;
using moeref::TensorStatus;
using moeref::Tolerance;
using moeref::Trace;
using moeref::testing::mutable_step;

namespace {

// The golden of these tests: the tiny mtf_top2 layer.
const Trace& golden_trace() { return moeref::testing::tiny_mtf_top2_layer_trace(); }

const TensorResult& result_for(const CheckReport& report, const std::string& section, const std::string& name) {
  for (const TensorResult& result : report.results) {
    if (result.section == section && result.name == name) return result;
  }
  FAIL("no result for " << section << "." << name);
  throw std::logic_error("unreachable");
}

int count_failing(const CheckReport& report) {
  int failing = 0;
  for (const TensorResult& result : report.results) {
    if (result.status != TensorStatus::kMatch && result.status != TensorStatus::kNotChecked) ++failing;
  }
  return failing;
}

CheckReport compare(const Trace& golden, const Trace& candidate, CheckOptions options = {}) {
  return moeref::compare_traces(golden, candidate, options);
}

// A trace of one float32 step "v" of shape [S=n].
Trace one_step(const std::vector<float>& values) {
  Trace trace;
  trace.config = {{"variant", "mtf_top2"}};
  moeref::Tensor v = moeref::Tensor::float32({"S"}, {static_cast<int64_t>(values.size())});  // [S]
  v.f32.assign(values.begin(), values.end());
  trace.add_step("v", v);
  return trace;
}

bool passes(float expected, float actual, double atol, double rtol) {
  CheckOptions options;
  options.float_tolerance = {atol, rtol};
  return compare(one_step({expected}), one_step({actual}), options).pass;
}

}  // namespace

TEST_CASE("check compare: an identical candidate passes", "[check]") {
  const CheckReport report = compare(golden_trace(), golden_trace());
  CHECK(report.pass);
  CHECK(report.first_divergent_step.empty());
  CHECK(count_failing(report) == 0);
  // Every golden step, input and loss is judged, plus the capacity.
  CHECK(report.results.size() ==
        golden_trace().steps.size() + golden_trace().inputs.size() + golden_trace().losses.size() + 1);
  for (const TensorResult& result : report.results) {
    INFO(result.section << "." << result.name);
    CHECK(result.status == TensorStatus::kMatch);
    CHECK_FALSE(result.downstream);
  }
  CHECK_THAT(report.to_text(), Contains("PASS"));
  // Re-reading the golden from its text changes nothing.
  const Trace reread =
      moeref::trace_from_json(moeref::parse_json_text(moeref::write_trace(golden_trace()), "golden"), "golden");
  CHECK(compare(golden_trace(), reread).pass);
}

TEST_CASE("check compare: a changed int32 in index_1 is an exact mismatch with a named index", "[check]") {
  Trace candidate = golden_trace();
  moeref::Tensor& index_1 = mutable_step(candidate, "index_1");  // [G, S]
  const int32_t expected = index_1.i32[1];
  const int32_t actual = (expected + 1) % 3;
  index_1.i32[1] = actual;
  const CheckReport report = compare(golden_trace(), candidate);
  CHECK_FALSE(report.pass);
  CHECK(report.first_divergent_step == "index_1");
  const TensorResult& result = result_for(report, "steps", "index_1");
  CHECK(result.status == TensorStatus::kMismatch);
  CHECK(result.dtype == "int32");
  CHECK(result.total == 8);
  CHECK(result.mismatches == 1);
  REQUIRE(result.first.has_value());
  CHECK(result.first->flat_index == 1);
  CHECK(result.first->index == "[g=0, s=1]");
  CHECK(result.first->expected == std::to_string(expected));
  CHECK(result.first->actual == std::to_string(actual));
  CHECK_THAT(result.first->neighbours, Contains("s=1: " + std::to_string(expected) + " vs " + std::to_string(actual)));
  CHECK(count_failing(report) == 1);
  const std::string text = report.to_text();
  CHECK_THAT(text, Contains("FAIL") && Contains("integer tensors (exact)") && Contains("steps.index_1") &&
                       Contains("[g=0, s=1]") &&
                       Contains("expected " + std::to_string(expected) + ", actual " + std::to_string(actual)) &&
                       Contains("first divergent step: index_1"));
  // Integers have no tolerance, however generous.
  CheckOptions generous;
  generous.float_tolerance = {100.0, 100.0};
  generous.per_tensor["index_1"] = {100.0, 100.0};
  CHECK_FALSE(compare(golden_trace(), candidate, generous).pass);
}

TEST_CASE("check compare: floats beyond tolerance report the first and the worst element", "[check]") {
  Trace candidate = golden_trace();
  moeref::Tensor& raw_gates = mutable_step(candidate, "raw_gates");  // [G, S, E]
  raw_gates.f32[2] += 1e-4f;                                         // first failing element, [g=0, s=0, e=2]
  raw_gates.f32[13] += 1e-2f;                                        // the worst, [g=1, s=0, e=1]
  raw_gates.f32[20] += 2e-5f;                                        // fails too, but by far less
  const CheckReport report = compare(golden_trace(), candidate);
  CHECK_FALSE(report.pass);
  CHECK(report.first_divergent_step == "raw_gates");
  const TensorResult& result = result_for(report, "steps", "raw_gates");
  CHECK(result.status == TensorStatus::kMismatch);
  CHECK(result.mismatches == 3);
  CHECK(result.total == 24);
  REQUIRE(result.first.has_value());
  REQUIRE(result.worst.has_value());
  CHECK(result.first->flat_index == 2);
  CHECK(result.first->index == "[g=0, s=0, e=2]");
  CHECK(result.worst->flat_index == 13);
  CHECK(result.worst->index == "[g=1, s=0, e=1]");
  CHECK(result.worst->abs_error == Approx(1e-2).epsilon(1e-3));
  CHECK(result.worst->rel_error == Approx(result.worst->abs_error / golden_trace().find_step("raw_gates")->f32[13]));
  const std::string text = report.to_text();
  CHECK_THAT(text, Contains("float tensors (abs and rel tolerance)") && Contains("steps.raw_gates: 3 of 24") &&
                       Contains("first at [g=0, s=0, e=2]") && Contains("worst at [g=1, s=0, e=1]"));
}

TEST_CASE("check compare: a long tensor compared in stretches reports what one pass in order would", "[check]") {
  // 300000 elements: five stretches of 2^16 and a short one, compared side by side.
  std::vector<float> values(300000);
  for (size_t i = 0; i < values.size(); ++i) values[i] = 1.0f + static_cast<float>(i % 97) / 64.0f;
  std::vector<float> changed = values;
  const std::vector<std::pair<size_t, float>> edits = {
      {70000, 0.5f},    // the first mismatch, in the second stretch
      {140000, 2.0f},   // the worst, in the third
      {270000, 2.0f},   // as bad again, later: the first of the worst is reported
      {299999, 0.25f},  // in the last, short stretch
  };
  for (const auto& [at, by] : edits) changed[at] += by;
  CheckOptions options;
  options.float_tolerance = {1e-3, 0.0};
  options.float_tolerance_given = true;
  const int threads_before = omp_get_max_threads();
  for (int threads : {1, 2}) {
    INFO("threads " << threads);
    omp_set_num_threads(threads);
    const CheckReport report = compare(one_step(values), one_step(changed), options);
    const TensorResult& result = result_for(report, "steps", "v");
    CHECK(result.mismatches == 4);
    REQUIRE(result.first.has_value());
    REQUIRE(result.worst.has_value());
    CHECK(result.first->flat_index == 70000);
    CHECK(result.worst->flat_index == 140000);
    CHECK(result.bound_used == Approx(2.0 / 1e-3).epsilon(1e-3));
  }
  omp_set_num_threads(threads_before);
}

TEST_CASE("check compare: floats within tolerance pass", "[check]") {
  Trace candidate = golden_trace();
  for (const char* name : {"raw_gates", "gate_1", "combine_tensor", "outputs"}) {
    moeref::Tensor& tensor = mutable_step(candidate, name);
    for (float& value : tensor.f32) value = std::nextafter(value, 2.0f);  // one ulp up
  }
  candidate.losses[0].second = std::nextafter(candidate.losses[0].second, 0.0f);
  const CheckReport report = compare(golden_trace(), candidate);
  CHECK(report.pass);
  CHECK(count_failing(report) == 0);
}

TEST_CASE("check compare: an element fails only if it exceeds both atol and rtol times the expected magnitude",
          "[check]") {
  // expected 1, actual 1.5: |diff| = 0.5.
  CHECK(passes(1.0f, 1.5f, 0.25, 0.75));  // beyond atol, within rtol
  CHECK(passes(1.0f, 1.5f, 0.75, 0.25));  // within atol, beyond rtol
  CHECK_FALSE(passes(1.0f, 1.5f, 0.25, 0.25));
  CHECK(passes(1.0f, 1.5f, 0.5, 0.0));  // equal to atol is not beyond it
  CHECK(passes(1.0f, 1.5f, 0.0, 0.5));  // equal to rtol * |expected| is not beyond it
  CHECK_FALSE(passes(1.0f, 1.5f, 0.0, 0.0));
  // The relative bound scales with |expected|, not |actual|.
  CHECK_FALSE(passes(1.0f, 3.0f, 0.0, 1.5));
  CHECK(passes(3.0f, 1.0f, 0.0, 1.5));
  // Negative values use the magnitude.
  CHECK(passes(-1000.0f, -1000.5f, 1e-6, 1e-3));
  CHECK_FALSE(passes(-1000.0f, -1002.0f, 1e-6, 1e-3));
  // Near zero only atol helps.
  CHECK(passes(0.0f, 1e-7f, 1e-6, 1e-5));
  CHECK_FALSE(passes(0.0f, 1e-5f, 1e-6, 1e-5));
  CHECK(passes(0.0f, -0.0f, 0.0, 0.0));  // in steps, -0 equals +0
  // The defaults: atol 1e-6, rtol 1e-5.
  CHECK(Tolerance{}.atol == 1e-6);
  CHECK(Tolerance{}.rtol == 1e-5);
  CHECK(compare(one_step({0.5f}), one_step({0.5f + 4e-6f})).pass);
  CHECK_FALSE(compare(one_step({0.5f}), one_step({0.5f + 8e-6f})).pass);
}

TEST_CASE("check compare: NaN and infinities", "[check]") {
  const float nan = std::nanf("");
  CHECK_FALSE(passes(nan, 1.0f, 1e30, 1e30));  // NaN vs number fails whatever the tolerance
  CHECK_FALSE(passes(1.0f, nan, 1e30, 1e30));
  CHECK(passes(nan, nan, 0.0, 0.0));
  CHECK(passes(nan, -nan, 0.0, 0.0));
  CHECK(passes(INFINITY, INFINITY, 0.0, 0.0));
  CHECK_FALSE(passes(INFINITY, -INFINITY, 1e30, 1e30));
  CHECK_FALSE(passes(INFINITY, 3e38f, 1e30, 1e30));
  CHECK_FALSE(passes(3e38f, INFINITY, 1e30, 1e30));
  const CheckReport report = compare(one_step({1.0f, 2.0f, 3.0f}), one_step({1.0f, nan, 3.0f}));
  const TensorResult& result = result_for(report, "steps", "v");
  REQUIRE(result.first.has_value());
  CHECK(result.first->index == "[s=1]");
  CHECK(result.first->expected == "2");
  CHECK(result.first->actual == "NaN");
}

TEST_CASE("check compare: a step missing from the candidate is not checked and not a failure", "[check]") {
  Trace candidate = golden_trace();
  for (auto it = candidate.steps.begin(); it != candidate.steps.end(); ++it) {
    if (it->name == "gate_2") {
      candidate.steps.erase(it);
      break;
    }
  }
  REQUIRE(candidate.find_step("gate_2") == nullptr);
  const CheckReport report = compare(golden_trace(), candidate);
  CHECK(report.pass);
  CHECK(report.first_divergent_step.empty());
  CHECK(result_for(report, "steps", "gate_2").status == TensorStatus::kNotChecked);
  CHECK(moeref::status_name(TensorStatus::kNotChecked) == std::string("not_checked"));
  CHECK_THAT(report.to_text(), Contains("PASS") && Contains("1 not checked") &&
                                   Contains("not checked (absent from the candidate): steps.gate_2"));
  const nlohmann::json json = report.to_json();
  CHECK(json["not_checked"] == 1);
  CHECK(json["pass"] == true);
}

TEST_CASE("check compare: an extra step in the candidate is a structure failure", "[check]") {
  Trace candidate = golden_trace();
  candidate.add_step("my_extra_step", moeref::Tensor::scalar(1.0f));
  const CheckReport report = compare(golden_trace(), candidate);
  CHECK_FALSE(report.pass);
  const TensorResult& result = result_for(report, "steps", "my_extra_step");
  CHECK(result.status == TensorStatus::kExtra);
  CHECK_THAT(report.to_text(), Contains("structure problems") && Contains("steps.my_extra_step"));
  // An extra input too.
  Trace with_input = golden_trace();
  with_input.inputs.push_back({"my_extra_input", moeref::Tensor::scalar(1.0f)});
  const CheckReport input_report = compare(golden_trace(), with_input);
  CHECK_FALSE(input_report.pass);
  CHECK(result_for(input_report, "inputs", "my_extra_input").status == TensorStatus::kExtra);
}

TEST_CASE("check compare: a wrong shape or dims or dtype is a structure failure", "[check]") {
  SECTION("shape") {
    Trace candidate = golden_trace();
    moeref::Tensor& gate_1 = mutable_step(candidate, "gate_1");  // [G, S] = [2, 4]
    gate_1.shape = {4, 2};
    const CheckReport report = compare(golden_trace(), candidate);
    CHECK_FALSE(report.pass);
    const TensorResult& result = result_for(report, "steps", "gate_1");
    CHECK(result.status == TensorStatus::kStructure);
    CHECK_THAT(result.message, Contains("[G=2, S=4]") && Contains("[G=4, S=2]"));
    CHECK(report.first_divergent_step == "gate_1");
    CHECK_THAT(report.to_text(), Contains("structure problems") && Contains("steps.gate_1"));
  }
  SECTION("fewer elements") {
    Trace candidate = golden_trace();
    moeref::Tensor& gate_1 = mutable_step(candidate, "gate_1");
    gate_1.shape = {2, 3};
    gate_1.f32.resize(6);
    const CheckReport report = compare(golden_trace(), candidate);
    CHECK(result_for(report, "steps", "gate_1").status == TensorStatus::kStructure);
  }
  SECTION("dims") {
    Trace candidate = golden_trace();
    mutable_step(candidate, "gate_1").dims = {"B", "L"};
    const CheckReport report = compare(golden_trace(), candidate);
    CHECK(result_for(report, "steps", "gate_1").status == TensorStatus::kStructure);
  }
  SECTION("dtype") {
    Trace candidate = golden_trace();
    moeref::Tensor& index_1 = mutable_step(candidate, "index_1");
    moeref::Tensor as_float = moeref::Tensor::float32(index_1.dims, index_1.shape);
    for (size_t i = 0; i < index_1.i32.size(); ++i) as_float.f32[i] = static_cast<float>(index_1.i32[i]);
    index_1 = as_float;
    const CheckReport report = compare(golden_trace(), candidate);
    const TensorResult& result = result_for(report, "steps", "index_1");
    CHECK(result.status == TensorStatus::kStructure);
    CHECK_THAT(result.message, Contains("int32") && Contains("float32"));
  }
}

TEST_CASE("check compare: the first divergent step is the earliest in golden order and later ones are downstream",
          "[check]") {
  Trace candidate = golden_trace();
  mutable_step(candidate, "combine_tensor").f32[0] += 0.5f;
  mutable_step(candidate, "gate_2").f32[3] += 0.5f;
  mutable_step(candidate, "raw_gates").f32[5] += 0.5f;
  // The candidate lists its steps in another order: the golden's order decides.
  std::swap(candidate.steps.front(), candidate.steps.back());
  const CheckReport report = compare(golden_trace(), candidate);
  CHECK_FALSE(report.pass);
  CHECK(report.first_divergent_step == "raw_gates");
  CHECK_FALSE(result_for(report, "steps", "raw_gates").downstream);
  CHECK(result_for(report, "steps", "gate_2").downstream);
  CHECK(result_for(report, "steps", "combine_tensor").downstream);
  CHECK_FALSE(result_for(report, "steps", "logits").downstream);
  CHECK(result_for(report, "steps", "logits").status == TensorStatus::kMatch);
  CHECK_THAT(report.to_text(), Contains("steps.gate_2") && Contains("[downstream of raw_gates]") &&
                                   Contains("first divergent step: raw_gates"));
  const nlohmann::json json = report.to_json();
  CHECK(json["first_divergent_step"] == "raw_gates");
}

TEST_CASE("check compare: a wrong loss constant is caught", "[check]") {
  // A candidate that scales the gating loss by 0.02 instead of loss_coef = 0.01.
  Trace candidate = golden_trace();
  float gating_loss = 0.0f;
  for (const auto& [name, value] : candidate.losses) {
    if (name == "gating_loss") gating_loss = value;
  }
  REQUIRE(gating_loss > 0.0f);
  bool changed = false;
  for (auto& [name, value] : candidate.losses) {
    if (name == "loss") {
      value = gating_loss * 0.02f;
      changed = true;
    }
  }
  REQUIRE(changed);
  const CheckReport report = compare(golden_trace(), candidate);
  CHECK_FALSE(report.pass);
  CHECK(result_for(report, "losses", "loss").status == TensorStatus::kMismatch);
  CHECK(result_for(report, "losses", "gating_loss").status == TensorStatus::kMatch);
  CHECK_THAT(report.to_text(), Contains("losses.loss"));
  // A per-tensor tolerance on the loss can excuse it, and only it.
  CheckOptions options;
  options.per_tensor["loss"] = {1.0, 0.0};
  CHECK(compare(golden_trace(), candidate, options).pass);
}

TEST_CASE("check compare: the capacity and the inputs are compared exactly", "[check]") {
  Trace candidate = golden_trace();
  candidate.capacity["expert_capacity"] = candidate.capacity["expert_capacity"].get<int64_t>() + 1;
  CheckReport report = compare(golden_trace(), candidate);
  CHECK_FALSE(report.pass);
  CHECK(result_for(report, "capacity", "expert_capacity").status == TensorStatus::kMismatch);

  // One ulp in an input fails although it is far inside the float tolerance:
  // a replay must start from the same numbers.
  candidate = golden_trace();
  REQUIRE(!candidate.inputs.empty());
  float& first_x = candidate.inputs[0].tensor.f32[0];
  first_x = std::nextafter(first_x, 2.0f);
  CheckOptions generous;
  generous.float_tolerance = {1.0, 1.0};
  report = compare(golden_trace(), candidate, generous);
  CHECK_FALSE(report.pass);
  CHECK(result_for(report, "inputs", candidate.inputs[0].name).status == TensorStatus::kMismatch);
  CHECK(report.first_divergent_step.empty());  // inputs are not steps
}

TEST_CASE("check compare: per-tensor tolerances apply to their tensor only", "[check]") {
  Trace candidate = golden_trace();
  mutable_step(candidate, "raw_gates").f32[0] += 1e-3f;
  mutable_step(candidate, "gate_1").f32[0] += 1e-3f;
  CheckOptions options;
  options.per_tensor["raw_gates"] = {1e-2, 0.0};
  CheckReport report = compare(golden_trace(), candidate, options);
  CHECK(result_for(report, "steps", "raw_gates").status == TensorStatus::kMatch);
  CHECK(result_for(report, "steps", "gate_1").status == TensorStatus::kMismatch);
  CHECK(report.first_divergent_step == "gate_1");
  // A per-tensor tolerance replaces the global one, also when it is stricter.
  options.float_tolerance = {1e-2, 0.0};
  options.per_tensor["raw_gates"] = {0.0, 0.0};
  report = compare(golden_trace(), candidate, options);
  CHECK(result_for(report, "steps", "raw_gates").status == TensorStatus::kMismatch);
  CHECK(result_for(report, "steps", "gate_1").status == TensorStatus::kMatch);
}

TEST_CASE("check compare: the JSON report has pass and first_divergent_step and per-tensor entries", "[check]") {
  Trace candidate = golden_trace();
  mutable_step(candidate, "index_1").i32[1] = (mutable_step(candidate, "index_1").i32[1] + 1) % 3;
  const nlohmann::json json = compare(golden_trace(), candidate).to_json();
  CHECK(json["format"] == "moeref-check-report");
  CHECK(json["pass"] == false);
  CHECK(json["first_divergent_step"] == "index_1");
  REQUIRE(json["tensors"].is_array());
  bool found = false;
  for (const nlohmann::json& item : json["tensors"]) {
    CHECK(item.contains("section"));
    CHECK(item.contains("status"));
    if (item["name"] == "index_1") {
      found = true;
      CHECK(item["section"] == "steps");
      CHECK(item["status"] == "mismatch");
      CHECK(item["mismatches"] == 1);
      CHECK(item["first"]["index"] == "[g=0, s=1]");
      CHECK(item["downstream"] == false);
    }
  }
  CHECK(found);
  CHECK(json["failing"].get<int64_t>() >= 1);
}

TEST_CASE("check compare: a candidate of another variant is refused as bad input", "[check]") {
  Trace candidate = golden_trace();
  candidate.config["variant"] = "lingvo_top2";
  REQUIRE_THROWS_AS(compare(golden_trace(), candidate), moeref::InputError);
  REQUIRE_THROWS_WITH(compare(golden_trace(), candidate),
                      Contains("config.variant") && Contains("\"lingvo_top2\"") && Contains("\"mtf_top2\""));
}

// A variant id that is not a string is bad input (exit 2), never a crash.
TEST_CASE("check compare: a non-string candidate variant is refused as bad input", "[check]") {
  Trace candidate = golden_trace();
  candidate.config["variant"] = 5;
  REQUIRE_THROWS_AS(compare(golden_trace(), candidate), moeref::InputError);
}
