// mtf_expert_selection: hand-derived cases of _expert_selection_gating
// (tensorflow/mesh, mesh_tensorflow/transformer/moe.py at da90793) inside
// transformer_moe_layer_v1: softmax over tokens, top-C tokens per expert,
// normalisation by the number of experts that took a token, dispatch from the
// one-hot, and its aux loss.
//
// Dims: G groups, S group size, E experts, C expert capacity. Logits are the logs
// of hand-picked numbers, so each expert's softmax over the tokens is their share.
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "moeref/error.hpp"
#include "mtf_switch_test_helpers.hpp"
#include "test_support.hpp"

using namespace moeref::testing::mtf;

namespace {

// Logits [S, E] = log of `weights` (row per token): expert e's softmax over the tokens is
// weights[s][e] / sum_s weights[s][e].
std::vector<float> log_weights(const std::vector<std::vector<double>>& weights) {
  std::vector<float> out;
  for (const std::vector<double>& row : weights) {
    for (double w : row) out.push_back(static_cast<float>(std::log(w)));
  }
  return out;
}

json hparams_with_capacity(int64_t C) { return {{"switch_policy_eval", "argmax"}, {"expert_capacity", C}}; }

}  // namespace

TEST_CASE("mtf_expert_selection: softmax over tokens, each expert takes its C best",
          "[mtf_expert_selection][routing]") {
  // Expert 0's shares (4, 3, 2, 1)/10, expert 1's (1, 2, 3, 4)/10; C = 2.
  // Expert 0 takes t0 (0.4) then t1 (0.3); expert 1 takes t3 (0.4) then t2 (0.3). Each token is
  // taken once, so the weights are the probabilities.
  const std::vector<float> logits = log_weights({{4, 1}, {3, 2}, {2, 3}, {1, 4}});
  const Trace trace =
      run_json(variant_config("mtf_expert_selection", 1, 4, 2, logits, hparams_with_capacity(2), false, ones(4)));
  const Tensor& raw_gates = step(trace, "raw_gates");
  CHECK(f_at(raw_gates, {0, 0, 0}) == Approx(0.4).epsilon(1e-6));
  CHECK(f_at(raw_gates, {0, 3, 1}) == Approx(0.4).epsilon(1e-6));
  CHECK(ints(trace, "expert_gate_indices") == std::vector<int32_t>{0, 1, 3, 2});
  CHECK(ints(trace, "num_experts_routed") == std::vector<int32_t>{1, 1, 1, 1});
  check_token_slots(trace, 0, 0, {{0, 0, 0.4}});
  check_token_slots(trace, 0, 1, {{0, 1, 0.3}});
  check_token_slots(trace, 0, 2, {{1, 1, 0.3}});
  check_token_slots(trace, 0, 3, {{1, 0, 0.4}});
  // Aux loss: each token's mean over E is 0.25; true_group_size 4; loss = 4 * 4 * 0.25^2 = 1.
  for (float agg : floats(trace, "aggregated_group_probs")) CHECK(agg == Approx(0.25).epsilon(1e-6));
  CHECK(floats(trace, "true_group_size") == std::vector<float>{4.0f});
  CHECK(loss(trace, "gating_loss") == Approx(1.0).epsilon(1e-6));
}

TEST_CASE("mtf_expert_selection: a token taken by two experts gets each weight divided by 2",
          "[mtf_expert_selection][routing]") {
  // Shares: expert 0 (5, 3, 1, 1)/10, expert 1 (5, 1, 3, 1)/10; C = 2. Both take t0 (0.5);
  // expert 0 then t1 (0.3), expert 1 then t2 (0.3); t3 is taken by nobody.
  const std::vector<float> logits = log_weights({{5, 5}, {3, 1}, {1, 3}, {1, 1}});
  const Trace trace =
      run_json(variant_config("mtf_expert_selection", 1, 4, 2, logits, hparams_with_capacity(2), false, ones(4)));
  CHECK(ints(trace, "num_experts_routed") == std::vector<int32_t>{2, 1, 1, 0});
  const Tensor& unnormalized = step(trace, "combine_tensor_unnormalized");
  // combine = unnormalized * reciprocal(max(n, 1)): 0.5 * f32(1/2).
  CHECK(f_at(step(trace, "combine_tensor"), {0, 0, 0, 0}) == f_at(unnormalized, {0, 0, 0, 0}) * 0.5f);
  check_token_slots(trace, 0, 0, {{0, 0, 0.25}, {1, 0, 0.25}});
  check_token_slots(trace, 0, 1, {{0, 1, 0.3}});
  check_token_slots(trace, 0, 2, {{1, 1, 0.3}});
  check_token_slots(trace, 0, 3, {});
}

TEST_CASE("mtf_expert_selection: padding leaves the softmax, dispatch comes from the one-hot, not from combine",
          "[mtf_expert_selection][padding]") {
  // S = 3, importance (1, 1, 0), C = 3: every expert takes all three tokens. The padded t2's
  // logits become -1e9, its probability exp(-1e9 - lse) = 0: combine 0, yet dispatched.
  const std::vector<float> logits = log_weights({{1, 3}, {3, 1}, {2, 2}});
  const Trace trace =
      run_json(variant_config("mtf_expert_selection", 1, 3, 2, logits, hparams_with_capacity(3), false, {1, 1, 0}));
  CHECK(f_at(step(trace, "gate_logits_masked"), {0, 2, 0}) == -1e9f);
  const Tensor& raw_gates = step(trace, "raw_gates");
  CHECK(f_at(raw_gates, {0, 2, 0}) == 0.0f);
  CHECK(f_at(raw_gates, {0, 1, 0}) == Approx(0.75).epsilon(1e-6));
  CHECK(ints(trace, "num_experts_routed") == std::vector<int32_t>{2, 2, 2});
  const Tensor& combine = step(trace, "combine_tensor");
  const Tensor& dispatch = step(trace, "dispatch_tensor");
  // Expert 0's order: t1 (0.75), t0 (0.25), t2 (0).
  CHECK(ints(trace, "expert_gate_indices") == std::vector<int32_t>{1, 0, 2, 0, 1, 2});
  CHECK(f_at(combine, {0, 2, 0, 2}) == 0.0f);
  CHECK(i_at(dispatch, {0, 2, 0, 2}) == 1);
  // Aux loss: agg = (0.5, 0.5, 0) masked to (0.5, 0.5, 0); true_group_size 2;
  // loss = (2 * (0.25 + 0.25) / 3) * 3 = 1.
  CHECK(loss(trace, "gating_loss") == Approx(1.0).epsilon(1e-6));
}

TEST_CASE("mtf_expert_selection aux loss with importance 0.5: counted in the group size, masked in agg",
          "[mtf_expert_selection][loss]") {
  // importance (1, 1, 1, 0.5): t3 is not pushed out (only 0 is), so shares over all 4 tokens:
  // expert 0 (4, 3, 2, 1)/10, expert 1 (1, 2, 3, 4)/10; agg = (0.25, 0.25, 0.25, 0.25) masked to
  // (0.25, 0.25, 0.25, 0); true_group_size = 3.5; loss = mean_S(agg^2 * 3.5) * 4 = 3.5 * 3 / 16.
  const std::vector<float> logits = log_weights({{4, 1}, {3, 2}, {2, 3}, {1, 4}});
  json hp = hparams_with_capacity(2);
  hp["num_microbatches"] = 2;
  const Trace trace = run_json(variant_config("mtf_expert_selection", 1, 4, 2, logits, hp, false, {1, 1, 1, 0.5f}));
  CHECK(floats(trace, "true_group_size") == std::vector<float>{3.5f});
  CHECK(f_at(step(trace, "aggregated_group_probs_important"), {0, 3}) == 0.0f);
  CHECK(step(trace, "load_balancing_loss").f32[0] == Approx(3.5 * 3.0 / 16.0).epsilon(1e-6));
  // num_microbatches 2 halves it.
  CHECK(loss(trace, "gating_loss") == step(trace, "load_balancing_loss").f32[0] * 0.5f);
}

TEST_CASE("mtf_expert_selection training summaries: entropy over S and group_token",
          "[mtf_expert_selection][summaries]") {
  const std::vector<float> logits = log_weights({{4, 1}, {3, 2}, {2, 3}, {1, 4}});
  const Trace trace =
      run_json(variant_config("mtf_expert_selection", 1, 4, 2, logits,
                              {{"switch_policy_train", "argmax"}, {"expert_capacity", 2}}, true, ones(4)));
  // group_token[s] = (slots holding s over G, E, C) * E * C = 1 * 4 for every token here.
  CHECK(floats(trace, "group_token") == std::vector<float>{4, 4, 4, 4});
  // entropy per expert = -sum p log p over (0.4, 0.3, 0.2, 0.1); both experts alike.
  double h = 0.0;
  for (double p : {0.4, 0.3, 0.2, 0.1}) h -= p * std::log(p);
  CHECK(step(trace, "entropy").shape == std::vector<int64_t>{1, 2});
  CHECK(step(trace, "batch_entropy").f32[0] == Approx(h).epsilon(1e-5));
  CHECK(step(trace, "aux_loss").f32[0] == step(trace, "gating_loss").f32[0]);
  // argmax and sample perturb nothing and draw nothing here.
  CHECK(trace.inputs.size() == 2);  // logits and importance
}

TEST_CASE("mtf_expert_selection edges: all padded, E = 1, C = 0, C > S", "[mtf_expert_selection][edges]") {
  SECTION("a group of padding: every probability is exactly 1, the padded tokens are served") {
    const Trace trace = run_json(variant_config("mtf_expert_selection", 1, 2, 2, {0.3f, -0.2f, 1.0f, 0.5f},
                                                hparams_with_capacity(2), false, {0, 0}));
    CHECK(floats(trace, "raw_gates") == std::vector<float>{1, 1, 1, 1});
    CHECK(ints(trace, "num_experts_routed") == std::vector<int32_t>{2, 2});
    check_token_slots(trace, 0, 0, {{0, 0, 0.5}, {1, 0, 0.5}});
    CHECK(loss(trace, "gating_loss") == 0.0f);
  }
  SECTION("E = 1: one softmax over the group, top-C tokens") {
    const Trace trace = run_json(variant_config("mtf_expert_selection", 1, 3, 1, log_weights({{1}, {3}, {4}}),
                                                hparams_with_capacity(2), false, ones(3)));
    CHECK(ints(trace, "expert_gate_indices") == std::vector<int32_t>{2, 1});
    check_token_slots(trace, 0, 2, {{0, 0, 0.5}});
    check_token_slots(trace, 0, 0, {});
  }
  SECTION("C = 0: nothing is taken") {
    const Trace trace = run_json(
        variant_config("mtf_expert_selection", 1, 2, 2, {0, 1, 1, 0}, hparams_with_capacity(0), false, ones(2)));
    CHECK(ints(trace, "num_experts_routed") == std::vector<int32_t>{0, 0});
    CHECK(step(trace, "combine_tensor").shape == std::vector<int64_t>{1, 2, 2, 0});
  }
  SECTION("C = 4 > S = 2 (min_expert_capacity): repeated tokens at -1e9, dispatched and counted") {
    const Trace trace = run_json(variant_config("mtf_expert_selection", 1, 2, 2, log_weights({{3, 1}, {1, 3}}),
                                                {{"switch_policy_eval", "argmax"}}, false, ones(2)));
    REQUIRE(trace.config["dims"]["C"] == 4);
    CHECK(ints(trace, "expert_gate_indices") == std::vector<int32_t>{0, 1, 0, 1, 1, 0, 0, 1});
    CHECK(ints(trace, "num_experts_routed") == std::vector<int32_t>{4, 4});
    // Slot 2 of expert 0 holds t0 at -1e9, divided by 4.
    CHECK(f_at(step(trace, "combine_tensor"), {0, 0, 0, 2}) == -1e9f * 0.25f);
  }
  SECTION("C = 5 > S = 4 is refused (TopKOperation raises ValueError)") {
    CHECK_THROWS_WITH(run_json(variant_config("mtf_expert_selection", 1, 4, 2, std::vector<float>(8, 0.0f),
                                              hparams_with_capacity(5), false, ones(4))),
                      Catch::Contains("dims.C") && Catch::Contains("ValueError"));
  }
}

TEST_CASE("mtf_expert_selection needs importance, in evaluation too", "[mtf_expert_selection][errors]") {
  CHECK_THROWS_WITH(
      run_json(variant_config("mtf_expert_selection", 1, 2, 2, {0, 1, 1, 0}, hparams_with_capacity(1), false)),
      Catch::Contains("inputs.importance") && Catch::Contains("true_group_size"));
}

TEST_CASE("mtf_expert_selection invariants: C distinct tokens per expert, weights = probability / takers",
          "[mtf_expert_selection][invariants]") {
  for (int seed : {1, 2, 3}) {
    for (bool train : {true, false}) {
      INFO("seed " << seed << ", train " << train);
      json config = {{"variant", "mtf_expert_selection"},
                     {"scope", "layer"},
                     {"train", train},
                     {"seed", seed},
                     {"dims", {{"G", 2}, {"S", 9}, {"E", 3}, {"M", 5}, {"H", 4}}},
                     {"hparams", {{"switch_policy_train", "input_jitter"}}}};
      std::vector<float> importance = ones(18);
      importance[4] = 0.0f;
      importance[13] = 0.5f;
      config["inputs"]["importance"] = tensor_json({"G", "S"}, {2, 9}, importance);
      const Trace trace = run_json(config);
      const Tensor& dispatch = step(trace, "dispatch_tensor");
      const Tensor& combine = step(trace, "combine_tensor");
      const Tensor& raw_gates = step(trace, "raw_gates");
      const Tensor& routed = step(trace, "num_experts_routed");
      const int64_t G = dispatch.shape[0], S = dispatch.shape[1], E = dispatch.shape[2], C = dispatch.shape[3];
      check_routing_invariants(trace);
      for (int64_t g = 0; g < G; ++g) {
        for (int64_t e = 0; e < E; ++e) {
          double column = 0.0;
          for (int64_t s = 0; s < S; ++s) column += f_at(raw_gates, {g, s, e});
          CHECK(column == Approx(1.0).epsilon(1e-5));  // softmax over the tokens
          for (int64_t c = 0; c < C; ++c) {
            int taken = 0;
            for (int64_t s = 0; s < S; ++s) {
              if (i_at(dispatch, {g, s, e, c}) == 0) continue;
              ++taken;
              const float n = static_cast<float>(std::max(i_at(routed, {g, s}), 1));
              CHECK(f_at(combine, {g, s, e, c}) == f_at(raw_gates, {g, s, e}) * (1.0f / n));
            }
            CHECK(taken == 1);  // every slot is filled (C <= S)
          }
        }
      }
    }
  }
}

TEST_CASE("mtf_expert_selection ties: equal probabilities over the tokens go to the lower token index",
          "[mtf_expert_selection][ties]") {
  // Every logit equal: each expert's softmax over the 4 tokens is 0.25; C = 2 takes t0, t1 for
  // both experts, so t0 and t1 are each taken twice (weight 0.25 / 2) and t2, t3 by nobody.
  const Trace trace = run_json(variant_config("mtf_expert_selection", 1, 4, 2, std::vector<float>(8, 0.3f),
                                              hparams_with_capacity(2), false, ones(4)));
  CHECK(ints(trace, "expert_gate_indices") == std::vector<int32_t>{0, 1, 0, 1});
  CHECK(ints(trace, "num_experts_routed") == std::vector<int32_t>{2, 2, 0, 0});
  check_token_slots(trace, 0, 1, {{0, 1, 0.125}, {1, 1, 0.125}});
  check_token_slots(trace, 0, 3, {});
}
