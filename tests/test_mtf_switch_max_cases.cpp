// mtf_switch_max: hand-derived cases of _switch_max_gating (tensorflow/mesh,
// mesh_tensorflow/transformer/moe.py at da90793), its mtf.top_k (ops.py: top_k,
// _iterative_top_k, TopKOperation), and the C > S behaviour moeref reproduces
// (2 <= C <= 4) or refuses (C >= 5).
//
// Dims: G groups, S group size, E experts, C expert capacity.
#include <cstdint>
#include <string>
#include <vector>

#include "moeref/error.hpp"
#include "moeref/ops/mtf_top_k.hpp"
#include "mtf_switch_test_helpers.hpp"
#include "test_support.hpp"

using namespace moeref::testing::mtf;

namespace {

const json kArgmaxEval = {{"switch_policy_eval", "argmax"}};

json with_capacity(json hparams, int64_t C) {
  hparams["expert_capacity"] = C;
  return hparams;
}

}  // namespace

TEST_CASE("mtf.top_k: the numbers of mesh_tensorflow ops_test.py testTopK (k = 2, iterative)",
          "[mtf_switch_max][ops]") {
  // ops_test.py: inputs [a=6, b=2] = [[1, 10], [2, 9], [3, 8], [4, 7], [5, 6], [6, 5]],
  // top_k over a with k = 2: values [[6, 5], [10, 9]], indices [[5, 4], [0, 1]].
  const std::vector<float> inputs = {1, 10, 2, 9, 3, 8, 4, 7, 5, 6, 6, 5};
  float values[2];
  int32_t indices[2];
  moeref::ops::mtf_top_k(inputs.data() + 0, 2, 6, 2, values, indices);
  CHECK(std::vector<float>(values, values + 2) == std::vector<float>{6, 5});
  CHECK(std::vector<int32_t>(indices, indices + 2) == std::vector<int32_t>{5, 4});
  moeref::ops::mtf_top_k(inputs.data() + 1, 2, 6, 2, values, indices);
  CHECK(std::vector<float>(values, values + 2) == std::vector<float>{10, 9});
  CHECK(std::vector<int32_t>(indices, indices + 2) == std::vector<int32_t>{0, 1});
}

TEST_CASE("mtf.top_k with k > n: iterative re-picks at -1e9 for k <= 4, TopKOperation refuses k >= 5",
          "[mtf_switch_max][ops]") {
  // n = 2, k = 4: rounds pick 0 (0.7), 1 (0.6), then both hold x - 1e9 = -1e9 exactly: 0, then
  // 1 (entry 0 is now -2e9; the last round adds nothing).
  const std::vector<float> row = {0.7f, 0.6f};
  float values[4];
  int32_t indices[4];
  REQUIRE(moeref::ops::mtf_top_k_runs(2, 4));
  moeref::ops::mtf_top_k(row.data(), 1, 2, 4, values, indices);
  CHECK(std::vector<int32_t>(indices, indices + 4) == std::vector<int32_t>{0, 1, 0, 1});
  CHECK(std::vector<float>(values, values + 4) == std::vector<float>{0.7f, 0.6f, -1e9f, -1e9f});
  CHECK_FALSE(moeref::ops::mtf_top_k_runs(4, 5));
  CHECK(moeref::ops::mtf_top_k_runs(5, 5));
  CHECK(moeref::ops::mtf_top_k_runs(3, 0));
}

TEST_CASE("mtf_switch_max: an overflowing expert drops its least confident token, slots by descending gate",
          "[mtf_switch_max][routing]") {
  // G = 1, S = 4, E = 2, C = 2. Gates: t0 0.6 (e0), t1 0.9 (e0), t2 0.7 (e0), t3 0.8 (e1).
  // Expert 0 keeps t1 (slot 0) and t2 (slot 1) and drops t0, the least confident (mtf_switch
  // would keep t0 and t1 in token order and drop t2). Expert 1: t3 at slot 0; slot 1 takes the
  // lowest-index zero, t0, with weight 0: occupied but not dispatched.
  const std::vector<float> logits = log_probs({{0.6, 0.4}, {0.9, 0.1}, {0.7, 0.3}, {0.2, 0.8}});
  const Trace trace = run_json(variant_config("mtf_switch_max", 1, 4, 2, logits, with_capacity(kArgmaxEval, 2), false));
  CHECK(ints(trace, "expert_index") == std::vector<int32_t>{0, 0, 0, 1});
  CHECK(ints(trace, "expert_gate_indices") == std::vector<int32_t>{1, 2, 3, 0});
  const std::vector<float> probs = floats(trace, "expert_gate_probs");
  const Tensor& gate = step(trace, "expert_gate");
  CHECK(probs == std::vector<float>{f_at(gate, {0, 1}), f_at(gate, {0, 2}), f_at(gate, {0, 3}), 0.0f});
  check_token_slots(trace, 0, 0, {});
  check_token_slots(trace, 0, 1, {{0, 0, 0.9}});
  check_token_slots(trace, 0, 2, {{0, 1, 0.7}});
  check_token_slots(trace, 0, 3, {{1, 0, 0.8}});
  check_routing_invariants(trace);
}

TEST_CASE("mtf_switch_max ties: equal gates at the cut keep the lower token index", "[mtf_switch_max][ties]") {
  // Every token has probabilities (0.5, 0.5): expert 0, gate 0.5 each.
  const std::vector<float> logits(6, 0.0f);
  SECTION("C = 1 (TopKOperation: reduce_max and argmax)") {
    const Trace trace =
        run_json(variant_config("mtf_switch_max", 1, 3, 2, logits, with_capacity(kArgmaxEval, 1), false));
    CHECK(ints(trace, "expert_gate_indices") == std::vector<int32_t>{0, 0});
    check_token_slots(trace, 0, 0, {{0, 0, 0.5}});
    check_token_slots(trace, 0, 1, {});
  }
  SECTION("C = 2 (_iterative_top_k)") {
    const Trace trace =
        run_json(variant_config("mtf_switch_max", 1, 3, 2, logits, with_capacity(kArgmaxEval, 2), false));
    CHECK(ints(trace, "expert_gate_indices") == std::vector<int32_t>{0, 1, 0, 1});
    check_token_slots(trace, 0, 1, {{0, 1, 0.5}});
    check_token_slots(trace, 0, 2, {});
  }
}

TEST_CASE("mtf_switch_max E = 1, C = 0, all padded", "[mtf_switch_max][edges]") {
  SECTION("E = 1: gates tie at 1, the first C tokens in token order") {
    const Trace trace =
        run_json(variant_config("mtf_switch_max", 1, 4, 1, {2, -1, 0, 3}, with_capacity(kArgmaxEval, 3), false));
    CHECK(ints(trace, "expert_gate_indices") == std::vector<int32_t>{0, 1, 2});
    check_token_slots(trace, 0, 3, {});
  }
  SECTION("C = 0: nothing routed") {
    const Trace trace = run_json(variant_config("mtf_switch_max", 1, 2, 2, log_probs({{0.7, 0.3}, {0.4, 0.6}}),
                                                with_capacity(kArgmaxEval, 0), false));
    CHECK(step(trace, "combine_tensor").shape == std::vector<int64_t>{1, 2, 2, 0});
    CHECK(step(trace, "expert_gate_indices").shape == std::vector<int64_t>{1, 2, 0});
  }
  SECTION("all padded in training: zero-weight fillers, not dispatched; fraction_routed NaN") {
    const Trace trace =
        run_json(variant_config("mtf_switch_max", 1, 3, 2, log_probs({{0.7, 0.3}, {0.4, 0.6}, {0.5, 0.5}}),
                                with_capacity({{"switch_policy_train", "argmax"}}, 2), true, {0, 0, 0}));
    CHECK(ints(trace, "expert_gate_indices") == std::vector<int32_t>{0, 1, 0, 1});
    for (int32_t d : ints(trace, "dispatch_tensor")) CHECK(d == 0);
    CHECK(std::isnan(step(trace, "fraction_routed").f32[0]));
  }
}

TEST_CASE("mtf_switch_max with C > S: 2 <= C <= 4 reproduces mtf's -1e9 weights, C >= 5 is refused",
          "[mtf_switch_max][capacity]") {
  // S = 2, E = 2, C = max(min(2, int(2 * 2.0 / 2)), 4) = 4 (the default min_expert_capacity).
  // Both tokens choose expert 0 (0.7 and 0.6). Expert 0's row (0.7, 0.6): indices (0, 1, 0, 1),
  // values (0.7, 0.6, -1e9, -1e9). Expert 1's row (0, 0): (0, 1, 0, 1) with (0, 0, -1e9, -1e9).
  const std::vector<float> logits = log_probs({{0.7, 0.3}, {0.6, 0.4}});
  const Trace trace = run_json(variant_config("mtf_switch_max", 1, 2, 2, logits, kArgmaxEval, false));
  REQUIRE(trace.config["dims"]["C"] == 4);
  CHECK(ints(trace, "expert_gate_indices") == std::vector<int32_t>{0, 1, 0, 1, 0, 1, 0, 1});
  const std::vector<float> probs = floats(trace, "expert_gate_probs");
  CHECK(probs[2] == -1e9f);
  CHECK(probs[3] == -1e9f);
  CHECK(probs[6] == -1e9f);
  // The garbage slots hold weight -1e9 and ARE dispatched (combine != 0); the zero fillers are not.
  const Tensor& combine = step(trace, "combine_tensor");
  CHECK(f_at(combine, {0, 0, 0, 2}) == -1e9f);
  CHECK(f_at(combine, {0, 1, 1, 3}) == -1e9f);
  CHECK(i_at(step(trace, "dispatch_tensor"), {0, 0, 1, 2}) == 1);
  CHECK(i_at(step(trace, "dispatch_tensor"), {0, 0, 1, 0}) == 0);
  check_dispatch_from_combine(trace);
  SECTION("C = 5 > S = 4: TopKOperation raises ValueError, moeref refuses naming dims.C") {
    CHECK_THROWS_WITH(run_json(variant_config("mtf_switch_max", 1, 4, 2, std::vector<float>(8, 0.0f),
                                              with_capacity(kArgmaxEval, 5), false)),
                      Catch::Contains("dims.C") && Catch::Contains("ValueError"));
  }
  SECTION("C = 5 <= S = 6 runs (tf.math.top_k path)") {
    const Trace fine = run_json(
        variant_config("mtf_switch_max", 1, 6, 2, std::vector<float>(12, 0.0f), with_capacity(kArgmaxEval, 5), false));
    CHECK(ints(fine, "expert_gate_indices") == std::vector<int32_t>{0, 1, 2, 3, 4, 0, 1, 2, 3, 4});
  }
}

TEST_CASE("mtf_switch_max invariants: each expert keeps its top-C gates, best first", "[mtf_switch_max][invariants]") {
  for (int seed : {1, 2, 3, 4}) {
    for (bool train : {true, false}) {
      INFO("seed " << seed << ", train " << train);
      json config = {{"variant", "mtf_switch_max"},
                     {"scope", "layer"},
                     {"train", train},
                     {"seed", seed},
                     {"dims", {{"G", 2}, {"S", 10}, {"E", 3}, {"M", 5}, {"H", 4}}},
                     {"hparams", {{"min_expert_capacity", 0}, {"switch_policy_eval", "argmax"}}}};
      config["inputs"]["importance"] = tensor_json({"G", "S"}, {2, 10}, ones(20));
      const Trace trace = run_json(config);
      check_routing_invariants(trace);
      check_dispatch_from_combine(trace);
      const Tensor& probs = step(trace, "expert_gate_probs");
      const Tensor& masked = step(trace, "expert_masked_probs");
      const Tensor& indices = step(trace, "expert_gate_indices");
      const int64_t G = probs.shape[0], E = probs.shape[1], C = probs.shape[2], S = masked.shape[1];
      for (int64_t g = 0; g < G; ++g) {
        for (int64_t e = 0; e < E; ++e) {
          for (int64_t c = 0; c < C; ++c) {
            // Descending, and each value is the chosen token's masked probability.
            if (c > 0) CHECK(f_at(probs, {g, e, c}) <= f_at(probs, {g, e, c - 1}));
            CHECK(f_at(probs, {g, e, c}) == f_at(masked, {g, i_at(indices, {g, e, c}), e}));
          }
          // No token left out beats the weakest kept one.
          for (int64_t s = 0; s < S; ++s) {
            bool kept = false;
            for (int64_t c = 0; c < C; ++c) kept = kept || i_at(indices, {g, e, c}) == s;
            if (!kept && C > 0) CHECK(f_at(masked, {g, s, e}) <= f_at(probs, {g, e, C - 1}));
          }
        }
      }
    }
  }
}
