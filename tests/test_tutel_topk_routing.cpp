// tutel_topk: hand-derived cases for Tutel's extract_critical (microsoft/tutel,
// tutel/impls/fast_dispatch.py at 82af7aa) and its MOELayer: the three capacity modes, the
// dynamic capacity read from the LAST token's row under batch-prioritized routing, the GShard
// loss, gate normalisation, the gate noise, is_postscore, and the refused importance loss without
// noise. Tutel's own tests (tutel/tests) check end-to-end training runs on GPUs and hold no routing
// numbers; every value here is derived by hand in the comments.
#include <cmath>
#include <vector>

#include "torch_test_helpers.hpp"

using namespace moeref::testing;

namespace {

// tutel_topk in scope "gating" on supplied logits [1, S, E], training.
nlohmann::json tutel_gating(int64_t S, int64_t E, const std::vector<float>& logits, nlohmann::json hparams) {
  nlohmann::json config = gating_on_logits("tutel_topk", S, E, logits, std::move(hparams));
  config["train"] = true;
  return config;
}

}  // namespace

TEST_CASE("tutel_topk: capacity k * int(cf * ceil(S / E)), 0 (dynamic) and negative (capped)",
          "[tutel_topk][capacity]") {
  // S = 5, E = 2, k = 2: samples_per_expert = ceil(5 / 2) = 3. Every token ranks e0 then e1.
  const std::vector<float> logits = {1, 0, 1, 0, 1, 0, 1, 0, 1, 0};
  CHECK(run_json(tutel_gating(5, 2, logits, {{"k", 2}, {"capacity_factor", 1.0}})).capacity["expert_capacity"] == 6);
  // 2 * int(0.5 * 3) = 2: two tokens per rank per expert... the slots run over both ranks: e0 holds
  // t0, t1 (first choices), e1's first choices are none, so e1's second choices t0, t1 take slots 0, 1.
  const moeref::Trace half = run_json(tutel_gating(5, 2, logits, {{"k", 2}, {"capacity_factor", 0.5}}));
  CHECK(half.capacity["expert_capacity"] == 2);
  CHECK(step(half, "routing_slot").i32 == std::vector<int32_t>{0, 0, 1, 1, -1, -1, -1, -1, -1, -1});
  // 0: the largest per-expert count (locations2[-1] + 1 = [5, 5]): nothing dropped.
  const moeref::Trace dynamic = run_json(tutel_gating(5, 2, logits, {{"k", 2}, {"capacity_factor", 0.0}}));
  CHECK(step(dynamic, "dispatch_count").i32 == std::vector<int32_t>{5, 5});
  CHECK(dynamic.capacity["expert_capacity"] == 5);
  // -0.5: min(5, 2 * int(0.5 * 3)) = 2.
  CHECK(run_json(tutel_gating(5, 2, logits, {{"k", 2}, {"capacity_factor", -0.5}})).capacity["expert_capacity"] == 2);
}

TEST_CASE("tutel_topk: with batch-prioritized routing the dynamic capacity reads the last token's row",
          "[tutel_topk][bpr]") {
  // k = 1, three tokens choosing e0 with logits 1, 2, 3 (e1 at 0): the last token is the most
  // confident. Without BPR locations are 0, 1, 2 on e0 and dispatch_count = last row + 1 = [3, 0]:
  // C = 3, nothing dropped.
  const std::vector<float> logits = {1, 0, 2, 0, 3, 0};
  const moeref::Trace plain = run_json(tutel_gating(3, 2, logits, {{"capacity_factor", 0.0}}));
  CHECK(step(plain, "dispatch_count").i32 == std::vector<int32_t>{3, 0});
  CHECK(step(plain, "routing_slot").i32 == std::vector<int32_t>{0, 1, 2});
  // With BPR the order is t2, t1, t0, so t2's row holds location 0 (and 0 for e1, (cumsum - 1) * mask):
  // dispatch_count = [1, 1] and C = 1: only t2 keeps its expert.
  const moeref::Trace prioritized =
      run_json(tutel_gating(3, 2, logits, {{"capacity_factor", 0.0}, {"batch_prioritized_routing", true}}));
  CHECK(step(prioritized, "dispatch_count").i32 == std::vector<int32_t>{1, 1});
  CHECK(step(prioritized, "routing_slot").i32 == std::vector<int32_t>{-1, -1, 0});
}

TEST_CASE("tutel_topk: gshard_loss and gate normalisation", "[tutel_topk][loss]") {
  // t0 [0, 0]: scores [0.5, 0.5] (a tie: moeref ranks e0 first); t1 [ln 3, 0]: [0.75, 0.25].
  // gshard_loss: hot value E / S = 1, ce = [2, 0], me = [1.25, 0.75]: sum(me * ce) / S = 1.25.
  const float ln3 = static_cast<float>(std::log(3.0));
  const moeref::Trace normalized = run_json(tutel_gating(2, 2, {0, 0, ln3, 0}, {{"k", 2}}));
  CHECK(loss(normalized, "l_aux") == Approx(1.25f).epsilon(1e-6));
  // normalize_gate: with both experts taken each token's gates sum to 1 already (up to rounding).
  CHECK(step(normalized, "gates_s_0_normalized").f32[1] == Approx(0.75f).epsilon(1e-6));
  // k = 1 is never normalised: the gate is the raw probability. (capacity_factor 2: C = 1 * int(2 * 1)
  // = 2, room for both tokens on e0.)
  const moeref::Trace top1 = run_json(tutel_gating(2, 2, {0, 0, ln3, 0}, {{"capacity_factor", 2.0}}));
  CHECK(top1.find_step("denom_s") == nullptr);
  CHECK(step(top1, "routing_weight").f32[0] == 0.5f);
  CHECK(step(top1, "routing_weight").f32[1] == Approx(0.75f).epsilon(1e-6));
}

TEST_CASE("tutel_topk: gate noise adds gate_noise * N(0, 1) / E to the logits in training", "[tutel_topk][noise]") {
  // gate_noise 2, E = 2, normals [1, -1]: logits [0, 0] + [1, -1] = [1, -1].
  nlohmann::json config = tutel_gating(1, 2, {0, 0}, {{"gate_noise", 2.0}});
  config["inputs"]["gate_noise_normal"] = tensor_json({"G", "S", "E"}, {1, 1, 2}, {1, -1});
  const moeref::Trace trace = run_json(config);
  CHECK(step(trace, "logits_w_noise").f32 == std::vector<float>{1, -1});
  CHECK(step(trace, "topk_indices").i32 == std::vector<int32_t>{0});
  config["train"] = false;
  config["inputs"].erase("gate_noise_normal");
  CHECK(run_json(config).find_step("logits_w_noise") == nullptr);
  // The importance + load loss needs noise (load_importance_loss asserts gate_noise > 0).
  nlohmann::json no_noise = tutel_gating(1, 2, {0, 0}, {{"is_gshard_loss", false}});
  CHECK_THROWS_WITH(run_json(no_noise), Catch::Contains("hparams.gate_noise"));
}

TEST_CASE("tutel_topk: is_postscore decides whether the gate scales the expert's input or output",
          "[tutel_topk][layer]") {
  // E = 2, logits [ln 3, 0] -> e0 with gate 0.75. Expert e0: fc1 w 1 b -1, relu, fc2 w 1 b 0; x = 2.
  // postscore: 0.75 * relu(2 - 1) = 0.75. Not postscore: relu(0.75 * 2 - 1) = 0.5.
  const float ln3 = static_cast<float>(std::log(3.0));
  nlohmann::json config = {{"variant", "tutel_topk"},
                           {"train", false},
                           {"dims", {{"G", 1}, {"S", 1}, {"E", 2}, {"M", 1}, {"H", 1}}},
                           {"inputs",
                            {{"logits", tensor_json({"G", "S", "E"}, {1, 1, 2}, {ln3, 0})},
                             {"x", tensor_json({"G", "S", "M"}, {1, 1, 1}, {2})},
                             {"wi", tensor_json({"E", "M", "H"}, {2, 1, 1}, {1, 1})},
                             {"wi_bias", tensor_json({"E", "H"}, {2, 1}, {-1, 0})},
                             {"wo", tensor_json({"E", "H", "N"}, {2, 1, 1}, {1, 1})},
                             {"wo_bias", tensor_json({"E", "N"}, {2, 1}, {0, 0})}}}};
  CHECK(step(run_json(config), "outputs").f32[0] == Approx(0.75f).epsilon(1e-6));
  config["hparams"] = {{"is_postscore", false}};
  CHECK(step(run_json(config), "outputs").f32[0] == Approx(0.5f).epsilon(1e-6));
}
