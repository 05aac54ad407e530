// More candidate shapes a backend author produces: a dropped token, a huge
// declared shape, stated tolerances and precision, an off-by-one capacity.
#include "moeref/check.hpp"
#include "moeref/error.hpp"
#include "test_support.hpp"

using moeref::CheckOptions;
using moeref::CheckReport;
using moeref::Trace;
using moeref::testing::mutable_step;

namespace {

// G=1, S=4, E=2, C=2, policy all: token 3's first choice (expert 0) is the third for
// expert 0 and overflows; logits make every decision clear.
Trace overflow_golden() {
  return moeref::testing::run_json(
      {{"variant", "mtf_top2"},
       {"scope", "gating"},
       {"dims", {{"G", 1}, {"S", 4}, {"E", 2}}},
       {"hparams", {{"second_policy_train", "all"}, {"expert_capacity", 2}}},
       {"inputs", {{"logits", moeref::testing::tensor_json({"G", "S", "E"}, {1, 4, 2}, {3, 0, 0, 3, 3, 0, 3, 0})}}}});
}

}  // namespace

TEST_CASE("candidates: a token kept where the reference drops it is caught at mask_1_capacity", "[check][candidate]") {
  const Trace golden = overflow_golden();
  // Tokens 0, 2 and 3 pick expert 0 first; token 3 is third in line with C = 2.
  REQUIRE(moeref::testing::step(golden, "mask_1_flat").i32 == std::vector<int32_t>{1, 1, 1, 0});
  Trace candidate = golden;
  mutable_step(candidate, "mask_1_capacity").i32[3 * 2 + 0] = 1;  // a backend that ignores the capacity
  mutable_step(candidate, "mask_1_flat").i32[3] = 1;
  const CheckReport report = moeref::check_traces(golden, candidate, CheckOptions{});
  INFO(report.to_text());
  CHECK_FALSE(report.pass);
  CHECK(report.first_divergent_step == "mask_1_capacity");
  CHECK_THAT(report.to_text(), Catch::Matchers::Contains("[g=0, s=3, e=0]"));
}

TEST_CASE("candidates: an off-by-one capacity is an exact mismatch", "[check][candidate]") {
  const Trace golden = overflow_golden();
  Trace candidate = golden;
  candidate.capacity["expert_capacity"] = 3;
  const CheckReport report = moeref::check_traces(golden, candidate, CheckOptions{});
  CHECK_FALSE(report.pass);
  bool named = false;
  for (const moeref::TensorResult& result : report.results) {
    named = named || (result.section == "capacity" && result.status == moeref::TensorStatus::kMismatch);
  }
  CHECK(named);
}

TEST_CASE("candidates: a huge declared shape is bad input and allocates nothing", "[check][candidate]") {
  const std::string text = R"({"format":"moeref-trace","format_version":1,"config":{"variant":"mtf_top2"},
    "steps":[{"name":"raw_gates","dims":["G","S","E"],"shape":[100000,100000,100000],"dtype":"float32","data":[]}]})";
  const moeref::ParsedDocument parsed = moeref::parse_json_document(text, "candidate");
  CHECK_THROWS_WITH(moeref::trace_from_json(parsed.doc, "candidate", &parsed.arrays),
                    Catch::Matchers::Contains("steps.raw_gates.shape") && Catch::Matchers::Contains("2^31"));
}

TEST_CASE("candidates: stated tolerances and bfloat16 precision widen only what they name", "[check][candidate]") {
  const Trace golden = overflow_golden();
  Trace candidate = golden;
  mutable_step(candidate, "raw_gates").f32[0] *= 1.004f;  // about half a bfloat16 ulp
  CHECK_FALSE(moeref::check_traces(golden, candidate, CheckOptions{}).pass);

  Trace stated = candidate;
  stated.check = {{"tolerances", {{"raw_gates", {{"atol", 0.0}, {"rtol", 1e-2}}}}}};
  CHECK(moeref::compare_traces(golden, stated, CheckOptions{}).first_divergent_step != "raw_gates");

  Trace bf16 = candidate;
  bf16.check = {{"precision", "bfloat16"}};
  CHECK(moeref::compare_traces(golden, bf16, CheckOptions{}).first_divergent_step != "raw_gates");
  CHECK(moeref::default_tolerance("bfloat16", "raw_gates").rtol >
        moeref::default_tolerance("float32", "raw_gates").rtol);
  CHECK(moeref::default_tolerance("float32", "outputs").rtol > moeref::default_tolerance("float32", "raw_gates").rtol);

  Trace unknown = candidate;
  unknown.check = {{"precision", "float8"}};
  CHECK_THROWS_AS(moeref::compare_traces(golden, unknown, CheckOptions{}), moeref::InputError);
}
