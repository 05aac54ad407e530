// mtf_switch: hand-derived cases of _switch_gating (tensorflow/mesh,
// mesh_tensorflow/transformer/moe.py at da90793) inside transformer_moe_layer_v1.
//
// Dims: G groups, S group size, E experts, C expert capacity, M model dim.
// Logits are log(p) of hand-picked probabilities, or small integers where the
// softmax is easy to state; expected values are derived in the comments.
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "moeref/error.hpp"
#include "mtf_switch_test_helpers.hpp"
#include "test_support.hpp"

using namespace moeref::testing::mtf;

namespace {

const json kArgmaxEval = {{"switch_policy_eval", "argmax"}};
const json kArgmaxTrain = {{"switch_policy_train", "argmax"}};

}  // namespace

// ---- Routing: top-1, token order, capacity ------------------------------------------

TEST_CASE("mtf_switch argmax: top-1 expert, raw probability as weight, tokens past capacity dropped",
          "[mtf_switch][routing]") {
  // G = 1, S = 4, E = 2, C = 2 (expert_capacity). Probabilities:
  //   t0 (0.7, 0.3) -> e0;  t1 (0.2, 0.8) -> e1;  t2 (0.6, 0.4) -> e0;  t3 (0.9, 0.1) -> e0.
  // Expert 0 takes t0 at slot 0 and t2 at slot 1; t3 comes third (position 2 >= C): dropped.
  const std::vector<float> logits = log_probs({{0.7, 0.3}, {0.2, 0.8}, {0.6, 0.4}, {0.9, 0.1}});
  json hp = kArgmaxEval;
  hp["expert_capacity"] = 2;
  const Trace trace = run_json(variant_config("mtf_switch", 1, 4, 2, logits, hp, false));
  CHECK(ints(trace, "expert_index") == std::vector<int32_t>{0, 1, 0, 0});
  CHECK(ints(trace, "position_in_expert_flat") == std::vector<int32_t>{0, 0, 1, 2});
  CHECK(ints(trace, "expert_mask_flat") == std::vector<int32_t>{1, 1, 1, 0});
  const Tensor& raw_gates = step(trace, "raw_gates");
  // The weight is the raw probability itself, bit for bit: never renormalised.
  CHECK(f_at(step(trace, "combine_tensor"), {0, 0, 0, 0}) == f_at(raw_gates, {0, 0, 0}));
  CHECK(f_at(step(trace, "combine_tensor"), {0, 1, 1, 0}) == f_at(raw_gates, {0, 1, 1}));
  check_token_slots(trace, 0, 0, {{0, 0, 0.7}});
  check_token_slots(trace, 0, 1, {{1, 0, 0.8}});
  check_token_slots(trace, 0, 2, {{0, 1, 0.6}});
  check_token_slots(trace, 0, 3, {});  // over capacity: no slot at all
  CHECK(f_at(step(trace, "expert_gate_capacity"), {0, 3}) == 0.0f);
  // Index form: one rank; the dropped token has slot -1 and weight 0.
  CHECK(ints(trace, "routing_expert") == std::vector<int32_t>{0, 1, 0, 0});
  CHECK(ints(trace, "routing_slot") == std::vector<int32_t>{0, 0, 1, -1});
  // Eval: no summaries, no z-loss.
  CHECK(trace.find_step("fraction_routed") == nullptr);
  CHECK(trace.find_step("batch_entropy") == nullptr);
  check_routing_invariants(trace);
}

TEST_CASE("mtf_switch: a token over capacity gets exactly zero layer output", "[mtf_switch][layer]") {
  // Layer scope with supplied logits: every token prefers expert 0, C = 1, so only t0 is
  // served; outputs of t1..t3 are 0 exactly (the residual is outside the layer).
  json config = variant_config("mtf_switch", 1, 4, 2, {3, 0, 2, 0, 1, 0, 4, 0}, kArgmaxEval, false);
  config["scope"] = "layer";
  config["dims"]["M"] = 3;
  config["dims"]["H"] = 5;
  config["hparams"]["expert_capacity"] = 1;
  const Trace trace = run_json(config);
  const Tensor& outputs = step(trace, "outputs");
  bool served_is_nonzero = false;
  for (int64_t n = 0; n < 3; ++n) served_is_nonzero = served_is_nonzero || f_at(outputs, {0, 0, n}) != 0.0f;
  CHECK(served_is_nonzero);
  for (int64_t s = 1; s < 4; ++s) {
    for (int64_t n = 0; n < 3; ++n) CHECK(f_at(outputs, {0, s, n}) == 0.0f);
  }
  // Expert 0's slot 0 holds t0's input, unchanged.
  const Tensor& expert_inputs = step(trace, "expert_inputs");
  const Tensor& inputs = step(trace, "inputs");
  for (int64_t m = 0; m < 3; ++m) CHECK(f_at(expert_inputs, {0, 0, 0, m}) == f_at(inputs, {0, 0, m}));
}

TEST_CASE("mtf_switch ties, E = 1, C = 0, C > S", "[mtf_switch][edges]") {
  SECTION("equal logits: every token takes the lowest expert index, then token order decides") {
    json hp = kArgmaxEval;
    hp["expert_capacity"] = 2;
    const Trace trace = run_json(variant_config("mtf_switch", 1, 3, 3, std::vector<float>(9, 0.5f), hp, false));
    CHECK(ints(trace, "expert_index") == std::vector<int32_t>{0, 0, 0});
    CHECK(ints(trace, "expert_mask_flat") == std::vector<int32_t>{1, 1, 0});
    // softmax of three equal logits: exp(0.5 - (log 3 + 0.5)) = 1/3 in float32 arithmetic.
    CHECK(f_at(step(trace, "expert_gate"), {0, 0}) == Approx(1.0 / 3.0).epsilon(1e-6));
  }
  SECTION("E = 1: gates are 1, the first C tokens are kept, loss is 1") {
    json hp = kArgmaxEval;
    hp["expert_capacity"] = 3;
    const Trace trace = run_json(variant_config("mtf_switch", 1, 4, 1, {0.3f, -2.0f, 7.0f, 1.0f}, hp, false));
    CHECK(floats(trace, "expert_gate") == std::vector<float>{1, 1, 1, 1});
    CHECK(ints(trace, "expert_mask_flat") == std::vector<int32_t>{1, 1, 1, 0});
    // density_1 = density_1_proxy = 4 * f32(1/4) = 1; loss = (1 * 1) * f32(1/1) * f32(1) = 1.
    CHECK(loss(trace, "gating_loss") == 1.0f);
  }
  SECTION("C = 0: nothing is routed, the loss is unchanged") {
    json hp = kArgmaxEval;
    const std::vector<float> logits = log_probs({{0.7, 0.3}, {0.2, 0.8}});
    const Trace with_slots = run_json(variant_config("mtf_switch", 1, 2, 2, logits, hp, false));
    hp["expert_capacity"] = 0;
    const Trace trace = run_json(variant_config("mtf_switch", 1, 2, 2, logits, hp, false));
    CHECK(step(trace, "combine_tensor").shape == std::vector<int64_t>{1, 2, 2, 0});
    CHECK(ints(trace, "expert_mask_flat") == std::vector<int32_t>{0, 0});
    CHECK(ints(trace, "routing_slot") == std::vector<int32_t>{-1, -1});
    CHECK(loss(trace, "gating_loss") == loss(with_slots, "gating_loss"));
  }
  SECTION("C > S: min_expert_capacity 4 with S = 2; nothing is dropped") {
    const Trace trace =
        run_json(variant_config("mtf_switch", 1, 2, 2, log_probs({{0.7, 0.3}, {0.6, 0.4}}), kArgmaxEval, false));
    CHECK(trace.config["dims"]["C"] == 4);
    CHECK(ints(trace, "expert_mask_flat") == std::vector<int32_t>{1, 1});
    check_token_slots(trace, 0, 1, {{0, 1, 0.6}});
  }
}

// ---- Load-balancing loss, importance, summaries ---------------------------------------

TEST_CASE("mtf_switch aux loss: densities include padding, then each group is scaled by its important fraction",
          "[mtf_switch][loss]") {
  // G = 1, S = 4, E = 2, train, argmax. p: t0 (0.8, 0.2), t1 (0.3, 0.7), t2 (0.6, 0.4), t3 (0.1, 0.9).
  // expert_index = (0, 1, 0, 1): density_1 = (2/4, 2/4) = (0.5, 0.5) with the padded t2, t3.
  // density_1_proxy = ((0.8 + 0.3 + 0.6 + 0.1) / 4, (0.2 + 0.7 + 0.4 + 0.9) / 4) = (0.45, 0.55).
  const std::vector<float> logits = log_probs({{0.8, 0.2}, {0.3, 0.7}, {0.6, 0.4}, {0.1, 0.9}});
  SECTION("importance (1, 1, 0, 0.5): a = (1, 1, 0, 0), proxy gains S, loss = 4 * (2 * 0.5) / (2 * 4) = 0.5") {
    const Trace trace = run_json(variant_config("mtf_switch", 1, 4, 2, logits, kArgmaxTrain, true, {1, 1, 0, 0.5f}));
    CHECK(floats(trace, "density_1") == std::vector<float>{0.5f, 0.5f});
    CHECK(f_at(step(trace, "density_1_proxy"), {0, 0}) == Approx(0.45).epsilon(1e-6));
    CHECK(step(trace, "density_1_proxy_important").shape == std::vector<int64_t>{1, 2, 4});
    CHECK(f_at(step(trace, "density_1_proxy_important"), {0, 1, 2}) == 0.0f);
    CHECK(f_at(step(trace, "density_1_proxy_important"), {0, 1, 1}) == f_at(step(trace, "density_1_proxy"), {0, 1}));
    // E^2 * (1/(G*E*S)) * sum_{e,s} P_e a_s f_e = 4 * (1/8) * 2 * (0.45 * 0.5 + 0.55 * 0.5) = 0.5.
    CHECK(loss(trace, "gating_loss") == Approx(0.5).epsilon(1e-6));
    CHECK(loss(trace, "loss") == Approx(0.5 * 0.01).epsilon(1e-6));
    // The padded and half-important tokens are not routed.
    CHECK(ints(trace, "expert_mask_flat") == std::vector<int32_t>{1, 1, 0, 0});
    // Summaries: expert_gate before importance (0.8 + 0.7 + 0.6 + 0.9) / 4 = 0.75; mask counts
    // after importance (1, 1); fraction_routed = 2 / (1 + 1 + 0 + 0.5) = 0.8; aux_loss = loss.
    CHECK(step(trace, "expert_gate_summary").f32[0] == Approx(0.75).epsilon(1e-6));
    CHECK(ints(trace, "mask_count_experts") == std::vector<int32_t>{1, 1});
    CHECK(floats(trace, "expert_fraction") == std::vector<float>{0.5f, 0.5f});
    CHECK(step(trace, "fraction_routed").f32[0] == f32(2.0) * (1.0f / 2.5f));
    CHECK(step(trace, "aux_loss").f32[0] == step(trace, "load_balancing_loss").f32[0]);
    // entropy per token: -(p log p + q log q), mean over the 4 tokens.
    double want = 0.0;
    for (double p : {0.8, 0.3, 0.6, 0.1}) want += -(p * std::log(p) + (1 - p) * std::log(1 - p));
    CHECK(step(trace, "batch_entropy").f32[0] == Approx(want / 4).epsilon(1e-5));
  }
  SECTION("importance all ones: the plain E^2 * mean(P * f) = 4 * (0.45 * 0.5 + 0.55 * 0.5) / 2 = 1") {
    const Trace trace = run_json(variant_config("mtf_switch", 1, 4, 2, logits, kArgmaxTrain, true, ones(4)));
    CHECK(loss(trace, "gating_loss") == Approx(1.0).epsilon(1e-6));
    CHECK(step(trace, "fraction_routed").f32[0] == 1.0f);
  }
  SECTION("num_microbatches 4: loss * f32(1/4)") {
    json hp = kArgmaxTrain;
    hp["num_microbatches"] = 4;
    const Trace trace = run_json(variant_config("mtf_switch", 1, 4, 2, logits, hp, true, ones(4)));
    CHECK(step(trace, "load_balancing_loss_microbatches").f32[0] == step(trace, "load_balancing_loss").f32[0] * 0.25f);
    CHECK(loss(trace, "gating_loss") == Approx(0.25).epsilon(1e-6));
  }
  SECTION("all tokens padded: no routing, loss 0, fraction_routed = 0/0 = NaN") {
    const Trace trace = run_json(variant_config("mtf_switch", 1, 4, 2, logits, kArgmaxTrain, true, {0, 0, 0, 0}));
    CHECK(loss(trace, "gating_loss") == 0.0f);
    CHECK(std::isnan(step(trace, "fraction_routed").f32[0]));
    CHECK(std::isnan(step(trace, "expert_fraction").f32[0]));
    for (float w : floats(trace, "combine_tensor")) CHECK(w == 0.0f);
  }
}

TEST_CASE("mtf_switch z-loss: batch-global mean of logsumexp^2 over important tokens, training only",
          "[mtf_switch][loss][z_loss]") {
  // G = 2, S = 2, E = 2. Logits: g0 t0 (0, 0), g0 t1 (1, 1), g1 t0 (2, 0), g1 t1 (5, 5) padded.
  // log_z: log 2, 1 + log 2, 2 + log(1 + e^-2). The mean runs over the 3 important tokens of the
  // whole batch (not per group): z_loss = sum / (3 * num_microbatches).
  const std::vector<float> logits = {0, 0, 1, 1, 2, 0, 5, 5};
  const std::vector<float> importance = {1, 1, 1, 0};
  json hp = kArgmaxTrain;
  hp["z_loss"] = 0.1;
  const double l0 = std::log(2.0), l1 = 1 + std::log(2.0), l2 = 2 + std::log1p(std::exp(-2.0));
  const double z = (l0 * l0 + l1 * l1 + l2 * l2) / 3.0;
  const Trace trace = run_json(variant_config("mtf_switch", 2, 2, 2, logits, hp, true, importance));
  CHECK(f_at(step(trace, "log_z"), {1, 0}) == Approx(l2).epsilon(1e-6));
  CHECK(f_at(step(trace, "z_loss_important"), {1, 1}) == 0.0f);
  CHECK(step(trace, "z_loss_denom").i32[0] == 3);
  CHECK(step(trace, "z_loss").f32[0] == Approx(z).epsilon(1e-6));
  const float balance = step(trace, "load_balancing_loss").f32[0];
  CHECK(loss(trace, "gating_loss") == balance + step(trace, "z_loss").f32[0] * f32(0.1));
  SECTION("num_microbatches 2 halves both") {
    hp["num_microbatches"] = 2;
    const Trace halved = run_json(variant_config("mtf_switch", 2, 2, 2, logits, hp, true, importance));
    CHECK(step(halved, "z_loss").f32[0] == Approx(z / 2).epsilon(1e-6));
  }
  SECTION("eval: no z-loss") {
    json eval_hp = hp;
    eval_hp["switch_policy_eval"] = "argmax";
    const Trace eval = run_json(variant_config("mtf_switch", 2, 2, 2, logits, eval_hp, false, importance));
    CHECK(eval.find_step("z_loss") == nullptr);
    CHECK(loss(eval, "gating_loss") == step(eval, "load_balancing_loss").f32[0]);
  }
  SECTION("no important token: z_loss = 0 * reciprocal(0) = NaN, and so is the loss") {
    const Trace nan = run_json(variant_config("mtf_switch", 2, 2, 2, logits, hp, true, {0, 0, 0, 0}));
    CHECK(std::isnan(step(nan, "z_loss").f32[0]));
    CHECK(std::isnan(loss(nan, "gating_loss")));
  }
}

// ---- Refusals ------------------------------------------------------------------------

TEST_CASE("mtf_switch refuses what mtf raises on", "[mtf_switch][errors]") {
  const std::vector<float> logits = {0, 1, 1, 0};
  SECTION("training without importance (fraction_routed reads it)") {
    try {
      run_json(variant_config("mtf_switch", 1, 2, 2, logits, kArgmaxTrain, true));
      FAIL("expected an InputError");
    } catch (const moeref::InputError& error) {
      const std::string message = error.what();
      CHECK(message.find("inputs.importance") != std::string::npos);
      CHECK(message.find("fraction_routed") != std::string::npos);
    }
  }
  SECTION("z_loss with num_microbatches null (denom * None)") {
    json hp = kArgmaxTrain;
    hp["z_loss"] = 0.01;
    hp["num_microbatches"] = nullptr;
    CHECK_THROWS_WITH(run_json(variant_config("mtf_switch", 1, 2, 2, logits, hp, true, ones(2))),
                      Catch::Contains("hparams.num_microbatches") && Catch::Contains("TypeError"));
  }
  SECTION("eval without importance runs") {
    CHECK_NOTHROW(run_json(variant_config("mtf_switch", 1, 2, 2, logits, kArgmaxEval, false)));
  }
}
