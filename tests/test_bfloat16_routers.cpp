// bfloat16 routers (spec/bfloat16.md): flaxformer's RouterWeights.dtype and praxis's
// fprop_dtype. Hand-derived values, the recipe restated with round_to_bfloat16, and the
// structure of the numbers flaxformer's routing_test.py asserts (google/flaxformer 399ea3a).
#include <cmath>
#include <vector>

#include "moeref/error.hpp"
#include "moeref/ops/bfloat16.hpp"
#include "moeref/ops/torch_softmax.hpp"
#include "test_support.hpp"

using moeref::ops::round_to_bfloat16;
using moeref::testing::loss;
using moeref::testing::run_json;
using moeref::testing::step;
using moeref::testing::tensor_json;

namespace {

// True when value * 2^bits is an integer: value lies on the grid of a sum of bfloat16 numbers
// no smaller than 2^(8 - bits) (their spacing is at least 2^-bits).
bool on_grid(double value, int bits) {
  const double scaled = std::ldexp(value, bits);
  return std::fabs(scaled - std::round(scaled)) < 1e-3;
}

}  // namespace

TEST_CASE("bfloat16 softmax: every op rounds to bfloat16", "[bfloat16][flaxformer_tokens_choose]") {
  // Logits [1, 0]: d = [0, -1]; u = [1, bf16(exp(-1) = 0.36787944)] = [1, 0.3671875] (spacing
  // 2^-9 in [0.25, 0.5)); z = bf16(1.3671875) = 1.3671875 (175 / 128 has 8 significant bits);
  // p0 = bf16(0.7314286) = 0.73046875 (187 / 256), p1 = bf16(0.2685714) = 0.26953125 (138 / 512,
  // 0.00096 away against 0.00099 for 0.267578125).
  const float logits[2] = {1.0f, 0.0f};
  float probs[2];
  moeref::ops::jax_softmax_bfloat16(logits, probs, 1, 2);
  CHECK(probs[0] == 0.73046875f);
  CHECK(probs[1] == 0.26953125f);
  // Equal logits give exactly 1 / E.
  const float flat[4] = {0.5f, 0.5f, 0.5f, 0.5f};
  float quarter[4];
  moeref::ops::jax_softmax_bfloat16(flat, quarter, 1, 4);
  for (float p : quarter) CHECK(p == 0.25f);
  // logsumexp of [1, 0]: s = bf16(1 + 0.3671875) = 1.3671875, log s = 0.31272 -> 0.3125,
  // + 1 -> bf16(1.3125) = 1.3125.
  float lse = 0.0f;
  moeref::ops::jax_logsumexp_bfloat16(logits, &lse, 1, 2);
  CHECK(lse == 1.3125f);
}

TEST_CASE("flaxformer RouterWeights.dtype bfloat16: inputs, kernel, logits, probs on the bfloat16 grid",
          "[bfloat16][flaxformer_tokens_choose]") {
  // G = 1, S = 2, E = 2, M = 2, given inputs and kernel.
  const std::vector<float> x = {0.1f, 0.3f, -0.7f, 0.2f};
  const std::vector<float> w = {0.2f, -0.45f, 0.7f, 0.05f};  // [M, E]
  nlohmann::json config = {
      {"variant", "flaxformer_tokens_choose"},
      {"scope", "gating"},
      {"train", false},
      {"dims", {{"G", 1}, {"S", 2}, {"E", 2}, {"M", 2}}},
      {"hparams", {{"router_weights_dtype", "bfloat16"}, {"num_selected_experts", 1}}},
      {"inputs",
       {{"x", tensor_json({"G", "S", "M"}, {1, 2, 2}, x)}, {"router_weights", tensor_json({"M", "E"}, {2, 2}, w)}}}};
  const moeref::Trace trace = run_json(config);
  // logits[s, e] = bf16(f32(bf16(x[s,0]) * bf16(w[0,e]) + bf16(x[s,1]) * bf16(w[1,e]))), exact products.
  const moeref::Tensor& logits = step(trace, "router_logits");
  for (int s = 0; s < 2; ++s) {
    for (int e = 0; e < 2; ++e) {
      const double sum = static_cast<double>(round_to_bfloat16(x[static_cast<size_t>(s * 2)])) *
                             round_to_bfloat16(w[static_cast<size_t>(e)]) +
                         static_cast<double>(round_to_bfloat16(x[static_cast<size_t>(s * 2 + 1)])) *
                             round_to_bfloat16(w[static_cast<size_t>(2 + e)]);
      CHECK(logits.f32[static_cast<size_t>(s * 2 + e)] == round_to_bfloat16(static_cast<float>(sum)));
    }
  }
  for (float p : step(trace, "router_probs").f32) CHECK(p == round_to_bfloat16(p));
  // z-loss terms are bfloat16 squares: G*S * router_z_loss sits on their grid.
  double squares = 0.0;
  for (float v : step(trace, "log_z").f32) squares += static_cast<double>(round_to_bfloat16(v * v));
  CHECK(loss(trace, "router_z_loss") == static_cast<float>(squares) / 2.0f);
}

TEST_CASE("routing_test.py's z-losses are sums of bfloat16 squares, except where padding makes them float32",
          "[bfloat16][flaxformer_tokens_choose]") {
  // flaxformer routing_test.py (RouterWeights' default dtype, bfloat16): router_z_loss * G * T.
  CHECK(on_grid(1.8994141 * 8, 7));   // the scatter router tests, G = 2, T = 4: 1945 * 2^-7
  CHECK(on_grid(0.47721353 * 6, 8));  // the one-expert mask router tests, G = 2, T = 3
  CHECK(on_grid(1.2714844 * 8, 6));   // test_tokens_choose_multiple_experts_mask_router
  CHECK(on_grid(0.5041504 * 8, 9));   // test_experts_choose_mask_router
  // test_routers_ignore_padding: router_logits *= padding_mask (float32) promotes the logits to
  // float32, and the terms are float32 squares: no coarse grid.
  CHECK_FALSE(on_grid(0.48541257 * 12, 12));
  // moeref, the same shapes as the scatter tests (G = 2, T = 4, E = 4), bfloat16 router:
  // log_z near log 4 = 1.386, squares near 1.92 on the 2^-7 grid.
  const moeref::Trace trace = run_json({{"variant", "flaxformer_tokens_choose"},
                                        {"scope", "gating"},
                                        {"seed", 52},
                                        {"dims", {{"G", 2}, {"S", 4}, {"E", 4}, {"M", 4}}},
                                        {"hparams", {{"router_weights_dtype", "bfloat16"}}}});
  CHECK(on_grid(static_cast<double>(loss(trace, "router_z_loss")) * 8, 7));
  // With padding: a padding token's logits become float32 zeros and its log_z is f32(log 2),
  // not bf16(log 2) = 0.69140625.
  const std::vector<float> x = {0.5f, -0.25f, 0.0f, 0.0f, 1.0f, 0.75f, -0.5f, 0.5f};
  const moeref::Trace padded =
      run_json({{"variant", "flaxformer_tokens_choose"},
                {"scope", "gating"},
                {"dims", {{"G", 1}, {"S", 4}, {"E", 2}, {"M", 2}}},
                {"hparams",
                 {{"router_weights_dtype", "bfloat16"}, {"ignore_padding_tokens", true}, {"num_selected_experts", 1}}},
                {"inputs", {{"x", tensor_json({"G", "S", "M"}, {1, 4, 2}, x)}}}});
  CHECK(step(padded, "log_z").f32[1] == static_cast<float>(std::log(2.0)));
  CHECK(step(padded, "log_z").f32[1] != 0.69140625f);
}

TEST_CASE("praxis fprop_dtype bfloat16: logits in bfloat16, gating in float32, combine converted",
          "[bfloat16][praxis_top2]") {
  nlohmann::json config = {{"variant", "praxis_top2"},
                           {"seed", 9},
                           {"dims", {{"B", 2}, {"L", 4}, {"E", 3}, {"M", 4}, {"H", 5}}},
                           {"hparams", {{"num_groups", 2}, {"fprop_dtype", "bfloat16"}}}};
  const moeref::Trace trace = run_json(config);
  for (float v : step(trace, "logits").f32) CHECK(v == round_to_bfloat16(v));
  // raw_gates: the float32 jax softmax of the (bfloat16-valued) logits: not on the bfloat16 grid.
  bool some_off_grid = false;
  for (float v : step(trace, "raw_gates").f32) some_off_grid = some_off_grid || v != round_to_bfloat16(v);
  CHECK(some_off_grid);
  const moeref::Tensor& combine = step(trace, "combine_tensor");
  const moeref::Tensor& converted = step(trace, "combine_tensor_fprop_dtype");
  REQUIRE(converted.f32.size() == combine.f32.size());
  for (size_t i = 0; i < combine.f32.size(); ++i) CHECK(converted.f32[i] == round_to_bfloat16(combine.f32[i]));
  // The default keeps float32: no bfloat16 steps.
  config["hparams"].erase("fprop_dtype");
  const moeref::Trace float32 = run_json(config);
  CHECK(float32.find_step("combine_tensor_fprop_dtype") == nullptr);
  CHECK(float32.find_step("inputs_bfloat16") == nullptr);
  // Fractional paddings are refused in bfloat16.
  config["hparams"]["fprop_dtype"] = "bfloat16";
  config["inputs"]["paddings"] = tensor_json({"B", "L"}, {2, 4}, {0, 0, 0, 0.5f, 0, 0, 1, 1});
  CHECK_THROWS_WITH(run_json(config), Catch::Contains("inputs.paddings") && Catch::Contains("bfloat16"));
}
