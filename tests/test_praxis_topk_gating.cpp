// praxis_topk: hand-derived cases for praxis's topk_gating_on_logits (google/praxis,
// praxis/gshard_utils.py at feeaff1): greedy ranks, the denominator (gate_1 + 1e-9) + gate_2 + ...,
// rank-major slots, padding (a padded token's later ranks re-pick its first expert but are masked),
// the `capacity_factor is not None` capacity rule and the asserts. praxis has no test of this
// function at feeaff1 (no gshard_utils_test.py); every value is derived by hand in the comments.
#include <cmath>
#include <vector>

#include "torch_test_helpers.hpp"

using namespace moeref::testing;

namespace {

// praxis_topk in scope "gating" on supplied logits [1, S, E] with C = expert_capacity_dim.
nlohmann::json topk_gating(int64_t S, int64_t E, const std::vector<float>& logits, nlohmann::json hparams) {
  if (!hparams.contains("capacity_factor")) hparams["capacity_factor"] = nullptr;
  return gating_on_logits("praxis_topk", S, E, logits, std::move(hparams));
}

}  // namespace

TEST_CASE("praxis_topk: greedy ranks, renormalised before capacity, rank-major slots", "[praxis_topk][routing]") {
  // k = 3, E = 3, C = 1, two tokens [2, 1, 0] and [2, 0, 1]. Ranks: t0 e0, e1, e2; t1 e0, e2, e1.
  // Rank 1: e0 takes t0 (slot 0), t1 overflows. Rank 2 queues behind every kept earlier choice:
  // t0 on e1 at 0 (e1 has none), t1 on e2 at 0. Rank 3: t0 on e2 at 0 + 1 (t1's rank-2 choice) -> 1 >= C,
  // dropped; t1 on e1 at 0 + 1 -> dropped.
  const moeref::Trace trace = run_json(topk_gating(2, 3, {2, 1, 0, 2, 0, 1}, {{"k", 3}, {"expert_capacity_dim", 1}}));
  CHECK(step(trace, "routing_expert").i32 == std::vector<int32_t>{0, 1, 2, 0, 2, 1});
  CHECK(step(trace, "routing_slot").i32 == std::vector<int32_t>{0, 0, -1, -1, 0, -1});
  // Gates renormalised over all k before any drop and never again: t0 keeps p0 / (p0 + p1 + p2 + 1e-9)
  // = 0.66524096 and p1 / ... = 0.24472847 (the softmax itself, as the three sum to 1).
  const auto& weight = step(trace, "routing_weight").f32;
  CHECK(weight[0] == Approx(0.66524096f).epsilon(1e-6));
  CHECK(weight[1] == Approx(0.24472847f).epsilon(1e-6));
  CHECK(weight[2] == 0.0f);
}

TEST_CASE("praxis_topk: the denominator is (gate_1 + 1e-9) + gate_2, k = 1 divides by 1.0", "[praxis_topk][gates]") {
  // Token [1, 0]: p = [0.7310586, 0.2689414]. k = 2: denom = (0.7310586 + f32(1e-9)) + 0.2689414.
  const moeref::Trace top2 = run_json(topk_gating(1, 2, {1, 0}, {{"k", 2}, {"expert_capacity_dim", 2}}));
  const float p0 = step(top2, "raw_gates").f32[0], p1 = step(top2, "raw_gates").f32[1];
  CHECK(step(top2, "denom").f32[0] == (p0 + 1e-9f) + p1);
  CHECK(step(top2, "gate_1_normalized").f32[0] == p0 / ((p0 + 1e-9f) + p1));
  // k = 1: the gate is the raw probability.
  const moeref::Trace top1 = run_json(topk_gating(1, 2, {1, 0}, {{"k", 1}, {"expert_capacity_dim", 2}}));
  CHECK(step(top1, "routing_weight").f32 == std::vector<float>{p0});
}

TEST_CASE("praxis_topk: paddings truncate to int32 and zero every rank of a padded token", "[praxis_topk][paddings]") {
  // Two tokens [2, 1, 0], paddings [0, 0.5]: nonpaddings [1, 0.5]; astype(int32) gives [1, 0], so
  // token 1 loses all its choices (its rank-2 pick re-chooses e0: mask_1 was zeroed, so
  // raw_gates_2 keeps e0), while density_1_proxy keeps half of its probabilities.
  nlohmann::json config = topk_gating(2, 3, {2, 1, 0, 2, 1, 0}, {{"k", 2}, {"expert_capacity_dim", 2}});
  config["inputs"]["paddings"] = tensor_json({"G", "S"}, {1, 2}, {0, 0.5f});
  const moeref::Trace trace = run_json(config);
  CHECK(step(trace, "index_2").i32 == std::vector<int32_t>{1, 0});
  CHECK(step(trace, "routing_slot").i32 == std::vector<int32_t>{0, 0, -1, -1});
  // aux_loss = mean(density_1_proxy * density_1) * 9: density_1 = [1/2, 0, 0], proxy[e0] =
  // (0.66524096 + 0.5 * 0.66524096) / 2 = 0.49893072: 0.49893072 * 0.5 / 3 * 9 = 0.7483961.
  CHECK(loss(trace, "aux_loss") == Approx(0.7483961f).epsilon(1e-6));
}

TEST_CASE("praxis_topk: capacity_factor is tested with `is not None`, the asserts", "[praxis_topk][capacity]") {
  const std::vector<float> logits(8 * 4, 0.0f);
  // S = 8, E = 4, cf = 2: auto = int(4.0) = 4 > C0 = 0: roundup4(4) = 4.
  CHECK(run_json(topk_gating(8, 4, logits, {{"capacity_factor", 2.0}, {"expert_capacity_dim", 0}}))
            .capacity["expert_capacity"] == 4);
  // cf = 3: auto = 6 -> 8. C0 = 9 >= 6: kept as 9.
  CHECK(run_json(topk_gating(8, 4, logits, {{"capacity_factor", 3.0}, {"expert_capacity_dim", 0}}))
            .capacity["expert_capacity"] == 8);
  CHECK(run_json(topk_gating(8, 4, logits, {{"capacity_factor", 3.0}, {"expert_capacity_dim", 9}}))
            .capacity["expert_capacity"] == 9);
  // cf = 0.0 is not None: auto = 0, C0 = 3 kept (praxis_top2's `if capacity_factor:` skips it: same C).
  CHECK(run_json(topk_gating(8, 4, logits, {{"capacity_factor", 0.0}, {"expert_capacity_dim", 3}}))
            .capacity["expert_capacity"] == 3);
  // assert capacity_factor or expert_capacity_dim; None < int raises TypeError.
  CHECK_THROWS_WITH(run_json(topk_gating(8, 4, logits, {{"capacity_factor", 0.0}, {"expert_capacity_dim", 0}})),
                    Catch::Contains("hparams.capacity_factor"));
  CHECK_THROWS_WITH(run_json(topk_gating(8, 4, logits, {{"capacity_factor", 2.0}, {"expert_capacity_dim", nullptr}})),
                    Catch::Contains("hparams.expert_capacity_dim"));
}
