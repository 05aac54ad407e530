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
