// flaxformer_experts_choose: ExpertsChooseMaskedRouter in MoeLayer (google/flaxformer,
// flaxformer/architectures/moe/routing.py at 399ea3a). Hand-derived cases.
//
// Source test numbers: routing_test.py's test_routers_ignore_padding runs this router on
// jax.random inputs in bfloat16, which moeref cannot regenerate; the expected aux loss there,
// 0.0, is the router's constant and is checked below.
#include <cmath>
#include <vector>

#include "moeref/ops/bfloat16.hpp"
#include "test_support.hpp"

using moeref::testing::loss;
using moeref::testing::run_json;
using moeref::testing::step;
using moeref::testing::tensor_json;

namespace {

nlohmann::json gating(int64_t S, int64_t E, const std::vector<float>& logits, nlohmann::json hparams) {
  return {{"variant", "flaxformer_experts_choose"},
          {"scope", "gating"},
          {"train", false},
          {"dims", {{"G", 1}, {"S", S}, {"E", E}}},
          {"hparams", std::move(hparams)},
          {"inputs", {{"router_logits", tensor_json({"G", "S", "E"}, {1, S, E}, logits)}}}};
}

}  // namespace

TEST_CASE("flaxformer experts choose: each expert takes its top C tokens, ties in token order",
          "[flaxformer_experts_choose]") {
  // S = 8, E = 2, C = max(round(0.5 * 8 / 2), 1) = 2. Rows: [0,0] [0,1] [1,0] [.5,.5] [0,0]
  // [2,-1] [0,0] [0,0]. Expert 0's probabilities: .5 .27 .73 .5 .5 .95 .5 .5 -> tokens 5, 2.
  // Expert 1's: .5 .73 .27 .5 .5 .05 .5 .5 -> token 1, then the first of five 0.5s: token 0.
  const std::vector<float> logits = {0, 0, 0, 1, 1, 0, 0.5f, 0.5f, 0, 0, 2, -1, 0, 0, 0, 0};
  const moeref::Trace trace =
      run_json(gating(8, 2, logits, {{"eval_capacity_factor", 0.5}, {"min_expert_capacity", 1}}));
  CHECK(step(trace, "expert_index").i32 == std::vector<int32_t>{5, 2, 1, 0});
  // dispatch_mask [G, S, E, C]: (token 5, expert 0, rank 0), (2, 0, 1), (1, 1, 0), (0, 1, 1).
  const moeref::Tensor& dispatch = step(trace, "dispatch_mask");
  auto at = [](int s, int e, int c) { return static_cast<size_t>((s * 2 + e) * 2 + c); };
  int32_t total = 0;
  for (int32_t v : dispatch.i32) total += v;
  CHECK(total == 4);
  CHECK(dispatch.i32[at(5, 0, 0)] == 1);
  CHECK(dispatch.i32[at(2, 0, 1)] == 1);
  CHECK(dispatch.i32[at(1, 1, 0)] == 1);
  CHECK(dispatch.i32[at(0, 1, 1)] == 1);
  // The default dtype is bfloat16: the combine weights are the probabilities rounded to
  // bfloat16: 0.5 stays, 0.7310586 becomes 0.73046875 (0x3f3b), 0.95257413 becomes 0.953125.
  const moeref::Tensor& combine = step(trace, "combine_array_dtype");
  CHECK(combine.f32[at(0, 1, 1)] == 0.5f);
  CHECK(combine.f32[at(2, 0, 1)] == 0.73046875f);
  CHECK(combine.f32[at(5, 0, 0)] == 0.953125f);
  CHECK(step(trace, "combine_array").f32[at(5, 0, 0)] == step(trace, "router_probs").f32[5 * 2 + 0]);
  // No load-balancing loss; expert_usage is the constant 1.0; tokens 3, 4, 6, 7 are left behind.
  CHECK(loss(trace, "auxiliary_loss") == 0.0f);
  CHECK(step(trace, "expert_usage").f32[0] == 1.0f);
  CHECK(step(trace, "fraction_tokens_left_behind").f32[0] == 0.5f);
  // router_confidence in bfloat16: bf16(f32 sum of the bf16 weights) / 4, rounded to bfloat16.
  const float sum = moeref::ops::round_to_bfloat16(0.953125f + 0.73046875f + 0.73046875f + 0.5f);
  CHECK(step(trace, "router_confidence").f32[0] == moeref::ops::round_to_bfloat16(sum / 4.0f));
}

TEST_CASE("flaxformer experts choose: C > S is refused, float32 keeps the raw probabilities",
          "[flaxformer_experts_choose]") {
  const std::vector<float> logits = {0, 1, 1, 0};
  // S = 2, min_expert_capacity 4 (the default): C = 4 > S.
  CHECK_THROWS_WITH(run_json(gating(2, 2, logits, nlohmann::json::object())), Catch::Contains("dims.C"));
  const moeref::Trace trace =
      run_json(gating(2, 2, logits, {{"dtype", "float32"}, {"min_expert_capacity", 1}, {"eval_capacity_factor", 1.0}}));
  CHECK(trace.find_step("combine_array_dtype") == nullptr);
  // C = round(1.0 * 2 / 2) = 1: expert 0 takes token 1 (logit 1), expert 1 takes token 0.
  CHECK(step(trace, "expert_index").i32 == std::vector<int32_t>{1, 0});
  CHECK(step(trace, "combine_array").f32[(1 * 2 + 0) * 1] == step(trace, "router_probs").f32[2]);
}

TEST_CASE("bfloat16 rounding: nearest, ties to even, NaN and overflow", "[flaxformer_experts_choose][ops]") {
  using moeref::ops::round_to_bfloat16;
  CHECK(round_to_bfloat16(1.0f) == 1.0f);
  // 1 + 2^-8 is halfway between 1 and 1 + 2^-7: ties to even (1).
  CHECK(round_to_bfloat16(1.0f + 1.0f / 256.0f) == 1.0f);
  // 1 + 3 * 2^-8 is halfway between 1 + 2^-7 and 1 + 2^-6: ties to even (1 + 2^-6).
  CHECK(round_to_bfloat16(1.0f + 3.0f / 256.0f) == 1.0f + 1.0f / 64.0f);
  CHECK(round_to_bfloat16(1.0f + 1.0f / 256.0f + 1.0f / 65536.0f) == 1.0f + 1.0f / 128.0f);
  CHECK(round_to_bfloat16(-0.7310586f) == -0.73046875f);
  CHECK(std::isnan(round_to_bfloat16(std::nanf(""))));
  CHECK(std::isinf(round_to_bfloat16(3.4e38f)));  // rounds past the largest bfloat16 (3.39e38)
}
