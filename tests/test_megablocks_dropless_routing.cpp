// megablocks_dropless: hand-derived cases for MegaBlocks' LearnedRouter and dropless dMoE
// (databricks/megablocks at 78eea65): nothing is ever dropped, the expert-weight p-norm, the router
// jitter, uniform expert assignment, the load-balancing loss (k in the denominator) and the z-loss.
//
// MegaBlocks' tests (tests/layers/dmoe_test.py) run on GPUs with torch.randn inputs and compare
// dMoE with other layers; their test_dmoe_forward_vs_baseline property (one expert, top-1: dMoE is
// the dense MLP) becomes the first case below. Every value is derived by hand in the comments.
#include <cmath>
#include <vector>

#include "torch_test_helpers.hpp"

using namespace moeref::testing;

namespace {

// megablocks_dropless in scope "gating" on supplied logits [1, S, E], training.
nlohmann::json megablocks_gating(int64_t S, int64_t E, const std::vector<float>& logits, nlohmann::json hparams) {
  nlohmann::json config = gating_on_logits("megablocks_dropless", S, E, logits, std::move(hparams));
  config["train"] = true;
  return config;
}

}  // namespace

TEST_CASE("megablocks_dropless: one expert, top-1 is the dense MLP (test_dmoe_forward_vs_baseline)",
          "[megablocks_dropless][layer]") {
  // E = 1: the softmax is 1, so out = relu(x . w1) . w2. x = [1, -2], w1 = [[1, 2], [3, -1]] (M x H):
  // x . w1 = [1 - 6, 2 + 2] = [-5, 4] -> relu [0, 4]; w2 = [[1, 0], [0.5, 2]]: [0 + 2, 0 + 8] = [2, 8].
  const nlohmann::json config = {{"variant", "megablocks_dropless"},
                                 {"train", false},
                                 {"dims", {{"G", 1}, {"S", 1}, {"E", 1}, {"M", 2}, {"H", 2}}},
                                 {"hparams", {{"activation_fn", "relu"}}},
                                 {"inputs",
                                  {{"x", tensor_json({"G", "S", "M"}, {1, 1, 2}, {1, -2})},
                                   {"wi", tensor_json({"E", "M", "H"}, {1, 2, 2}, {1, 2, 3, -1})},
                                   {"wo", tensor_json({"E", "H", "N"}, {1, 2, 2}, {1, 0, 0.5f, 2})}}}};
  const moeref::Trace trace = run_json(config);
  CHECK(step(trace, "routing_weight").f32 == std::vector<float>{1});
  CHECK(step(trace, "outputs").f32 == std::vector<float>{2, 8});
}

TEST_CASE("megablocks_dropless: nothing is dropped, bins fill token-major, ranks interleaved",
          "[megablocks_dropless][dropless]") {
  // Three tokens all ranking e0 then e1 (k = 2): every choice gets a row; e0's bin holds tokens 0, 1,
  // 2 at rows 0, 1, 2, and so does e1's. tokens_per_expert = [3, 3]: the capacity record is 3.
  const moeref::Trace trace = run_json(megablocks_gating(3, 2, {1, 0, 1, 0, 1, 0}, {{"moe_top_k", 2}}));
  CHECK(step(trace, "tokens_per_expert").i32 == std::vector<int32_t>{3, 3});
  CHECK(step(trace, "routing_slot").i32 == std::vector<int32_t>{0, 0, 1, 1, 2, 2});
  CHECK(trace.capacity["expert_capacity"] == 3);
}

TEST_CASE("megablocks_dropless: expert weights are raw probabilities unless a p-norm is set",
          "[megablocks_dropless][weights]") {
  // One token, E = 3, logits [ln 3, ln 1, ln 0.5]... scores p = [3, 1, 0.5] / 4.5 = [0.6666667,
  // 0.2222222, 0.1111111]; k = 2 takes 0.6666667 and 0.2222222 (sum 0.8888889).
  const std::vector<float> logits = {static_cast<float>(std::log(3.0)), 0.0f, static_cast<float>(std::log(0.5))};
  const moeref::Trace raw = run_json(megablocks_gating(1, 3, logits, {{"moe_top_k", 2}}));
  CHECK(step(raw, "routing_weight").f32[0] == Approx(0.6666667f).epsilon(1e-6));
  CHECK(step(raw, "routing_weight").f32[1] == Approx(0.2222222f).epsilon(1e-6));
  // p = 1: divided by the sum: 0.75, 0.25.
  const moeref::Trace l1 =
      run_json(megablocks_gating(1, 3, logits, {{"moe_top_k", 2}, {"moe_normalize_expert_weights", 1.0}}));
  CHECK(step(l1, "routing_weight").f32[0] == Approx(0.75f).epsilon(1e-6));
  CHECK(step(l1, "routing_weight").f32[1] == Approx(0.25f).epsilon(1e-6));
  // p = 2: divided by sqrt(0.4444444 + 0.0493827) = 0.7027284: 0.9486833, 0.3162278 (3 : 1 on the unit circle).
  const moeref::Trace l2 =
      run_json(megablocks_gating(1, 3, logits, {{"moe_top_k", 2}, {"moe_normalize_expert_weights", 2.0}}));
  CHECK(step(l2, "routing_weight").f32[0] == Approx(0.9486833f).epsilon(1e-6));
  CHECK(step(l2, "routing_weight").f32[1] == Approx(0.3162278f).epsilon(1e-6));
}

TEST_CASE("megablocks_dropless: the load-balancing loss counts all k choices and divides by k",
          "[megablocks_dropless][loss]") {
  // Two tokens [1, 0], k = 1: scores [0.7310586, 0.2689414] each; tokens_per_expert [2, 0];
  // scale = E * w / (num_layers * tokens * k) = 2 * 0.1 / (1 * 2 * 1) = 0.1; dot = 2 * 0.7310586.
  const moeref::Trace top1 = run_json(megablocks_gating(2, 2, {1, 0, 1, 0}, nlohmann::json::object()));
  CHECK(loss(top1, "load_balancing_loss") == Approx(0.14621172f).epsilon(1e-6));
  // k = 2: tokens_per_expert [2, 2], scale 2 * 0.1 / (2 * 2) = 0.05, dot = 2 * (0.7310586 + 0.2689414) = 2:
  // 0.1 whatever the balance.
  const moeref::Trace top2 = run_json(megablocks_gating(2, 2, {1, 0, 1, 0}, {{"moe_top_k", 2}}));
  CHECK(loss(top2, "load_balancing_loss") == Approx(0.1f).epsilon(1e-6));
  // Evaluation saves no loss.
  nlohmann::json eval = megablocks_gating(2, 2, {1, 0, 1, 0}, nlohmann::json::object());
  eval["train"] = false;
  CHECK(run_json(eval).losses.empty());
  // z-loss: logsumexp([1, 0]) = 1.3132617; squared 1.7246564; weight 0.001.
  const moeref::Trace z = run_json(megablocks_gating(2, 2, {1, 0, 1, 0}, {{"moe_zloss_weight", 0.001}}));
  CHECK(loss(z, "router_zloss") == Approx(0.0017246564f).epsilon(1e-5));
}

TEST_CASE("megablocks_dropless: jitter on the router input, uniform assignment, and top_k > E",
          "[megablocks_dropless][router]") {
  // moe_jitter_eps 0.1: low + U * (high - low) with Python floats: f32(0.9) + U * f32(0.2).
  nlohmann::json config = {{"variant", "megablocks_dropless"},
                           {"scope", "gating"},
                           {"train", true},
                           {"dims", {{"G", 1}, {"S", 1}, {"E", 2}, {"M", 1}}},
                           {"hparams", {{"moe_jitter_eps", 0.1}}},
                           {"inputs",
                            {{"x", tensor_json({"G", "S", "M"}, {1, 1, 1}, {2})},
                             {"jitter_uniform", tensor_json({"G", "S", "M"}, {1, 1, 1}, {0.25f})},
                             {"router_weights", tensor_json({"M", "E"}, {1, 2}, {1, -1})}}}};
  const float jitter = 0.9f + 0.25f * static_cast<float>(1.1 - 0.9);
  const moeref::Trace trace = run_json(config);
  CHECK(step(trace, "jitter").f32 == std::vector<float>{jitter});
  CHECK(step(trace, "logits").f32 == std::vector<float>{2.0f * jitter, -(2.0f * jitter)});
  // uniform_expert_assignment: (t * K + r) % E for 3 tokens, k = 2, E = 3: [0, 1, 2, 0, 1, 2]; weights unchanged.
  const moeref::Trace uniform = run_json(
      megablocks_gating(3, 3, {3, 2, 1, 3, 2, 1, 3, 2, 1}, {{"moe_top_k", 2}, {"uniform_expert_assignment", true}}));
  CHECK(step(uniform, "routing_expert").i32 == std::vector<int32_t>{0, 1, 2, 0, 1, 2});
  CHECK(step(uniform, "routing_weight").f32 == step(uniform, "expert_weights").f32);
  CHECK_THROWS_WITH(run_json(megablocks_gating(1, 2, {0, 0}, {{"moe_top_k", 3}})),
                    Catch::Contains("hparams.moe_top_k") && Catch::Contains("at most E = 2"));
}
