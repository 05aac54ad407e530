// mtf_top2: second-expert policies, renormalisation before capacity, and slot positions.
//
// Source: tensorflow/mesh, mesh_tensorflow/transformer/moe.py, `_top_2_gating`.
// Dims: G groups, S group size, E experts, C expert capacity.
//
// Every case supplies its logits as log(p) for hand-picked probabilities p, so the
// mtf softmax gives back p up to a few float32 ulps and every expected gate is
// derived by hand below (checked with a relative tolerance of 1e-5, far above the
// float32 rounding and far below the gaps between the values being told apart).
#include <cmath>
#include <cstdint>
#include <initializer_list>
#include <limits>
#include <string>
#include <vector>

#include "moeref/error.hpp"
#include "mtf_top2_test_helpers.hpp"
#include "test_support.hpp"

// run_json, step, tensor_json, ints, log_probs, gating_config, f_at, i_at, check_token_slots.
using namespace moeref::testing::mtf;

namespace {

// Two tokens, E = 3, C = 4 (no capacity drops):
//   T0: p = [0.5, 0.3, 0.2]   -> index_1 = 0, index_2 = 1, gate_1_n = 0.5/0.8 = 0.625, gate_2_n = 0.3/0.8 = 0.375
//   T1: p = [0.9, 0.06, 0.04] -> index_1 = 0, index_2 = 1, gate_1_n = 0.9/0.96 = 0.9375, gate_2_n = 0.06/0.96 = 0.0625
// First choices both go to expert 0: T0 slot 0, T1 slot 1. mask_1_count = [2, 0, 0],
// so kept second choices queue in expert 1 from slot 0 in token order.
const std::vector<float> kTwoTokens = log_probs({{0.5, 0.3, 0.2}, {0.9, 0.06, 0.04}});

json two_token_config(const json& hparams, bool train = true) {
  json hp = hparams;
  hp["expert_capacity"] = 4;
  return gating_config(1, 2, 3, kTwoTokens, hp, train);
}

// Two tokens with logits [0, 0] (E = 2): raw gates are exactly 0.5 each (exp(-f32(ln 2))
// is 0.5 * (1 - 1.9e-9), within half an ulp of 0.5), the tie gives index_1 = 0 and
// index_2 = 1, denom = f32(1 + 1e-9) = 1, so gate_2_normalized = 0.5 exactly.
json tie_config(const json& hparams) {
  json hp = hparams;
  hp["expert_capacity"] = 4;
  return gating_config(1, 2, 2, {0.0f, 0.0f, 0.0f, 0.0f}, hp);
}

json uniform_input(int64_t G, int64_t S, const std::vector<float>& values) {
  return tensor_json({"G", "S"}, {G, S}, values);
}

}  // namespace

// ---- The four policies -------------------------------------------------------------

TEST_CASE("mtf_top2 policy all keeps every second choice", "[mtf_top2][policy]") {
  // _top_2_gating: `if policy == "all": pass` -- mask_2 unchanged.
  const Trace trace = run_json(two_token_config({{"second_policy_train", "all"}}));
  CHECK(ints(trace, "index_1") == std::vector<int32_t>{0, 0});
  CHECK(ints(trace, "index_2") == std::vector<int32_t>{1, 1});
  CHECK(ints(trace, "mask_2_policy") == ints(trace, "mask_2"));
  // second_policy_keep exists only for threshold and random.
  CHECK(trace.find_step("second_policy_keep") == nullptr);
  check_token_slots(trace, 0, 0, {{0, 0, 0.625}, {1, 0, 0.375}});
  check_token_slots(trace, 0, 1, {{0, 1, 0.9375}, {1, 1, 0.0625}});
}

TEST_CASE("mtf_top2 policy none drops every second choice but keeps the renormalised gate_1",
          "[mtf_top2][policy][renormalize]") {
  // _top_2_gating: `elif policy == "none": mask_2 = mtf.zeros_like(mask_2)`. The
  // renormalisation `gate_1 /= denom` happened before the policy, so gate_1 stays
  // g1 / (g1 + g2 + 1e-9) < 1 even though the second expert is never used.
  const Trace trace = run_json(two_token_config({{"second_policy_train", "none"}}));
  CHECK(ints(trace, "mask_2_policy") == std::vector<int32_t>(6, 0));
  CHECK(ints(trace, "mask_2_flat") == std::vector<int32_t>{0, 0});
  check_token_slots(trace, 0, 0, {{0, 0, 0.625}});
  check_token_slots(trace, 0, 1, {{0, 1, 0.9375}});
}

TEST_CASE("mtf_top2 policy threshold keeps gate_2 above the threshold", "[mtf_top2][policy]") {
  // _top_2_gating: `mask_2 *= mtf.to_float(mtf.greater(gate_2, threshold))`, gate_2 normalised.
  // Threshold 0.2: T0 (0.375) kept, T1 (0.0625) dropped.
  const Trace trace =
      run_json(two_token_config({{"second_policy_train", "threshold"}, {"second_threshold_train", 0.2}}));
  CHECK(ints(trace, "second_policy_keep") == std::vector<int32_t>{1, 0});
  check_token_slots(trace, 0, 0, {{0, 0, 0.625}, {1, 0, 0.375}});
  check_token_slots(trace, 0, 1, {{0, 1, 0.9375}});
  // No draw is taken for a deterministic policy.
  CHECK(trace.find_input("second_policy_uniform") == nullptr);
}

TEST_CASE("mtf_top2 policy threshold is a strict comparison against f32(threshold)", "[mtf_top2][policy][boundary]") {
  // mtf.greater(gate_2, threshold): strict; the Python threshold becomes a float32
  // constant (binary_arguments_to_tensors: tf.convert_to_tensor(x2, dtype=x1.dtype)).
  // gate_2_normalized is exactly 0.5 here (see tie_config).
  {
    const Trace trace = run_json(tie_config({{"second_policy_train", "threshold"}, {"second_threshold_train", 0.5}}));
    REQUIRE(step(trace, "gate_2_normalized").f32 == std::vector<float>{0.5f, 0.5f});
    CHECK(ints(trace, "second_policy_keep") == std::vector<int32_t>{0, 0});
    CHECK(ints(trace, "mask_2_flat") == std::vector<int32_t>{0, 0});
  }
  {
    const Trace trace = run_json(tie_config({{"second_policy_train", "threshold"}, {"second_threshold_train", 0.49}}));
    CHECK(ints(trace, "second_policy_keep") == std::vector<int32_t>{1, 1});
    // Both second choices go to expert 1 in token order: slots 0 and 1, weight 0.5.
    check_token_slots(trace, 0, 0, {{0, 0, 0.5}, {1, 0, 0.5}});
    check_token_slots(trace, 0, 1, {{0, 1, 0.5}, {1, 1, 0.5}});
  }
  {
    // 0.49999999999 is below 0.5 in double but rounds to 0.5f: 0.5 > 0.5f is false.
    const Trace trace =
        run_json(tie_config({{"second_policy_train", "threshold"}, {"second_threshold_train", 0.49999999999}}));
    CHECK(ints(trace, "second_policy_keep") == std::vector<int32_t>{0, 0});
  }
}

TEST_CASE("mtf_top2 policy random keeps U < gate_2 / threshold with the supplied draw", "[mtf_top2][policy][random]") {
  // _top_2_gating: mask_2 *= less(random_uniform, gate_2 / max(threshold, 1e-9)).
  // Threshold 0.5: scaled gates T0 0.375 / 0.5 = 0.75, T1 0.0625 / 0.5 = 0.125.
  json hp = {{"second_policy_train", "random"}, {"second_threshold_train", 0.5}};
  SECTION("U = [0.7, 0.2]: 0.7 < 0.75 keeps T0, 0.2 < 0.125 fails for T1") {
    json config = two_token_config(hp);
    config["inputs"]["second_policy_uniform"] = uniform_input(1, 2, {0.7f, 0.2f});
    const Trace trace = run_json(config);
    CHECK(ints(trace, "second_policy_keep") == std::vector<int32_t>{1, 0});
    check_token_slots(trace, 0, 0, {{0, 0, 0.625}, {1, 0, 0.375}});
    check_token_slots(trace, 0, 1, {{0, 1, 0.9375}});
    const Tensor* recorded = trace.find_input("second_policy_uniform");
    REQUIRE(recorded != nullptr);
    CHECK(recorded->f32 == std::vector<float>{0.7f, 0.2f});
  }
  SECTION("U = [0.8, 0.1]: T0 dropped, T1 kept and takes expert 1's first slot") {
    json config = two_token_config(hp);
    config["inputs"]["second_policy_uniform"] = uniform_input(1, 2, {0.8f, 0.1f});
    const Trace trace = run_json(config);
    CHECK(ints(trace, "second_policy_keep") == std::vector<int32_t>{0, 1});
    // T1's second choice: exclusive cumsum over the policy-filtered mask_2 of expert 1
    // is 0 (T0's was dropped by the policy), plus mask_1_count[1] = 0 -> slot 0.
    check_token_slots(trace, 0, 0, {{0, 0, 0.625}});
    check_token_slots(trace, 0, 1, {{0, 1, 0.9375}, {1, 0, 0.0625}});
  }
}

TEST_CASE("mtf_top2 policy random: a draw equal to the scaled gate is dropped",
          "[mtf_top2][policy][random][boundary]") {
  // mtf.less is strict. gate_2_normalized = 0.5 exactly (tie_config).
  SECTION("threshold 1: scale f32(1/1) = 1, so the bound is 0.5") {
    json config = tie_config({{"second_policy_train", "random"}, {"second_threshold_train", 1.0}});
    const float just_below = std::nextafter(0.5f, 0.0f);
    config["inputs"]["second_policy_uniform"] = uniform_input(1, 2, {0.5f, just_below});
    const Trace trace = run_json(config);
    CHECK(ints(trace, "second_policy_keep") == std::vector<int32_t>{0, 1});
    CHECK(ints(trace, "mask_2_flat") == std::vector<int32_t>{0, 1});
    // The kept second choice of T1 is the first second choice of expert 1: slot 0.
    check_token_slots(trace, 0, 1, {{0, 1, 0.5}, {1, 0, 0.5}});
  }
  SECTION("threshold 0.5: scale 2, bound 1.0, so every draw in [0, 1) keeps") {
    json config = tie_config({{"second_policy_train", "random"}, {"second_threshold_train", 0.5}});
    config["inputs"]["second_policy_uniform"] = uniform_input(1, 2, {0.5f, std::nextafter(1.0f, 0.0f)});
    const Trace trace = run_json(config);
    CHECK(ints(trace, "second_policy_keep") == std::vector<int32_t>{1, 1});
  }
}

TEST_CASE("mtf_top2 policy random with threshold 0 divides by max(0, 1e-9): a gate_2 below 1e-9 is dropped",
          "[mtf_top2][policy][random][boundary]") {
  // _top_2_gating: mask_2 *= less(random_uniform, gate_2 / mtf.maximum(threshold, 1e-9)).
  // Threshold 0 becomes 1e-9, so the scale is f32(1 / 1e-9) = 1e9, not infinity: a second
  // gate below 0.5e-9 scales to less than the draw U = 0.5 and is dropped.
  // Logits [0, x]: raw gates [f32(1 / (1 + e^x)) = 1, e^x]; denom = f32(1 + e^x + 1e-9) = 1,
  // so gate_2_normalized = f32(e^x).
  //   T0 x = -22: 2.79e-10 * 1e9 = 0.279 < 0.5: dropped. A floor of 5.6e-10 or less (1e-12,
  //               or none: 1 / 0 = inf) would scale it above 0.5 and keep it.
  //   T1 x = -20: 2.06e-9 * 1e9 = 2.06 > 0.5: kept. A floor of 4.2e-9 or more would drop it.
  //   T2 x = 0:   an ordinary tie, gate_2_normalized = 0.5 exactly (see tie_config): kept.
  json config =
      gating_config(1, 3, 2, {0.0f, -22.0f, 0.0f, -20.0f, 0.0f, 0.0f},
                    {{"second_policy_train", "random"}, {"second_threshold_train", 0.0}, {"expert_capacity", 4}});
  config["inputs"]["second_policy_uniform"] = uniform_input(1, 3, {0.5f, 0.5f, 0.5f});
  const Trace trace = run_json(config);
  const auto& gate_2_normalized = step(trace, "gate_2_normalized").f32;
  REQUIRE(gate_2_normalized.size() == 3);
  CHECK(static_cast<double>(gate_2_normalized[0]) == Approx(std::exp(-22.0)).epsilon(1e-5));
  CHECK(static_cast<double>(gate_2_normalized[1]) == Approx(std::exp(-20.0)).epsilon(1e-5));
  CHECK(gate_2_normalized[2] == 0.5f);
  REQUIRE(gate_2_normalized[0] > 0.0f);
  REQUIRE(gate_2_normalized[0] < 1e-9f);
  REQUIRE(gate_2_normalized[0] * static_cast<float>(1.0 / 1e-9) < 0.5f);
  REQUIRE(gate_2_normalized[1] * static_cast<float>(1.0 / 1e-9) > 0.5f);
  CHECK(ints(trace, "index_2") == std::vector<int32_t>{1, 1, 1});
  CHECK(ints(trace, "second_policy_keep") == std::vector<int32_t>{0, 1, 1});
  CHECK(ints(trace, "mask_2") == std::vector<int32_t>{0, 1, 0, 1, 0, 1});
  CHECK(ints(trace, "mask_2_policy") == std::vector<int32_t>{0, 0, 0, 1, 0, 1});
  // First choices fill expert 0 in token order; the kept second choices (T1, T2) fill expert 1.
  check_token_slots(trace, 0, 0, {{0, 0, 1.0}});
  check_token_slots(trace, 0, 1, {{0, 1, 1.0}, {1, 0, std::exp(-20.0)}});
  check_token_slots(trace, 0, 2, {{0, 2, 0.5}, {1, 1, 0.5}});
}

TEST_CASE("mtf_top2 random draws are recorded as second_policy_uniform and replay", "[mtf_top2][policy][random]") {
  // The draw is generated from the seed when not supplied, recorded as an input of
  // shape [G, S] in [0, 1), and supplying the recorded draw reproduces the decision.
  json hp = {{"second_policy_train", "random"}, {"second_threshold_train", 0.5}, {"expert_capacity", 4}};
  std::vector<float> logits;
  for (int i = 0; i < 8; ++i) {
    const std::vector<float> row = log_probs({{0.5, 0.3, 0.2}});
    logits.insert(logits.end(), row.begin(), row.end());
  }
  json config = gating_config(2, 4, 3, logits, hp);
  config["seed"] = 11;
  const Trace generated = run_json(config);
  const Tensor* draw = generated.find_input("second_policy_uniform");
  REQUIRE(draw != nullptr);
  CHECK(draw->dims == std::vector<std::string>{"G", "S"});
  CHECK(draw->shape == std::vector<int64_t>{2, 4});
  // Every token has scaled gate 0.375 / 0.5 = 0.75, so keep == (U < 0.75).
  const std::vector<int32_t> keep = ints(generated, "second_policy_keep");
  for (size_t k = 0; k < draw->f32.size(); ++k) {
    INFO("token " << k << " U=" << draw->f32[k]);
    CHECK(draw->f32[k] >= 0.0f);
    CHECK(draw->f32[k] < 1.0f);
    CHECK(keep[k] == (draw->f32[k] < 0.75f ? 1 : 0));
  }
  config["inputs"]["second_policy_uniform"] = tensor_json(draw->dims, draw->shape, draw->f32);
  config["seed"] = 99;
  const Trace replayed = run_json(config);
  CHECK(ints(replayed, "second_policy_keep") == keep);
  CHECK(step(replayed, "combine_tensor").f32 == step(generated, "combine_tensor").f32);
}

TEST_CASE("mtf_top2 records second_policy_uniform only for the random policy", "[mtf_top2][policy][random]") {
  // Only `policy == "random"` calls mtf.random_uniform in _top_2_gating.
  for (const char* policy : {"all", "none", "threshold"}) {
    INFO("policy " << policy);
    const Trace trace = run_json(two_token_config({{"second_policy_train", policy}}));
    CHECK(trace.find_input("second_policy_uniform") == nullptr);
  }
  const Trace random = run_json(two_token_config({{"second_policy_train", "random"}}));
  CHECK(random.find_input("second_policy_uniform") != nullptr);
  // moeref's boundary rule: a supplied input the run does not use is an error, so a
  // draw supplied for a deterministic policy is rejected rather than ignored.
  json config = two_token_config({{"second_policy_train", "all"}});
  config["inputs"]["second_policy_uniform"] = uniform_input(1, 2, {0.1f, 0.9f});
  CHECK_THROWS_AS(run_json(config), moeref::InputError);
}

// ---- train vs eval ----------------------------------------------------------------

TEST_CASE("mtf_top2 policy and threshold switch with train", "[mtf_top2][policy][train]") {
  // _top_2_gating: `if train: policy = moe_second_policy_train; threshold = ..._train`
  //                `else:     policy = moe_second_policy_eval;  threshold = ..._eval`.
  SECTION("policy: none when training, all in evaluation") {
    const json hp = {{"second_policy_train", "none"}, {"second_policy_eval", "all"}};
    const Trace train = run_json(two_token_config(hp, true));
    const Trace eval = run_json(two_token_config(hp, false));
    CHECK(ints(train, "mask_2_flat") == std::vector<int32_t>{0, 0});
    CHECK(ints(eval, "mask_2_flat") == std::vector<int32_t>{1, 1});
    CHECK(eval.config["train"] == false);
  }
  SECTION("threshold: 0.5 when training drops T0 (0.375), 0.1 in evaluation keeps it") {
    const json hp = {{"second_policy_train", "threshold"},
                     {"second_policy_eval", "threshold"},
                     {"second_threshold_train", 0.5},
                     {"second_threshold_eval", 0.1}};
    CHECK(ints(run_json(two_token_config(hp, true)), "second_policy_keep") == std::vector<int32_t>{0, 0});
    CHECK(ints(run_json(two_token_config(hp, false)), "second_policy_keep") == std::vector<int32_t>{1, 0});
  }
  SECTION("random threshold: 1.0 when training, 0.25 in evaluation, same draws U = 0.5") {
    // Training: scaled [0.375, 0.0625] -> both dropped. Evaluation: [1.5, 0.25] -> T0 kept.
    const json hp = {{"second_policy_train", "random"},
                     {"second_policy_eval", "random"},
                     {"second_threshold_train", 1.0},
                     {"second_threshold_eval", 0.25}};
    json train = two_token_config(hp, true);
    json eval = two_token_config(hp, false);
    train["inputs"]["second_policy_uniform"] = uniform_input(1, 2, {0.5f, 0.5f});
    eval["inputs"]["second_policy_uniform"] = uniform_input(1, 2, {0.5f, 0.5f});
    CHECK(ints(run_json(train), "second_policy_keep") == std::vector<int32_t>{0, 0});
    CHECK(ints(run_json(eval), "second_policy_keep") == std::vector<int32_t>{1, 0});
  }
  SECTION("the draw is taken only in the mode whose policy is random") {
    const json hp = {{"second_policy_train", "random"}, {"second_policy_eval", "all"}};
    CHECK(run_json(two_token_config(hp, true)).find_input("second_policy_uniform") != nullptr);
    CHECK(run_json(two_token_config(hp, false)).find_input("second_policy_uniform") == nullptr);
  }
}

// ---- Renormalisation before capacity -----------------------------------------------

TEST_CASE("mtf_top2 a token whose second choice is dropped by capacity keeps gate_1 < 1",
          "[mtf_top2][renormalize][capacity]") {
  // _top_2_gating renormalises (`gate_1 /= denom`, denom = gate_1 + gate_2 + 1e-9) BEFORE
  // the capacity masks, and never again: a token that loses its second expert to
  // capacity keeps gate_1 = g1 / (g1 + g2 + 1e-9), the combine row sums to it, not to 1.
  // T0: p = [0.5, 0.3, 0.2] (first e0, second e1); T1: p = [0.3, 0.5, 0.2] (first e1, second e0).
  // C = 1: T0 takes e0 slot 0, T1 takes e1 slot 0, mask_1_count = [1, 1, 0]; the second
  // choices queue behind them at position 0 + 1 = 1 >= C and are dropped.
  const std::vector<double> p0 = {0.5, 0.3, 0.2};
  const std::vector<double> p1 = {0.3, 0.5, 0.2};
  const Trace trace =
      run_json(gating_config(1, 2, 3, log_probs({p0, p1}), {{"second_policy_train", "all"}, {"expert_capacity", 1}}));
  CHECK(ints(trace, "mask_1_count") == std::vector<int32_t>{1, 1, 0});
  CHECK(ints(trace, "position_in_expert_2_flat") == std::vector<int32_t>{1, 1});
  CHECK(ints(trace, "mask_2_flat") == std::vector<int32_t>{0, 0});
  // Expected weight in double from the formula: 0.5 / (0.5 + 0.3 + 1e-9) = 0.625.
  const double expected = 0.5 / (0.5 + 0.3 + 1e-9);
  check_token_slots(trace, 0, 0, {{0, 0, expected}});
  check_token_slots(trace, 0, 1, {{1, 0, expected}});
  CHECK(step(trace, "gate_1_capacity").f32[0] < 1.0f);
  CHECK(step(trace, "gate_2_capacity").f32 == std::vector<float>{0.0f, 0.0f});
}

// ---- Positions --------------------------------------------------------------------

TEST_CASE("mtf_top2 positions: first choices in token order, second choices after all kept first choices",
          "[mtf_top2][positions][capacity]") {
  // _top_2_gating:
  //   position_in_expert_1 = cumsum(mask_1, exclusive) * mask_1; mask_1 *= (position < C)
  //   mask_1_count = reduce_sum(mask_1, group)                      (kept first choices)
  //   position_in_expert_2 = (cumsum(mask_2, exclusive) + mask_1_count) * mask_2
  //   position_in_expert_1/2 (flat) = reduce_sum over experts: the PRE-drop positions.
  // S = 5, E = 2, C = 3, policy all. "a/b" = first expert / second expert:
  //   t0 0/1 (p = [0.7, 0.3]), t1 1/0 (p = [0.3, 0.7]), t2 0/1, t3 0/1, t4 0/1.
  // First choices, expert 0: t0 -> 0, t2 -> 1, t3 -> 2, t4 -> 3 (>= C, dropped);
  //                expert 1: t1 -> 0.                       mask_1_count = [3, 1].
  // Second choices, expert 1 (t0, t2, t3, t4): exclusive cumsum 0, 1, 2, 3 plus 1
  //   -> 1, 2, 3 (dropped), 4 (dropped); t4's second choice still counts in the cumsum
  //   although its first choice was dropped.
  // Second choice of t1, expert 0: 0 + 3 = 3 (dropped): it queues behind t2 and t3,
  //   first choices of LATER tokens.
  const std::vector<double> a = {0.7, 0.3}, b = {0.3, 0.7};
  const Trace trace = run_json(
      gating_config(1, 5, 2, log_probs({a, b, a, a, a}), {{"second_policy_train", "all"}, {"expert_capacity", 3}}));
  CHECK(ints(trace, "position_in_expert_1_flat") == std::vector<int32_t>{0, 0, 1, 2, 3});
  CHECK(ints(trace, "mask_1_flat") == std::vector<int32_t>{1, 1, 1, 1, 0});
  CHECK(ints(trace, "mask_1_count") == std::vector<int32_t>{3, 1});
  CHECK(ints(trace, "position_in_expert_2_flat") == std::vector<int32_t>{1, 3, 2, 3, 4});
  CHECK(ints(trace, "mask_2_flat") == std::vector<int32_t>{1, 0, 1, 0, 0});
  // Gates: 0.7 / (1 + 1e-9) and 0.3 / (1 + 1e-9).
  check_token_slots(trace, 0, 0, {{0, 0, 0.7}, {1, 1, 0.3}});
  check_token_slots(trace, 0, 1, {{1, 0, 0.7}});
  check_token_slots(trace, 0, 2, {{0, 1, 0.7}, {1, 2, 0.3}});
  check_token_slots(trace, 0, 3, {{0, 2, 0.7}});
  check_token_slots(trace, 0, 4, {});  // dropped everywhere: an all-zero row
}

TEST_CASE("mtf_top2 positions: an earlier token's second choice lands behind later first choices",
          "[mtf_top2][positions]") {
  // S = 3, E = 2, C = 3, policy all:
  //   t0 1/0 (p = [0.3, 0.7]), t1 0/1, t2 0/1 (p = [0.7, 0.3]).
  // Expert 0 first choices: t1 -> 0, t2 -> 1; mask_1_count = [2, 1].
  // t0's second choice (expert 0): 0 + 2 = 2, although t0 precedes t1 and t2.
  // Expert 1 second choices t1, t2: cumsum 0, 1 plus mask_1_count[1] = 1 -> 1, 2.
  const std::vector<double> a = {0.7, 0.3}, b = {0.3, 0.7};
  const Trace trace =
      run_json(gating_config(1, 3, 2, log_probs({b, a, a}), {{"second_policy_train", "all"}, {"expert_capacity", 3}}));
  CHECK(ints(trace, "position_in_expert_1_flat") == std::vector<int32_t>{0, 0, 1});
  CHECK(ints(trace, "position_in_expert_2_flat") == std::vector<int32_t>{2, 1, 2});
  check_token_slots(trace, 0, 0, {{1, 0, 0.7}, {0, 2, 0.3}});
  check_token_slots(trace, 0, 1, {{0, 0, 0.7}, {1, 1, 0.3}});
  check_token_slots(trace, 0, 2, {{0, 1, 0.7}, {1, 2, 0.3}});
}

TEST_CASE("mtf_top2 positions are counted per group", "[mtf_top2][positions][groups]") {
  // cumsum runs along the group dim only: G = 2 groups of S = 2 tokens, all first
  // choices on expert 0 and C = 1. Each group's first token takes slot 0 and each
  // group's second token is dropped (position 1).
  const std::vector<double> a = {0.7, 0.3};
  const Trace trace = run_json(
      gating_config(2, 2, 2, log_probs({a, a, a, a}), {{"second_policy_train", "none"}, {"expert_capacity", 1}}));
  CHECK(ints(trace, "position_in_expert_1_flat") == std::vector<int32_t>{0, 1, 0, 1});
  CHECK(ints(trace, "mask_1_flat") == std::vector<int32_t>{1, 0, 1, 0});
  check_token_slots(trace, 0, 0, {{0, 0, 0.7}});
  check_token_slots(trace, 0, 1, {});
  check_token_slots(trace, 1, 0, {{0, 0, 0.7}});
  check_token_slots(trace, 1, 1, {});
}
