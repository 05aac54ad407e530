// fairseq_top2: hand-derived cases for fairseq's top2gating (facebookresearch/fairseq,
// fairseq/modules/moe/top2gate.py at 26d62ae): rank-major slots with capacity 2 * ceil(S / E),
// the 'random' policy on the normalised or raw gate, padding before the locations,
// batch-prioritized routing, the evaluation capacity, and GShard Algorithm 1's slot placement.
//
// fairseq has no test of top2gating at 26d62ae. fairscale's tests/nn/moe/test_top2gating.py
// (which fairseq mirrors) checks Algorithm 1 placement of the first choices on torch.randn logits
// (test_top1s) and shapes and sums (test_forward); the placement check becomes the invariant below,
// on moeref's own generated logits. Every other value is derived by hand in the comments.
#include <vector>

#include "torch_test_helpers.hpp"

using namespace moeref::testing;

namespace {

// fairseq_top2 in scope "gating" on supplied logits [1, S, E], training, policy 'all' unless given.
nlohmann::json fairseq_gating(int64_t S, int64_t E, const std::vector<float>& logits, nlohmann::json hparams) {
  if (!hparams.contains("second_expert_policy")) hparams["second_expert_policy"] = "all";
  nlohmann::json config = gating_on_logits("fairseq_top2", S, E, logits, std::move(hparams));
  config["train"] = true;
  return config;
}

}  // namespace

TEST_CASE("fairseq_top2: capacity 2 * ceil(S / E), rank-major slots, gates renormalised after the drop",
          "[fairseq_top2][capacity]") {
  // t0 [2, 1, 0] -> e0, e1; t1 [2, 0, 1] -> e0, e2; t2 [0, 2, 1] -> e1, e2. C = 2 * ceil(3 / 3) = 2.
  // locations1: e0 t0 0, t1 1; e1 t2 0. locations2 (behind the first choices): t0 on e1 at 0 + 1,
  // t1 on e2 at 0, t2 on e2 at 1. Everything fits.
  const moeref::Trace trace = run_json(fairseq_gating(3, 3, {2, 1, 0, 2, 0, 1, 0, 2, 1}, nlohmann::json::object()));
  CHECK(trace.capacity["expert_capacity"] == 2);
  CHECK(step(trace, "routing_slot").i32 == std::vector<int32_t>{0, 1, 1, 0, 0, 1});
  // t0's gates: p = [0.66524096, 0.24472847, ...] renormalised: 0.7310586 and 0.2689414.
  const auto& weight = step(trace, "routing_weight").f32;
  CHECK(weight[0] == Approx(0.7310586f).epsilon(1e-6));
  CHECK(weight[1] == Approx(0.2689414f).epsilon(1e-6));
  // l_aux = mean(me * ce) * E^2 with ce from the first choices: [2/3, 1/3, 0], me = [0.47350416,
  // 0.33333333, 0.19316250]: 1.2803417 (as DeepSpeed's top2gating on the same logits).
  CHECK(loss(trace, "moe_gate_loss") == Approx(1.2803417f).epsilon(1e-6));
}

TEST_CASE("fairseq_top2: 'random' tests 2 * gate2 against U, on the normalised gate when normalising first",
          "[fairseq_top2][random]") {
  // One token [1, 0.5, 0]: p2 = 0.3071959 raw; normalised with p1 = 0.5064804: 0.3775407.
  // U = 0.7: 2 * 0.3775407 = 0.7550814 > 0.7 keeps; 2 * 0.3071959 = 0.6143918 < 0.7 drops.
  nlohmann::json config = fairseq_gating(
      1, 3, {1, 0.5f, 0}, {{"second_expert_policy", "random"}, {"normalize_gate_prob_before_dropping", true}});
  config["inputs"]["random_uniform"] = tensor_json({"G", "S"}, {1, 1}, {0.7f});
  const moeref::Trace before = run_json(config);
  CHECK(step(before, "sampled").i32 == std::vector<int32_t>{1});
  // Kept, with the normalised weights (no second normalisation): 0.6224593 and 0.3775407.
  CHECK(step(before, "routing_weight").f32[1] == Approx(0.3775407f).epsilon(1e-6));
  config["hparams"]["normalize_gate_prob_before_dropping"] = false;
  const moeref::Trace after = run_json(config);
  CHECK(step(after, "sampled").i32 == std::vector<int32_t>{0});
  // The second choice dropped: the first is renormalised alone, to 1.
  CHECK(step(after, "routing_weight").f32 == std::vector<float>{1, 0});
}

TEST_CASE("fairseq_top2: padded tokens leave both masks before the locations and the loss", "[fairseq_top2][padding]") {
  // Two tokens [2, 1, 0]; token 0 padded. Token 1 takes slot 0 of e0 and e1; ce = [1/2, 0, 0].
  // me = [0.66524096, 0.24472847, 0.09003057]; l_aux = mean([0.33262048, 0, 0]) * 9 = 0.9978614.
  nlohmann::json config = fairseq_gating(2, 3, {2, 1, 0, 2, 1, 0}, nlohmann::json::object());
  config["inputs"]["input_padding_mask"] = tensor_json({"G", "S"}, {1, 2}, {1, 0});
  const moeref::Trace trace = run_json(config);
  CHECK(step(trace, "nonpadding").i32 == std::vector<int32_t>{0, 1});
  CHECK(step(trace, "routing_slot").i32 == std::vector<int32_t>{-1, -1, 0, 0});
  CHECK(loss(trace, "moe_gate_loss") == Approx(0.9978614f).epsilon(1e-6));
}

TEST_CASE("fairseq_top2: batch_prioritized_routing serves the most confident tokens first", "[fairseq_top2][bpr]") {
  // E = 4, four tokens all choosing e0 with logits 1, 2, 0.5, 3 (others 0): C = 2 * ceil(4 / 4) = 2.
  // In token order e0 keeps t0, t1; by descending top probability it keeps t3 (slot 0) and t1 (slot 1).
  // The second choices (e1 for all) queue behind e1's first choices (none) in the same order.
  const std::vector<float> logits = {1, 0, 0, 0, 2, 0, 0, 0, 0.5f, 0, 0, 0, 3, 0, 0, 0};
  const moeref::Trace token_order = run_json(fairseq_gating(4, 4, logits, nlohmann::json::object()));
  CHECK(step(token_order, "routing_slot").i32 == std::vector<int32_t>{0, 0, 1, 1, -1, -1, -1, -1});
  const moeref::Trace prioritized = run_json(fairseq_gating(4, 4, logits, {{"batch_prioritized_routing", true}}));
  CHECK(step(prioritized, "routing_slot").i32 == std::vector<int32_t>{-1, -1, 1, 1, -1, -1, 0, 0});
}

TEST_CASE("fairseq_top2: evaluation capacity from moe_eval_capacity_token_fraction", "[fairseq_top2][capacity]") {
  std::vector<float> logits(10 * 4, 0.0f);
  nlohmann::json config = fairseq_gating(10, 4, logits, nlohmann::json::object());
  config["train"] = false;
  // ceil(0.25 * 10) = 3.
  CHECK(run_json(config).capacity["expert_capacity"] == 3);
  // moe_eval_capacity_length 6: ceil(0.25 * 6) = 2.
  config["hparams"]["moe_eval_capacity_length"] = 6;
  CHECK(run_json(config).capacity["expert_capacity"] == 2);
  // Fraction 0: the training rule 2 * ceil(10 / 4) = 6.
  config["hparams"]["moe_eval_capacity_token_fraction"] = 0.0;
  CHECK(run_json(config).capacity["expert_capacity"] == 6);
}

TEST_CASE("fairseq_top2: first choices fill their expert in token order (GShard Algorithm 1)",
          "[fairseq_top2][invariants]") {
  // fairscale test_top1s: a token's first choice sits at slot n, n counting earlier tokens with the
  // same first choice, when n < C; moeref's generated logits, several seeds.
  for (uint64_t seed = 0; seed < 5; ++seed) {
    const nlohmann::json config = {{"variant", "fairseq_top2"},
                                   {"seed", seed},
                                   {"scope", "gating"},
                                   {"dims", {{"G", 1}, {"S", 24}, {"E", 4}, {"M", 6}}},
                                   {"hparams", {{"second_expert_policy", "all"}}}};
    const moeref::Trace trace = run_json(config);
    const moeref::Tensor& first = step(trace, "indices1_s");
    const moeref::Tensor& slot = step(trace, "routing_slot");
    std::vector<int32_t> count(4, 0);
    for (int64_t s = 0; s < 24; ++s) {
      const int32_t n = count[static_cast<size_t>(first.i32[static_cast<size_t>(s)])]++;
      CHECK(slot.i32[static_cast<size_t>(2 * s)] == (n < 12 ? n : -1));
    }
  }
}
