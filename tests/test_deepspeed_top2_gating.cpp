// deepspeed_top2: hand-derived cases for DeepSpeed's top2gating (microsoft/DeepSpeed,
// deepspeed/moe/sharded_moe.py at 38327e0): rank-major slots, second choices queued behind every
// first choice (kept or not), renormalisation after the drops, the Gumbel second expert in training
// and evaluation, drop_tokens=False and the refused zero capacity. DeepSpeed's tests hold no
// top2gating numbers (tests/unit/moe/test_moe.py at 38327e0 tests topkgating only), so every value
// here is derived by hand in the comments.
#include <algorithm>
#include <cmath>
#include <vector>

#include "torch_test_helpers.hpp"

using namespace moeref::testing;

namespace {

// deepspeed_top2 in scope "gating" on supplied logits [1, S, E], without the Gumbel sampling unless
// `hparams` turns it on.
nlohmann::json top2_gating(int64_t S, int64_t E, const std::vector<float>& logits, nlohmann::json hparams) {
  if (!hparams.contains("top2_2nd_expert_sampling")) hparams["top2_2nd_expert_sampling"] = false;
  nlohmann::json config = gating_on_logits("deepspeed_top2", S, E, logits, std::move(hparams));
  config["train"] = true;
  return config;
}

// t0 [2, 1, 0] -> e0 then e1; t1 [2, 0, 1] -> e0 then e2; t2 [0, 2, 1] -> e1 then e2.
const std::vector<float> kLogits = {2, 1, 0, 2, 0, 1, 0, 2, 1};

}  // namespace

TEST_CASE("deepspeed_top2: second choices queue behind all first choices, gates renormalised after drops",
          "[deepspeed_top2][capacity]") {
  // C = max(ceil(f32(3 / 3) * f32(0.5 * 2)), 0) = 1.
  // locations1 = cumsum(mask1) - 1: e0 column t0 0, t1 1; e1 column t2 0.
  // locations2 = cumsum(mask2) - 1 + sum(mask1): t0 on e1: 0 + 1 (t2's first choice) = 1; t1 on e2:
  // 0 + 0 = 0; t2 on e2: 1.
  // With C = 1: kept first choices t0 (e0), t2 (e1); t1's first is dropped. Kept second: t1 (e2).
  const moeref::Trace trace = run_json(top2_gating(3, 3, kLogits, {{"capacity_factor", 0.5}, {"min_capacity", 0}}));
  CHECK(trace.capacity["expert_capacity"] == 1);
  CHECK(step(trace, "locations1").i32 == std::vector<int32_t>{0, -1, -1, 1, -1, -1, 1, 0, -1});
  CHECK(step(trace, "locations2").i32 == std::vector<int32_t>{1, 1, -1, 1, 1, 0, 1, 1, 1});
  CHECK(step(trace, "mask1_capacity").i32 == std::vector<int32_t>{1, 0, 0, 0, 0, 0, 0, 1, 0});
  CHECK(step(trace, "mask2_capacity").i32 == std::vector<int32_t>{0, 0, 0, 0, 0, 1, 0, 0, 0});
  // exp_counts = sum(mask1 + mask2) before capacity: e0 2, e1 1 + 1, e2 2.
  CHECK(step(trace, "exp_counts").i32 == std::vector<int32_t>{2, 2, 2});
  // Renormalised over the SURVIVING choices: each token keeps one choice, which gets weight exactly 1
  // (g / g). t1 is served by its second choice only.
  CHECK(step(trace, "gates1_s_normalized").f32 == std::vector<float>{1, 0, 1});
  CHECK(step(trace, "gates2_s_normalized").f32 == std::vector<float>{0, 1, 0});
  CHECK(step(trace, "routing_expert").i32 == std::vector<int32_t>{0, 1, 0, 2, 1, 2});
  CHECK(step(trace, "routing_slot").i32 == std::vector<int32_t>{0, -1, -1, 0, 0, -1});
  // l_aux = mean(me * ce) * E * E with ce from the first choices before capacity: ce = [2/3, 1/3, 0];
  // softmax([2,1,0]) = [0.66524096, 0.24472847, 0.09003057] and its permutations give
  // me = [0.47350416, 0.33333333, 0.19316250]; mean([0.31566944, 0.11111111, 0]) * 9 = 1.2803417.
  CHECK(loss(trace, "l_aux") == Approx(1.2803417f).epsilon(1e-6));
}

TEST_CASE("deepspeed_top2: drop_tokens false: C = max(exp_counts), both choices kept and renormalised",
          "[deepspeed_top2][capacity]") {
  // C = max([2, 2, 2]) = 2. t0 keeps e0 (p 0.66524096) and e1 (p 0.24472847): g1 = 0.66524096 /
  // 0.90996943 = 0.73105858, g2 = 0.26894142 (the two-way softmax of logits 2 and 1).
  const moeref::Trace trace = run_json(top2_gating(3, 3, kLogits, {{"drop_tokens", false}}));
  CHECK(trace.capacity["expert_capacity"] == 2);
  CHECK(step(trace, "mask1_flat").i32 == std::vector<int32_t>{1, 1, 1});
  CHECK(step(trace, "mask2_flat").i32 == std::vector<int32_t>{1, 1, 1});
  CHECK(step(trace, "gates1_s_normalized").f32[0] == Approx(0.73105858f).epsilon(1e-6));
  CHECK(step(trace, "gates2_s_normalized").f32[0] == Approx(0.26894142f).epsilon(1e-6));
  // Slots: e0 t0 0, t1 1; e1 t2 0 then t0's second choice 1; e2 t1 0, t2 1.
  CHECK(step(trace, "routing_slot").i32 == std::vector<int32_t>{0, 1, 1, 0, 0, 1});
}

TEST_CASE("deepspeed_top2: the Gumbel second expert is drawn in evaluation too", "[deepspeed_top2][noise]") {
  // top2_2nd_expert_sampling (default true) adds Gumbel noise to the logits whatever `train` says
  // (DeepSpeed PR #8620). t0 [2, 1, 0]: the greedy second choice is e1; U = [0.5, 0.01, 0.99] gives
  // noise [0.3665, -1.527, 4.600] and logits_except1 [-inf, -0.527, 4.600]: e2.
  nlohmann::json config = top2_gating(1, 3, {2, 1, 0}, {{"top2_2nd_expert_sampling", true}, {"min_capacity", 1}});
  config["train"] = false;
  config["inputs"]["gumbel_uniform"] = tensor_json({"G", "S", "E"}, {1, 1, 3}, {0.5f, 0.01f, 0.99f});
  const moeref::Trace trace = run_json(config);
  CHECK(step(trace, "indices1_s").i32 == std::vector<int32_t>{0});
  CHECK(std::isinf(step(trace, "logits_except1").f32[0]));
  CHECK(step(trace, "indices2_s").i32 == std::vector<int32_t>{2});
  // The second gate is the clean probability of e2, renormalised: 0.09003057 / (0.66524096 +
  // 0.09003057) = 0.11920292.
  CHECK(step(trace, "gates2_s_normalized").f32[0] == Approx(0.11920292f).epsilon(1e-6));
  // Without sampling there is no draw and the greedy e1 is taken.
  config["hparams"]["top2_2nd_expert_sampling"] = false;
  config["inputs"].erase("gumbel_uniform");
  const moeref::Trace greedy = run_json(config);
  CHECK(greedy.find_input("gumbel_uniform") == nullptr);
  CHECK(step(greedy, "indices2_s").i32 == std::vector<int32_t>{1});
}

TEST_CASE("deepspeed_top2: one expert: the second choice is the first again", "[deepspeed_top2][edge]") {
  // E = 1: logits_except1 is all -inf and torch.argmax returns 0, so both choices are e0; the token's
  // second choice queues after every first choice. S = 2, C = max(ceil(2 * 2), 0) = 4: t0 slot 0 and
  // 2, t1 slot 1 and 3; each gate is 1 / (1 + 1) = 0.5.
  const moeref::Trace trace = run_json(top2_gating(2, 1, {0, 0}, {{"min_capacity", 0}}));
  CHECK(step(trace, "indices2_s").i32 == std::vector<int32_t>{0, 0});
  CHECK(step(trace, "routing_slot").i32 == std::vector<int32_t>{0, 2, 1, 3});
  CHECK(step(trace, "routing_weight").f32 == std::vector<float>{0.5f, 0.5f, 0.5f, 0.5f});
}

TEST_CASE("deepspeed_top2: a capacity of 0 is refused (F.one_hot with num_classes 0 raises)",
          "[deepspeed_top2][errors]") {
  CHECK_THROWS_WITH(run_json(top2_gating(3, 3, kLogits, {{"capacity_factor", 0.0}, {"min_capacity", 0}})),
                    Catch::Contains("hparams.capacity_factor") && Catch::Contains("num_classes=0"));
}

TEST_CASE("deepspeed_top2: invariants on generated inputs", "[deepspeed_top2][invariants]") {
  for (uint64_t seed = 0; seed < 5; ++seed) {
    const nlohmann::json config = {{"variant", "deepspeed_top2"},
                                   {"seed", seed},
                                   {"dims", {{"B", 2}, {"L", 10}, {"E", 4}, {"M", 6}, {"H", 5}}},
                                   {"hparams", {{"capacity_factor", 0.5}}}};
    const moeref::Trace trace = run_json(config);
    const moeref::Tensor& expert = step(trace, "routing_expert");
    const moeref::Tensor& slot = step(trace, "routing_slot");
    const moeref::Tensor& weight = step(trace, "routing_weight");
    const int64_t C = trace.capacity["expert_capacity"];
    std::vector<std::vector<int32_t>> slots(4);
    for (int64_t t = 0; t < 20; ++t) {
      CHECK(expert.i32[static_cast<size_t>(2 * t)] != expert.i32[static_cast<size_t>(2 * t + 1)]);
      float total = 0.0f;
      for (int64_t k = 0; k < 2; ++k) {
        const size_t at = static_cast<size_t>(2 * t + k);
        if (slot.i32[at] < 0) continue;
        CHECK(slot.i32[at] < C);
        slots[static_cast<size_t>(expert.i32[at])].push_back(slot.i32[at]);
        total += weight.f32[at];
      }
      // A token that kept any choice has weights summing to 1 (renormalised after the drops).
      if (total > 0.0f) CHECK(total == Approx(1.0f).epsilon(1e-6));
    }
    // No slot is used twice.
    for (std::vector<int32_t>& used : slots) {
      std::sort(used.begin(), used.end());
      CHECK(std::adjacent_find(used.begin(), used.end()) == used.end());
    }
  }
}
