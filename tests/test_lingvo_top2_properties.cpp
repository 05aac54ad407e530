// lingvo_top2: the capacity rule, invariants over generated inputs, and boundary errors.
//
// Source: tensorflow/lingvo, lingvo/core/gshard_layers.py at e0be5dc4ce9b,
// Top2GatingOnLogits (capacity block, combine/dispatch construction,
// _CreateOverCapacityRatioSummary) and ComputeGating.
#include <cmath>
#include <optional>
#include <vector>

#include "moeref/ops/lingvo_capacity.hpp"
#include "test_support.hpp"

using moeref::testing::run_json;
using moeref::testing::step;
using moeref::testing::tensor_json;

TEST_CASE("lingvo capacity rule: auto from capacity_factor, 0 -> 4, round up to 4 only when raised, no cap at S",
          "[lingvo_top2][capacity]") {
  using moeref::ops::lingvo_expert_capacity;
  struct Row {
    int64_t expert_capacity_dim;
    std::optional<double> capacity_factor;
    int64_t S, E, expected;
    bool raised;
  };
  // Each expected value follows the source's lines by hand:
  const std::vector<Row> rows = {
      {0, std::nullopt, 8, 4, 0, false},  // no capacity_factor: C = expert_capacity_dim, even 0
      {3, 0.0, 8, 4, 3, false},           // capacity_factor 0 is not > 0: C = 3, not rounded
      {0, 1.0, 8, 4, 4, true},            // auto = int(8/4) = 2 > 0 -> roundup4(2) = 4
      {3, 1.0, 8, 4, 3, false},           // 3 >= auto 2: unchanged and NOT rounded to 4
      {0, 1.0, 2, 4, 4, true},            // auto = int(0.5) = 0 -> 4
      {0, 0.29, 100, 1, 28, true},        // 100 * 0.29 = 28.999999999999996 -> 28 (a multiple of 4)
      {0, 1.0, 5, 1, 8, true},            // auto 5 -> 8 > S = 5: no cap at the group size
      {100, 2.0, 1024, 8, 256, true},     // auto 256 > 100 -> 256
      {300, 2.0, 1024, 8, 300, false},    // 300 >= 256: kept
      {5, 1.5, 10, 2, 8, true},           // auto int(7.5) = 7 > 5 -> roundup4(7) = 8
  };
  for (const Row& row : rows) {
    INFO("C0=" << row.expert_capacity_dim << " S=" << row.S << " E=" << row.E);
    const auto result = lingvo_expert_capacity(row.expert_capacity_dim, row.capacity_factor, row.S, row.E);
    CHECK(result.expert_capacity == row.expected);
    CHECK(result.raised == row.raised);
  }
}

namespace {

nlohmann::json paddings_json(int64_t G, int64_t S, int64_t period) {
  std::vector<float> data(static_cast<size_t>(G * S));
  for (int64_t k = 0; k < G * S; ++k) data[static_cast<size_t>(k)] = k % period == period - 1 ? 1.0f : 0.0f;
  return tensor_json({"G", "S"}, {G, S}, data);
}

}  // namespace

TEST_CASE("lingvo_top2 invariants over generated inputs, every policy, both legacy modes", "[lingvo_top2][property]") {
  // Rules checked (Top2GatingOnLogits): no expert slot holds two tokens and no expert takes more
  // than C tokens per group; dispatch_tensor = (combine_tensor != 0); padded tokens get nothing;
  // a kept choice's position is < C and a dropped one's is recorded as 0; with C > 0
  // over_capacity_k equals the number of dropped k-th choices; gates sum to at most 1 per token
  // (exactly 1 after non-legacy renormalisation when a choice survives).
  int runs = 0;
  for (const char* policy : {"all", "sampling", "random"}) {
    for (bool legacy : {true, false}) {
      for (uint64_t seed : {1u, 2u, 3u}) {
        const int64_t G = 2, S = 12, E = 4;
        nlohmann::json config = {{"variant", "lingvo_top2"},
                                 {"scope", "gating"},
                                 {"seed", seed},
                                 {"dims", {{"G", G}, {"S", S}, {"E", E}, {"M", 6}}},
                                 {"hparams",
                                  {{"second_expert_policy", policy},
                                   {"second_expert_threshold", 0.4},
                                   {"legacy_mtf_behavior", legacy},
                                   {"expert_capacity_dim", 2},
                                   {"capacity_factor", seed == 3 ? nlohmann::json(1.5) : nlohmann::json(nullptr)}}},
                                 {"inputs", {{"paddings", paddings_json(G, S, 5)}}}};
        INFO("policy " << policy << " legacy " << legacy << " seed " << seed);
        const moeref::Trace trace = run_json(config);
        ++runs;
        const int64_t C = trace.capacity["expert_capacity"].get<int64_t>();
        const auto& combine = step(trace, "combine_tensor");
        const auto& dispatch = step(trace, "dispatch_tensor");
        const auto& paddings = *trace.find_input("paddings");
        for (int64_t g = 0; g < G; ++g) {
          for (int64_t e = 0; e < E; ++e) {
            int64_t taken = 0;
            for (int64_t c = 0; c < C; ++c) {
              int64_t tokens_in_slot = 0;
              for (int64_t s = 0; s < S; ++s)
                tokens_in_slot += dispatch.i32[static_cast<size_t>(((g * S + s) * E + e) * C + c)];
              CHECK(tokens_in_slot <= 1);
              taken += tokens_in_slot;
            }
            CHECK(taken <= C);
          }
          for (int64_t s = 0; s < S; ++s) {
            double row_sum = 0.0;
            for (int64_t k = 0; k < E * C; ++k) {
              const size_t slot = static_cast<size_t>((g * S + s) * E * C + k);
              CHECK(dispatch.i32[slot] == (combine.f32[slot] != 0.0f ? 1 : 0));
              if (paddings.f32[static_cast<size_t>(g * S + s)] == 1.0f) CHECK(combine.f32[slot] == 0.0f);
              row_sum += static_cast<double>(combine.f32[slot]);
            }
            CHECK(row_sum <= 1.0 + 1e-6);
            const size_t gs = static_cast<size_t>(g * S + s);
            if (!legacy && row_sum > 0.0) CHECK(row_sum == Approx(1.0).epsilon(1e-6));
            for (const char* k : {"1", "2"}) {
              const int32_t flat = step(trace, std::string("mask_") + k + "_flat").i32[gs];
              const int32_t position = step(trace, std::string("position_in_expert_") + k + "_flat").i32[gs];
              if (flat == 1) {
                CHECK(position < C);
              } else {
                CHECK(position == 0);
              }
            }
          }
        }
        // With C > 0, mask * position >= C holds exactly for the dropped choices.
        auto sum = [](const moeref::Int32Buffer& v) {
          int64_t total = 0;
          for (int32_t x : v) total += x;
          return total;
        };
        const char* mask_2_before = std::string(policy) == "random" ? "mask_2_sampled" : "mask_2_important";
        CHECK(step(trace, "over_capacity_1").i32[0] ==
              sum(step(trace, "mask_1_nonpadded").i32) - sum(step(trace, "mask_1_capacity").i32));
        CHECK(step(trace, "over_capacity_2").i32[0] ==
              sum(step(trace, mask_2_before).i32) - sum(step(trace, "mask_2_capacity").i32));
      }
    }
  }
  CHECK(runs == 18);
}

TEST_CASE("lingvo_top2 rejects configs the source cannot run or moeref does not model", "[lingvo_top2][errors]") {
  const nlohmann::json base = {
      {"variant", "lingvo_top2"}, {"scope", "gating"}, {"dims", {{"G", 1}, {"S", 2}, {"E", 2}, {"M", 2}}}};
  auto with_input = [&](const std::string& name, const std::vector<float>& data) {
    nlohmann::json config = base;
    config["inputs"][name] = tensor_json({"G", "S"}, {1, 2}, data);
    return config;
  };
  // ComputeGating (logits from x) always passes importance=None.
  CHECK_THROWS_WITH(run_json(with_input("importance", {1, 1})),
                    Catch::Contains("ComputeGating always passes importance=None"));
  // Fractional paddings would make lingvo's float mask_1 fractional.
  CHECK_THROWS_WITH(run_json(with_input("paddings", {0.5f, 0})), Catch::Contains("inputs.paddings[g=0, s=0]"));
  // Policies of other sources do not exist here (lingvo raises ValueError).
  nlohmann::json config = base;
  config["hparams"] = {{"second_expert_policy", "threshold"}};
  CHECK_THROWS_WITH(run_json(config), Catch::Contains("one of all, sampling, random"));
  // expert_padding_idx is a list of integers.
  config["hparams"] = {{"expert_padding_idx", 1}};
  CHECK_THROWS_WITH(run_json(config), Catch::Contains("hparams.expert_padding_idx"));
  config["hparams"] = {{"expert_padding_idx", nlohmann::json::array({0.5})}};
  CHECK_THROWS_WITH(run_json(config), Catch::Contains("hparams.expert_padding_idx"));
  // local_dispatch belongs to ComputeGating, not to a direct call on supplied logits.
  config = base;
  config["hparams"] = {{"local_dispatch", false}};
  config["inputs"]["logits"] = tensor_json({"G", "S", "E"}, {1, 2, 2}, {0, 0, 0, 0});
  CHECK_THROWS_WITH(run_json(config), Catch::Contains("hparams.local_dispatch"));
  // A derived C given in dims must agree with the capacity rule.
  config = base;
  config["dims"]["C"] = 3;
  CHECK_THROWS_WITH(run_json(config), Catch::Contains("dims.C"));
}

TEST_CASE("lingvo_top2 layer runs through the foundation expert layer and replays byte for byte",
          "[lingvo_top2][replay]") {
  const nlohmann::json config = {{"variant", "lingvo_top2"},
                                 {"seed", 9},
                                 {"dims", {{"G", 2}, {"S", 6}, {"E", 3}, {"M", 4}, {"H", 5}}},
                                 {"hparams", {{"second_expert_policy", "sampling"}, {"local_dispatch", false}}}};
  const moeref::Trace trace = run_json(config);
  CHECK(step(trace, "outputs").shape == std::vector<int64_t>{2, 6, 4});
  CHECK(step(trace, "expert_inputs").shape[1] == 2);  // [E, G, C, M] over the layer's groups
  const std::string text = moeref::write_trace(trace);
  const moeref::Trace replayed = run_json(moeref::parse_json_text(text, "trace"));
  CHECK(moeref::write_trace(replayed) == text);
}
