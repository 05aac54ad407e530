// hf_switch_top1: the numbers of the source's own SwitchTransformerRouterTest, then hand-derived
// cases for the per-sequence capacity, ties, the dropped-token-as-expert-0 quirk of the loss, the
// jitter that leaks into the experts, dropout, and the errors.
//
// Source tests: huggingface/transformers, tests/models/switch_transformers/
// test_modeling_switch_transformers.py at 00186a8 (00186a89773352f41a7c18ca267e63b1f6c54d2e),
// SwitchTransformerRouterTest: test_equivalency_balancy_loss (0.8741045),
// test_equivalency_router_z_loss (13.786719) and test_equivalency_token_chose_masked_router
// (1.000308 and 0.4789799). They assert with assertAlmostEqual(places=5): |difference| < 5e-6,
// which the checks below keep. Every other expected value is derived by hand in the comments.
#include <cmath>
#include <limits>
#include <vector>

#include "moeref/error.hpp"
#include "moeref/ops/hf_router_losses.hpp"
#include "moeref/ops/torch_routing.hpp"
#include "torch_test_helpers.hpp"

using namespace moeref::testing;

namespace {

// hf_switch_top1 in scope "gating" on supplied logits [G, S, E] (G sequences of S tokens).
nlohmann::json switch_gating(int64_t G, int64_t S, int64_t E, const std::vector<float>& logits,
                             nlohmann::json hparams) {
  return {{"variant", "hf_switch_top1"},
          {"scope", "gating"},
          {"dims", {{"G", G}, {"S", S}, {"E", E}}},
          {"hparams", std::move(hparams)},
          {"inputs", {{"logits", tensor_json({"G", "S", "E"}, {G, S, E}, logits)}}}};
}

}  // namespace

TEST_CASE("hf_switch_top1: SwitchTransformerRouterTest.test_equivalency_balancy_loss", "[hf_switch_top1][source]") {
  // router_probs [5, 2] and expert_indices [[0], [1], [1], [0], [0]]. In the source the indices are
  // [5, 1], so the mask is averaged over a size-1 axis (tokens_per_group_and_expert is the mask
  // itself, [5, 2]) while the probabilities are averaged over all five tokens ([2], broadcast over
  // the five rows). moeref's ops take [G, S, E]: the mask as G = 5 groups of one token, the
  // probabilities as one group of five tokens, repeated for each of the five rows.
  const std::vector<float> probs = {0.35490513f, 0.60419905f, 0.4275843f,  0.23061597f, 0.32985854f,
                                    0.43953657f, 0.25099766f, 0.27730572f, 0.7678207f,  0.71474564f};
  moeref::Tensor router_probs = moeref::Tensor::float32({"G", "S", "E"}, {1, 5, 2});
  router_probs.f32.assign(probs.begin(), probs.end());
  const moeref::Tensor prob_mean = moeref::ops::torch_mean_over_s(router_probs);  // [1, 2]
  moeref::Tensor mask = moeref::Tensor::int32({"G", "S", "E"}, {5, 1, 2});
  mask.i32 = {1, 0, 0, 1, 0, 1, 1, 0, 1, 0};
  const moeref::Tensor tokens = moeref::ops::torch_mean_over_s(mask);  // [5, 2]
  moeref::Tensor prob_rows = moeref::Tensor::float32({"G", "E"}, {5, 2});
  for (size_t i = 0; i < prob_rows.f32.size(); ++i) prob_rows.f32[i] = prob_mean.f32[i % 2];
  const float loss = moeref::ops::hf_load_balancing_loss(tokens, prob_rows);
  CHECK(std::fabs(loss - 0.8741045f) < 5e-6f);
}

TEST_CASE("hf_switch_top1: SwitchTransformerRouterTest.test_equivalency_router_z_loss", "[hf_switch_top1][source]") {
  // logits [2, 6, 4] of the source test: router_z_loss_func = sum(logsumexp^2) / (2 * 6).
  const std::vector<float> logits = {
      -4.2124424f, 3.891939f,   -3.6481273f,  1.8849981f,  0.32625437f, 2.918651f,    0.84758997f, -4.556842f,
      -3.32062f,   4.6977115f,  -0.15439987f, 0.44086337f, 3.4467149f,  4.3436565f,   -4.7224274f, -4.264637f,
      -2.224406f,  -2.5318158f, -1.3832569f,  1.1891162f,  -2.320062f,  -0.44705987f, 4.289819f,   -0.00662684f,
      0.99470854f, -0.6992364f, 0.25503993f,  4.2952085f,  3.5937333f,  -3.2408535f,  -4.298278f,  4.426601f,
      0.7669008f,  2.6588762f,  2.4505413f,   4.6051874f,  0.23330331f, -3.0845237f,  0.6262374f,  -2.9865491f,
      0.7595146f,  -2.1099675f, -4.155346f,   -2.8326452f, 2.3771453f,  1.004138f,    -3.1781673f, 0.7581556f};
  const moeref::Trace trace = run_json(switch_gating(2, 6, 4, logits, {{"router_jitter_noise", 0.0}}));
  CHECK(std::fabs(loss(trace, "encoder_z_loss") - 13.786719f) < 5e-6f);
  // z_loss = router_z_loss_coef (0.001) * encoder_z_loss.
  CHECK(loss(trace, "z_loss") == 0.001f * loss(trace, "encoder_z_loss"));
}

TEST_CASE("hf_switch_top1: torch.logsumexp of rows with an infinite maximum", "[hf_switch_top1][ops]") {
  // torch 1.13 (python3-torch): logsumexp([inf, 1]) = inf and logsumexp([-inf, -inf]) = -inf.
  // logsumexp_out_impl fills an infinite max with 0 through a view of maxes, so x - maxes
  // never computes inf - inf.
  const float inf = std::numeric_limits<float>::infinity();
  moeref::Tensor logits = moeref::Tensor::float32({"S", "E"}, {3, 2});
  logits.f32 = {inf, 1.0f, -inf, -inf, 0.0f, 0.0f};
  const moeref::Tensor log_z = moeref::ops::torch_logsumexp(logits);
  REQUIRE(log_z.shape == std::vector<int64_t>{3});
  CHECK(log_z.f32[0] == inf);
  CHECK(log_z.f32[1] == -inf);
  // log(2) in float32.
  CHECK(log_z.f32[2] == 0.6931472f);
}

TEST_CASE("hf_switch_top1: SwitchTransformerRouterTest.test_equivalency_token_chose_masked_router",
          "[hf_switch_top1][source]") {
  // The config of SwitchTransformerRouterTest: num_experts=2, hidden_size=8 (unused: the test's
  // tokens have 4 features), router_jitter_noise=0, expert_capacity=4. Input [2, 3, 4]; the
  // classifier weight is the given [4, 2] matrix transposed, so router_weights [M, E] is that matrix.
  const std::vector<float> x = {0.6433916f,  0.18188512f, 0.02240455f, 0.563781f,   0.5526401f,  0.0958724f,
                                0.34253013f, 0.03644359f, 0.08744538f, 0.7909105f,  0.35205448f, 0.53364205f,
                                0.02900076f, 0.4168595f,  0.5802449f,  0.91486526f, 0.27414513f, 0.14991808f,
                                0.9383501f,  0.5209162f,  0.51207185f, 0.90618336f, 0.7309413f,  0.95533276f};
  const std::vector<float> w = {0.02008116f,  0.00620062f, -0.00811031f, -0.00031623f,
                                -0.03542127f, 0.02703803f, 0.02335377f,  -0.02971946f};
  const nlohmann::json config = {
      {"variant", "hf_switch_top1"},
      {"scope", "gating"},
      {"dims", {{"B", 2}, {"L", 3}, {"E", 2}, {"M", 4}}},
      {"hparams", {{"router_jitter_noise", 0.0}, {"expert_capacity", 4}}},
      {"inputs",
       {{"x", tensor_json({"B", "L", "M"}, {2, 3, 4}, x)}, {"router_weights", tensor_json({"M", "E"}, {4, 2}, w)}}}};
  const moeref::Trace trace = run_json(config);
  // auxiliary_loss = load_balancing_loss_func(softmax(router_logits), argmax(expert_index)).
  CHECK(std::fabs(loss(trace, "encoder_aux_loss") - 1.000308f) < 5e-6f);
  CHECK(std::fabs(loss(trace, "encoder_z_loss") - 0.4789799f) < 5e-6f);
  // Three tokens per sequence and a capacity of 4: nothing is dropped.
  CHECK(step(trace, "router_mask_flat").i32 == std::vector<int32_t>{1, 1, 1, 1, 1, 1});
}

TEST_CASE("hf_switch_top1: capacity per sequence in token order, a dropped token counts as expert 0 in the loss",
          "[hf_switch_top1][capacity]") {
  // One sequence, E = 2, expert_capacity = 1. logits: t0 [0, 1] -> e1; t1 [0, 2] -> e1; t2 [0, 0], a
  // tie: torch.argmax returns the first maximum, e0.
  const moeref::Trace trace = run_json(switch_gating(1, 3, 2, {0, 1, 0, 2, 0, 0}, {{"expert_capacity", 1}}));
  CHECK(step(trace, "expert_index").i32 == std::vector<int32_t>{1, 1, 0});
  // token_priority = cumsum(one_hot, dim=-2): e1 column [1, 2, 2], e0 column [0, 0, 1].
  CHECK(step(trace, "token_priority").i32 == std::vector<int32_t>{0, 1, 0, 2, 1, 2});
  // token_priority <= 1 keeps t0 on e1 and t2 on e0; t1 (priority 2 on e1) is dropped.
  CHECK(step(trace, "expert_index_capacity").i32 == std::vector<int32_t>{0, 1, 0, 0, 1, 0});
  // argmax of the masked one-hot: t1's all-zero row gives expert 0.
  CHECK(step(trace, "expert_indexes").i32 == std::vector<int32_t>{1, 0, 0});
  // The gate is the top-1 probability, kept for the dropped token: softmax([0, 1])[1] = 0.7310586,
  // softmax([0, 2])[1] = 0.8807971, softmax([0, 0])[0] = 0.5.
  const moeref::Tensor& gate = step(trace, "router_probs_max");
  CHECK(gate.f32[0] == Approx(0.7310586f).epsilon(1e-6));
  CHECK(gate.f32[1] == Approx(0.8807971f).epsilon(1e-6));
  CHECK(gate.f32[2] == 0.5f);
  // Index form: slots token_priority - 1 for kept tokens, -1 and weight 0 for the dropped one.
  CHECK(step(trace, "routing_expert").i32 == std::vector<int32_t>{1, 1, 0});
  CHECK(step(trace, "routing_slot").i32 == std::vector<int32_t>{0, -1, 0});
  CHECK(step(trace, "routing_weight").f32[1] == 0.0f);
  // load_balancing_loss_func with expert_indexes [1, 0, 0]: tokens per expert [2/3, 1/3];
  // mean probabilities e0 (0.2689414 + 0.1192029 + 0.5) / 3 = 0.2960481, e1 0.7039519;
  // mean([2/3 * 0.2960481, 1/3 * 0.7039519]) * 4 = 0.8640321. Counting t1 as expert 1 would
  // give mean([1/3 * 0.2960481, 2/3 * 0.7039519]) * 4 = 1.1359679.
  CHECK(loss(trace, "encoder_aux_loss") == Approx(0.8640321f).epsilon(1e-6));
  // z-loss: logsumexp = log(1 + e), log(1 + e^2), log 2 = 1.3132617, 2.1269280, 0.6931472;
  // squares 1.7246564 + 4.5238227 + 0.4804530, sum / 3 = 2.2429774.
  CHECK(loss(trace, "encoder_z_loss") == Approx(2.2429774f).epsilon(1e-6));
}

TEST_CASE("hf_switch_top1: each sequence has its own capacity", "[hf_switch_top1][capacity]") {
  // Two sequences of two tokens, all choosing e0, capacity 1: the first token of EACH sequence is kept
  // (a whole-batch capacity would keep only the very first token).
  const moeref::Trace trace = run_json(switch_gating(2, 2, 2, {1, 0, 1, 0, 1, 0, 1, 0}, {{"expert_capacity", 1}}));
  CHECK(step(trace, "router_mask_flat").i32 == std::vector<int32_t>{1, 0, 1, 0});
  CHECK(step(trace, "routing_slot").i32 == std::vector<int32_t>{0, -1, 0, -1});
}

TEST_CASE("hf_switch_top1: expert_capacity 0 drops every token", "[hf_switch_top1][capacity]") {
  // token_priority >= 1 everywhere it is set, and 1 <= 0 is false: nothing is routed, every token's
  // expert_indexes is 0, and the layer outputs zeros.
  nlohmann::json config = switch_gating(1, 2, 2, {0, 1, 1, 0}, {{"expert_capacity", 0}});
  config["scope"] = "layer";
  config["train"] = false;
  config["dims"]["M"] = 2;
  config["dims"]["H"] = 3;
  const moeref::Trace trace = run_json(config);
  CHECK(step(trace, "router_mask_flat").i32 == std::vector<int32_t>{0, 0});
  CHECK(step(trace, "expert_indexes").i32 == std::vector<int32_t>{0, 0});
  for (float value : step(trace, "outputs").f32) CHECK(value == 0.0f);
}

TEST_CASE("hf_switch_top1: the layer scales one expert's output by the top-1 probability", "[hf_switch_top1][layer]") {
  // Evaluation (no jitter, no dropout). One sequence of two tokens, E = 2, M = 2, H = 2, logits
  // supplied: t0 [ln 3, 0] -> e0 with probability 0.75; t1 [0, 0] -> e0 (tie) with 0.5.
  // wi[0] = I, wo[0] = [[1, 2], [3, 4]]; x t0 = [1, -1] -> relu([1, -1]) = [1, 0] -> [1, 2] -> x 0.75
  // = [0.75, 1.5]; x t1 = [2, 1] -> [2, 1] -> [2 + 3, 4 + 4] = [5, 8] -> x 0.5 = [2.5, 4].
  const float ln3 = static_cast<float>(std::log(3.0));
  nlohmann::json config = switch_gating(1, 2, 2, {ln3, 0, 0, 0}, nlohmann::json::object());
  config["scope"] = "layer";
  config["train"] = false;
  config["dims"]["M"] = 2;
  config["dims"]["H"] = 2;
  config["inputs"]["x"] = tensor_json({"G", "S", "M"}, {1, 2, 2}, {1, -1, 2, 1});
  config["inputs"]["wi"] = tensor_json({"E", "M", "H"}, {2, 2, 2}, {1, 0, 0, 1, 9, 9, 9, 9});
  config["inputs"]["wo"] = tensor_json({"E", "H", "N"}, {2, 2, 2}, {1, 2, 3, 4, 9, 9, 9, 9});
  const moeref::Trace trace = run_json(config);
  CHECK(step(trace, "expert_outputs").f32 == std::vector<float>{1, 2, 5, 8});
  const moeref::Tensor& outputs = step(trace, "outputs");
  CHECK(outputs.f32[0] == Approx(0.75f).epsilon(1e-6));
  CHECK(outputs.f32[1] == Approx(1.5f).epsilon(1e-6));
  CHECK(outputs.f32[2] == 2.5f);
  CHECK(outputs.f32[3] == 4.0f);
}

TEST_CASE("hf_switch_top1: jitter multiplies the router input in place, so the experts see it",
          "[hf_switch_top1][jitter]") {
  // router_jitter_noise 0.5: uniform_(0.5, 1.5) maps U to f32(U * (1.5 - 0.5) + 0.5) = U + 0.5.
  // U = 0 and 0.5 give multipliers 0.5 and 1.0.
  nlohmann::json config = {{"variant", "hf_switch_top1"},
                           {"scope", "layer"},
                           {"train", true},
                           {"dims", {{"G", 1}, {"S", 1}, {"E", 1}, {"M", 2}, {"H", 1}}},
                           {"hparams", {{"router_jitter_noise", 0.5}, {"dropout_rate", 0.0}}},
                           {"inputs",
                            {{"x", tensor_json({"G", "S", "M"}, {1, 1, 2}, {4, 6})},
                             {"jitter_uniform", tensor_json({"G", "S", "M"}, {1, 1, 2}, {0, 0.5f})},
                             {"router_weights", tensor_json({"M", "E"}, {2, 1}, {1, 1})},
                             {"wi", tensor_json({"E", "M", "H"}, {1, 2, 1}, {1, 1})},
                             {"wo", tensor_json({"E", "H", "N"}, {1, 1, 2}, {1, 0})}}}};
  const moeref::Trace trace = run_json(config);
  CHECK(step(trace, "jitter").f32 == std::vector<float>{0.5f, 1.0f});
  CHECK(step(trace, "hidden_states_jittered").f32 == std::vector<float>{2, 6});
  // logits = 2 + 6 = 8; the expert sees [2, 6] too: relu(2 + 6) = 8, output [8, 0] times gate 1.
  CHECK(step(trace, "logits").f32 == std::vector<float>{8});
  CHECK(step(trace, "expert_outputs").f32 == std::vector<float>{8, 0});
  CHECK(step(trace, "outputs").f32 == std::vector<float>{8, 0});
  // In evaluation there is no jitter: no draw and no step.
  config["train"] = false;
  config["inputs"].erase("jitter_uniform");
  const moeref::Trace eval = run_json(config);
  CHECK(eval.find_step("jitter") == nullptr);
  CHECK(eval.find_input("jitter_uniform") == nullptr);
  CHECK(step(eval, "expert_outputs").f32 == std::vector<float>{10, 0});
}

TEST_CASE("hf_switch_top1: dropout on the expert hidden units when training", "[hf_switch_top1][layer]") {
  // dropout_rate 0.5: keep iff U < f32(1 - 0.5) = 0.5, kept values times 1 / 0.5 = 2.
  nlohmann::json config = {{"variant", "hf_switch_top1"},
                           {"train", true},
                           {"dims", {{"G", 1}, {"S", 1}, {"E", 1}, {"M", 1}, {"H", 2}}},
                           {"hparams", {{"router_jitter_noise", 0.0}, {"dropout_rate", 0.5}}},
                           {"inputs",
                            {{"x", tensor_json({"G", "S", "M"}, {1, 1, 1}, {1})},
                             {"dropout_uniform", tensor_json({"G", "S", "K", "H"}, {1, 1, 1, 2}, {0.25f, 0.5f})},
                             {"wi", tensor_json({"E", "M", "H"}, {1, 1, 2}, {3, 5})},
                             {"wo", tensor_json({"E", "H", "N"}, {1, 2, 1}, {1, 1})}}}};
  const moeref::Trace trace = run_json(config);
  CHECK(step(trace, "expert_hidden").f32 == std::vector<float>{3, 5});
  CHECK(step(trace, "expert_hidden_dropout").f32 == std::vector<float>{6, 0});
  CHECK(step(trace, "expert_outputs").f32 == std::vector<float>{6});
}

TEST_CASE("hf_switch_top1: router_dtype other than float32 and a G with B and L are refused",
          "[hf_switch_top1][errors]") {
  nlohmann::json config = switch_gating(1, 2, 2, {0, 1, 1, 0}, {{"router_dtype", "bfloat16"}});
  CHECK_THROWS_WITH(run_json(config), Catch::Contains("hparams.router_dtype") && Catch::Contains("float32"));
  nlohmann::json given_g = {
      {"variant", "hf_switch_top1"}, {"scope", "gating"}, {"dims", {{"B", 2}, {"L", 3}, {"G", 3}, {"E", 2}, {"M", 2}}}};
  CHECK_THROWS_WITH(run_json(given_g), Catch::Contains("dims.G") && Catch::Contains("G = B"));
}

TEST_CASE("hf_switch_top1: invariants on generated inputs", "[hf_switch_top1][invariants]") {
  for (uint64_t seed = 0; seed < 6; ++seed) {
    const nlohmann::json config = {{"variant", "hf_switch_top1"},
                                   {"seed", seed},
                                   {"dims", {{"B", 3}, {"L", 16}, {"E", 4}, {"M", 8}, {"H", 6}}},
                                   {"hparams", {{"expert_capacity", 3}}}};
    const moeref::Trace trace = run_json(config);
    check_top1_capacity_in_token_order(trace, "expert_index", "routing_slot", 3);
  }
}
