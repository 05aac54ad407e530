// praxis_top2 as a whole layer (TransformerFeedForwardMoe, google/praxis,
// praxis/layers/transformers.py at feeaff1) and invariants of top2_gating_on_logits
// (praxis/gshard_utils.py) over many generated inputs.
#include <cmath>
#include <vector>

#include "test_support.hpp"

using moeref::testing::loss;
using moeref::testing::run_json;
using moeref::testing::step;
using moeref::testing::tensor_json;

TEST_CASE("layer: B, L grouped by num_groups, summaries, padding applied to the outputs", "[praxis_top2][layer]") {
  // B=2, L=3, num_groups 2 -> G=2, S=3 (6 / 2 = 3 is not below min_group_size null).
  // paddings [[0, 0.5, 1], [0, 0, 0]].
  const nlohmann::json config = {{"variant", "praxis_top2"},
                                 {"seed", 5},
                                 {"dims", {{"B", 2}, {"L", 3}, {"E", 3}, {"M", 4}, {"H", 6}}},
                                 {"hparams", {{"num_groups", 2}, {"moe_load_balance_loss_weight", 0.5}}},
                                 {"inputs", {{"paddings", tensor_json({"B", "L"}, {2, 3}, {0, 0.5f, 1, 0, 0, 0})}}}};
  const moeref::Trace trace = run_json(config);
  CHECK(trace.config["dims"]["G"] == 2);
  CHECK(trace.config["dims"]["S"] == 3);
  CHECK(trace.config["dims"]["N"] == 4);
  // C: auto = int(3 * 2.0 / 3) = 2 > 0 -> roundup4 = 4.
  CHECK(trace.capacity["expert_capacity"] == 4);
  // The loss weight: aux_moe_load_balance_loss = aux_loss * f32(0.5).
  CHECK(loss(trace, "aux_moe_load_balance_loss") == loss(trace, "aux_loss") * 0.5f);
  // Summaries: dispatch_k / (dispatch_0 + dispatch_1 + dispatch_2) as float32.
  const int32_t d0 = step(trace, "dispatch_0").i32.at(0), d1 = step(trace, "dispatch_1").i32.at(0),
                d2 = step(trace, "dispatch_2").i32.at(0);
  const float denom = static_cast<float>(d0 + d1 + d2);
  CHECK(step(trace, "summary_dispatch_1").f32.at(0) == static_cast<float>(d1) / denom);
  CHECK(step(trace, "summary_dispatch_2").f32.at(0) == static_cast<float>(d2) / denom);
  // One fully padded token out of 6: d0 + d1 + d2 = 6 - 1.
  CHECK(d0 + d1 + d2 == 5);
  // outputs *= (1 - paddings): token (0, 1) halved, token (0, 2) zero (it was never dispatched).
  const moeref::Tensor& outputs = step(trace, "outputs");
  const moeref::Tensor& padded = step(trace, "outputs_nonpadding");
  for (int64_t n = 0; n < 4; ++n) {
    CHECK(padded.f32.at(static_cast<size_t>(0 * 4 + n)) == outputs.f32.at(static_cast<size_t>(0 * 4 + n)));
    CHECK(padded.f32.at(static_cast<size_t>(1 * 4 + n)) == outputs.f32.at(static_cast<size_t>(1 * 4 + n)) * 0.5f);
    CHECK(outputs.f32.at(static_cast<size_t>(2 * 4 + n)) == 0.0f);
  }
  // The half-padded token is routed by its second choice only (first choice truncated away).
  CHECK(step(trace, "mask_1_flat").i32.at(1) == 0);
  CHECK(step(trace, "mask_2_flat").i32.at(1) == 1);
  // A trace replays itself byte for byte.
  const std::string text = moeref::write_trace(trace);
  CHECK(moeref::write_trace(run_json(moeref::parse_json_text(text, "trace"))) == text);
}

TEST_CASE("layer with C = 0: zero-size slots, zero outputs", "[praxis_top2][layer][edge]") {
  // G=1, S=3, E=8: auto = int(0.75) = 0 -> C = 0.
  const nlohmann::json config = {
      {"variant", "praxis_top2"}, {"seed", 2}, {"dims", {{"G", 1}, {"S", 3}, {"E", 8}, {"M", 4}, {"H", 5}}}};
  const moeref::Trace trace = run_json(config);
  CHECK(trace.capacity["expert_capacity"] == 0);
  CHECK(step(trace, "expert_inputs").shape == std::vector<int64_t>{8, 1, 0, 4});
  for (float v : step(trace, "outputs").f32) CHECK(v == 0.0f);
  CHECK(step(trace, "summary_dispatch_0").f32.at(0) == 1.0f);
}

TEST_CASE("invariants over generated inputs, every policy and both legacy settings", "[praxis_top2][invariants]") {
  // For each case: capacity never exceeded, each slot holds at most one token, dispatch = (combine != 0),
  // at most two experts per token, fully padded tokens untouched, counts add up.
  const std::vector<std::string> policies = {"all", "sampling", "random"};
  int cases = 0;
  for (uint64_t seed = 1; seed <= 4; ++seed) {
    for (const std::string& policy : policies) {
      for (bool legacy : {true, false}) {
        const int64_t G = 2, S = 12, E = 4;
        std::vector<float> paddings;
        for (int64_t t = 0; t < G * S; ++t) paddings.push_back(t % 5 == 3 ? 1.0f : (t % 7 == 2 ? 0.5f : 0.0f));
        const nlohmann::json config = {{"variant", "praxis_top2"},
                                       {"scope", "gating"},
                                       {"seed", seed},
                                       {"dims", {{"G", G}, {"S", S}, {"E", E}, {"M", 6}}},
                                       {"hparams",
                                        {{"second_expert_policy", policy},
                                         {"second_expert_threshold", 0.3},
                                         {"legacy_mtf_behavior", legacy},
                                         {"capacity_factor", 1.0},
                                         {"gating_logit_cap", seed % 2 == 0 ? 1.5 : 0.0}}},
                                       {"inputs", {{"paddings", tensor_json({"G", "S"}, {G, S}, paddings)}}}};
        const moeref::Trace trace = run_json(config);
        INFO("seed " << seed << " policy " << policy << " legacy " << legacy);
        const int64_t C = trace.capacity["expert_capacity"].get<int64_t>();
        REQUIRE(C == 4);  // auto = int(12 * 1.0 / 4) = 3 -> roundup4 = 4
        const moeref::Tensor& combine = step(trace, "combine_tensor");
        const moeref::Tensor& dispatch = step(trace, "dispatch_tensor");
        for (size_t k = 0; k < combine.f32.size(); ++k) {
          CHECK(dispatch.i32[k] == (combine.f32[k] != 0.0f ? 1 : 0));
          CHECK(combine.f32[k] >= 0.0f);
          CHECK(combine.f32[k] <= 1.0f);
        }
        int32_t paddings_count = 0;
        for (int64_t g = 0; g < G; ++g) {
          for (int64_t e = 0; e < E; ++e) {
            for (int64_t c = 0; c < C; ++c) {
              int32_t occupants = 0;
              for (int64_t s = 0; s < S; ++s)
                occupants += dispatch.i32[static_cast<size_t>(((g * S + s) * E + e) * C + c)];
              CHECK(occupants <= 1);
            }
          }
          for (int64_t s = 0; s < S; ++s) {
            int32_t routed = 0;
            float weight = 0.0f;
            for (int64_t k = 0; k < E * C; ++k) {
              routed += dispatch.i32[static_cast<size_t>((g * S + s) * E * C + k)];
              weight += combine.f32[static_cast<size_t>((g * S + s) * E * C + k)];
            }
            CHECK(routed == step(trace, "dispatch_count_tensor").i32[static_cast<size_t>(g * S + s)]);
            CHECK(routed <= 2);
            // g1 / d + g2 / d with d >= g1 + g2: at most 1, up to the two roundings.
            CHECK(weight <= 1.0f + 2e-7f);
            if (paddings[static_cast<size_t>(g * S + s)] == 1.0f) {
              CHECK(routed == 0);
              ++paddings_count;
            }
            // Kept tokens sit at positions below C.
            if (step(trace, "mask_1_flat").i32[static_cast<size_t>(g * S + s)] == 1) {
              CHECK(step(trace, "position_in_expert_1_flat").i32[static_cast<size_t>(g * S + s)] < C);
            }
          }
        }
        const int32_t total =
            step(trace, "dispatch_0").i32[0] + step(trace, "dispatch_1").i32[0] + step(trace, "dispatch_2").i32[0];
        CHECK(total == G * S - paddings_count);
        for (int32_t count : step(trace, "mask_1_count").i32) CHECK(count <= C);
        ++cases;
      }
    }
  }
  CHECK(cases == 24);
}
