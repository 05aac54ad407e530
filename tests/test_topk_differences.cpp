// The top-k family side by side: one test per row of spec/variants/topk_differences.md.
//
// Variants, each run at scope "gating" on the SAME logits (each under its source's input name):
//   mtf    = mtf_top2                 (tensorflow/mesh, moe.py, _top_2_gating)
//   praxis = praxis_top2              (google/praxis, gshard_utils.py, top2_gating_on_logits)
//   stmoe  = stmoe_topn               (lucidrains/st-moe-pytorch, TopNGating.forward)
//   flax   = flaxformer_tokens_choose (google/flaxformer, routing.py, TokensChooseMaskedRouter)
// lingvo_top2 shares praxis's rows here; top2_differences.md separates the three GShard ports.
// Each test asserts the DIFFERENT answers its row states; expected numbers are derived by hand in
// the comments or restated from the source formulas, never copied from moeref's output.
#include <string>
#include <vector>

#include "moeref/ops/jax_softmax.hpp"
#include "moeref/ops/tf_softmax.hpp"
#include "test_support.hpp"

using moeref::testing::loss;
using moeref::testing::run_json;
using moeref::testing::step;
using moeref::testing::tensor_json;

namespace {

// Scope "gating" on supplied logits [G=1, S, E], under the variant's own input name.
moeref::Trace run(const std::string& variant, int64_t S, int64_t E, const std::vector<float>& logits,
                  nlohmann::json hparams, bool train = true) {
  const std::string input = variant == "stmoe_topn"                 ? "gate_logits"
                            : variant == "flaxformer_tokens_choose" ? "router_logits"
                                                                    : "logits";
  return run_json({{"variant", variant},
                   {"scope", "gating"},
                   {"train", train},
                   {"dims", {{"G", 1}, {"S", S}, {"E", E}}},
                   {"hparams", std::move(hparams)},
                   {"inputs", {{input, tensor_json({"G", "S", "E"}, {1, S, E}, logits)}}}});
}

int64_t capacity_of(const moeref::Trace& trace) { return trace.capacity.at("expert_capacity").get<int64_t>(); }

// S tokens whose logits are [a_s, 0]: every token prefers expert 0, token s with logit a_s.
std::vector<float> prefer_expert_0(const std::vector<float>& a) {
  std::vector<float> out;
  for (float v : a) out.insert(out.end(), {v, 0.0f});
  return out;
}

}  // namespace

TEST_CASE("topk differences row 01 capacity: truncation, round half to even, floors", "[differences]") {
  // S = 8, E = 2, factor 0.875: S * cf / E = 3.5.
  const std::vector<float> logits(16, 0.0f);
  // mtf: max(min(S, int(3.5)), min_expert_capacity = 1) = 3.
  CHECK(capacity_of(
            run("mtf_top2", 8, 2, logits,
                {{"capacity_factor_train", 0.875}, {"min_expert_capacity", 1}, {"second_policy_train", "all"}})) == 3);
  // praxis: auto = int(3.5) = 3 > expert_capacity_dim 0, rounded up to a multiple of 4: 4.
  CHECK(capacity_of(run("praxis_top2", 8, 2, logits, {{"capacity_factor", 0.875}})) == 4);
  // stmoe: mtf's rule with the constant floor MIN_EXPERT_CAPACITY = 4: max(3, 4) = 4.
  CHECK(capacity_of(run("stmoe_topn", 8, 2, logits, {{"capacity_factor_train", 0.875}})) == 4);
  // flaxformer: int(round(3.5)) = 4 (half to even), floor min_expert_capacity = 1: 4; and 2.5 -> 2.
  CHECK(capacity_of(run("flaxformer_tokens_choose", 8, 2, logits,
                        {{"train_capacity_factor", 0.875}, {"min_expert_capacity", 1}})) == 4);
  CHECK(capacity_of(run("flaxformer_tokens_choose", 8, 2, logits,
                        {{"train_capacity_factor", 0.625}, {"min_expert_capacity", 1}})) == 2);
  CHECK(capacity_of(
            run("mtf_top2", 8, 2, logits,
                {{"capacity_factor_train", 0.625}, {"min_expert_capacity", 1}, {"second_policy_train", "all"}})) == 2);
}

TEST_CASE("topk differences row 02 combine weights: renormalised before drops, or raw probabilities", "[differences]") {
  // One token, logits [2, 1, 0], both choices kept.
  const std::vector<float> logits = {2.0f, 1.0f, 0.0f};
  const moeref::Trace mtf = run("mtf_top2", 1, 3, logits, {{"second_policy_train", "all"}});
  const moeref::Trace stmoe = run("stmoe_topn", 1, 3, logits, {{"threshold_train", 0.0}});
  const moeref::Trace flax = run("flaxformer_tokens_choose", 1, 3, logits, {{"num_selected_experts", 2}});
  // mtf: g1 * reciprocal(g1 + g2 + 1e-9) (mtf divides by multiplying).
  const float m1 = step(mtf, "gate_1").f32[0], m2 = step(mtf, "gate_2").f32[0];
  CHECK(step(mtf, "gate_1_normalized").f32[0] == m1 * (1.0f / ((m1 + m2) + 1e-9f)));
  // stmoe: g1 / max(g1 + g2, eps), a true division, over all top_n ranks.
  const float s1 = step(stmoe, "gates").f32[0], s2 = step(stmoe, "gates").f32[1];
  CHECK(step(stmoe, "gates_normalized").f32[0] == s1 / (s1 + s2));
  // flaxformer: the raw probability, not renormalised: the token's two weights sum to < 1.
  const moeref::Tensor& probs = step(flax, "router_probs");
  const moeref::Tensor& combine = step(flax, "combine_array");
  double total = 0.0;
  for (float v : combine.f32) total += static_cast<double>(v);
  CHECK(total == Approx(static_cast<double>(probs.f32[0]) + probs.f32[1]));
  CHECK(total < 0.95);  // p = [0.665, 0.245, 0.090]
  double stmoe_total = 0.0;
  for (float v : step(stmoe, "combine_tensor").f32) stmoe_total += static_cast<double>(v);
  CHECK(stmoe_total == Approx(1.0).epsilon(1e-6));
}

TEST_CASE("topk differences row 03 choices beyond the first: policies, per-rank thresholds, or all k",
          "[differences]") {
  // One token, logits [2, 1, 0, -1].
  const std::vector<float> logits = {2.0f, 1.0f, 0.0f, -1.0f};
  // stmoe top_n = 3, thresholds per rank [0 (keep), 1e9 (drop)]: 2 of 3 choices dispatched.
  const moeref::Trace stmoe =
      run("stmoe_topn", 1, 4, logits, {{"top_n", 3}, {"threshold_train", nlohmann::json::array({0.0, 1e9})}});
  CHECK(step(stmoe, "should_route").i32 == std::vector<int32_t>{1, 1, 0});
  // flaxformer k = 3: no policy, all three dispatched.
  const moeref::Trace flax = run("flaxformer_tokens_choose", 1, 4, logits, {{"num_selected_experts", 3}});
  int32_t dispatched = 0;
  for (int32_t v : step(flax, "dispatch_mask").i32) dispatched += v;
  CHECK(dispatched == 3);
  // mtf: top-2 only; its default policy is random with threshold 0.2 on the normalised gate_2:
  // U = 0.9 against 0.269 / 0.2 = 1.34 keeps it; praxis's layer default policy `all` keeps it.
  nlohmann::json mtf_config = {{"variant", "mtf_top2"},
                               {"scope", "gating"},
                               {"dims", {{"G", 1}, {"S", 1}, {"E", 4}}},
                               {"inputs",
                                {{"logits", tensor_json({"G", "S", "E"}, {1, 1, 4}, logits)},
                                 {"second_policy_uniform", tensor_json({"G", "S"}, {1, 1}, {0.9f})}}}};
  CHECK(step(run_json(mtf_config), "second_policy_keep").i32[0] == 1);
  CHECK(run("praxis_top2", 1, 4, logits, nlohmann::json::object()).find_step("sampled_2") == nullptr);
}

TEST_CASE("topk differences row 04 who gets a slot: token order, or flaxformer's batch-prioritized order",
          "[differences]") {
  // S = 6, E = 2, every token prefers expert 0; token 5 is the most confident. C = 4 in both.
  const std::vector<float> logits = prefer_expert_0({1.0f, 1.1f, 1.2f, 1.3f, 1.4f, 3.0f});
  const moeref::Trace stmoe =
      run("stmoe_topn", 6, 2, logits, {{"capacity_factor_train", 1.0}, {"threshold_train", 1e9}});
  REQUIRE(capacity_of(stmoe) == 4);
  // stmoe (like mtf, lingvo, praxis): token order, tokens 4 and 5 find expert 0 full.
  CHECK(step(stmoe, "mask_flat").i32 == std::vector<int32_t>{1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0});
  const moeref::Trace flax =
      run("flaxformer_tokens_choose", 6, 2, logits,
          {{"num_selected_experts", 1}, {"train_capacity_factor", 1.0}, {"min_expert_capacity", 4}});
  REQUIRE(capacity_of(flax) == 4);
  // flaxformer with BPR (its encoder default): descending top-1 probability, 5, 4, 3, 2 take the
  // slots; 1 and 0 are dropped.
  const moeref::Tensor& priority = step(flax, "token_priority");  // [G, S, E]
  CHECK(priority.i32[5 * 2] == 0);
  CHECK(priority.i32[0] == 5);
  CHECK(priority.i32[1 * 2] == 4);
}

TEST_CASE("topk differences row 05 balance loss: which mask it counts", "[differences]") {
  // The same six tokens: every first choice is expert 0, C = 4, so two first choices overflow.
  const std::vector<float> logits = prefer_expert_0({1.0f, 1.1f, 1.2f, 1.3f, 1.4f, 3.0f});
  // mtf: mask_1 before capacity: density_1[e0] = mean_S = 6/6 (times f32(1/6) as mtf divides).
  const moeref::Trace mtf = run("mtf_top2", 6, 2, logits, {{"expert_capacity", 4}, {"second_policy_train", "none"}});
  CHECK(step(mtf, "density_1").f32[0] == 6.0f * static_cast<float>(1.0 / 6.0));
  // stmoe: mask_1 is a view that the capacity drops reach: 4 of 6.
  const moeref::Trace stmoe =
      run("stmoe_topn", 6, 2, logits, {{"capacity_factor_train", 1.0}, {"threshold_train", 1e9}});
  CHECK(step(stmoe, "density_1").f32[0] == 4.0f / 6.0f);
  // flaxformer: every one of the k choices, before capacity: 6/6 (k = 1 here).
  const moeref::Trace flax =
      run("flaxformer_tokens_choose", 6, 2, logits, {{"num_selected_experts", 1}, {"train_capacity_factor", 1.0}});
  CHECK(step(flax, "tokens_per_group_and_expert").f32[0] == 1.0f);
}

TEST_CASE("topk differences row 06 router z-loss: stmoe only in training, flaxformer always, mtf top-2 never",
          "[differences]") {
  const std::vector<float> logits = {1.0f, 0.0f, 0.5f, 0.5f};
  const moeref::Trace stmoe = run("stmoe_topn", 2, 2, logits, nlohmann::json::object(), false);
  CHECK(loss(stmoe, "router_z_loss") == 0.0f);
  const moeref::Trace flax = run("flaxformer_tokens_choose", 2, 2, logits, nlohmann::json::object(), false);
  CHECK(loss(flax, "router_z_loss") > 0.0f);
  const moeref::Trace mtf = run("mtf_top2", 2, 2, logits, nlohmann::json::object(), false);
  bool has_z = false;
  for (const auto& [name, value] : mtf.losses) has_z = has_z || name == "router_z_loss";
  CHECK_FALSE(has_z);
}

TEST_CASE("topk differences row 07 softmax: torch and tf multiply by 1/sum, jax divides", "[differences]") {
  // logits [0, -0.5, 0]: the middle probability is 0.2326965481 by TF/torch's reciprocal
  // multiply and 0.2326965332 by jax's division (praxis_expert_choice.md).
  const std::vector<float> logits = {0.0f, -0.5f, 0.0f};
  float tf[3], jax[3];
  moeref::ops::tf_softmax(logits.data(), tf, 1, 3);
  moeref::ops::jax_softmax(logits.data(), jax, 1, 3);
  REQUIRE(tf[1] != jax[1]);
  CHECK(step(run("stmoe_topn", 1, 3, logits, nlohmann::json::object()), "raw_gates").f32[1] == tf[1]);
  CHECK(step(run("flaxformer_tokens_choose", 1, 3, logits, nlohmann::json::object()), "router_probs").f32[1] == jax[1]);
  CHECK(step(run("praxis_top2", 1, 3, logits, nlohmann::json::object()), "raw_gates").f32[1] == jax[1]);
}

TEST_CASE("topk differences row 08 equal probabilities: lower expert first, torch.topk declared a near tie",
          "[differences]") {
  const std::vector<float> logits = {0.0f, 0.0f, 0.0f, 0.0f};
  CHECK(step(run("stmoe_topn", 1, 4, logits, nlohmann::json::object()), "gate_indices").i32 ==
        std::vector<int32_t>{0, 1});
  CHECK(step(run("flaxformer_tokens_choose", 1, 4, logits, nlohmann::json::object()), "expert_index").i32 ==
        std::vector<int32_t>{0, 1});
  const moeref::Trace mtf = run("mtf_top2", 1, 4, logits, {{"second_policy_train", "all"}});
  CHECK(step(mtf, "index_1").i32[0] == 0);
  CHECK(step(mtf, "index_2").i32[0] == 1);
}

TEST_CASE("topk differences row 09 a second choice of probability 0: dispatched only by flaxformer's mask",
          "[differences]") {
  // logits [0, -200]: exp(-200) underflows in float32, the second probability is exactly 0.
  const std::vector<float> logits = {0.0f, -200.0f};
  // mtf, policy all: the second choice holds a slot, but dispatch = combine != 0 drops it.
  const moeref::Trace mtf = run("mtf_top2", 1, 2, logits, {{"second_policy_train", "all"}});
  CHECK(step(mtf, "mask_2_flat").i32[0] == 1);
  int32_t mtf_dispatched = 0;
  for (int32_t v : step(mtf, "dispatch_tensor").i32) mtf_dispatched += v;
  CHECK(mtf_dispatched == 1);
  // stmoe: U < 0 / max(t, eps) is false for every draw: rank 1 is never routed, even at t = 0.
  const moeref::Trace stmoe = run("stmoe_topn", 1, 2, logits, {{"threshold_train", 0.0}});
  CHECK(step(stmoe, "should_route").i32 == std::vector<int32_t>{1, 0});
  const moeref::Trace flax = run("flaxformer_tokens_choose", 1, 2, logits, nlohmann::json::object());
  int32_t flax_dispatched = 0;
  for (int32_t v : step(flax, "dispatch_mask").i32) flax_dispatched += v;
  CHECK(flax_dispatched == 2);  // one_hot(token_priority): dispatched with weight 0
}

TEST_CASE("topk differences row 10 train and eval: what the mode changes", "[differences]") {
  const std::vector<float> logits(16, 0.0f);
  // stmoe: capacity factor 1.25 / 2.0 and thresholds by mode; draws in both modes.
  const moeref::Trace stmoe_eval = run("stmoe_topn", 8, 2, logits, nlohmann::json::object(), false);
  CHECK(capacity_of(stmoe_eval) == 8);  // min(8, int(8 * 2 / 2))
  CHECK(stmoe_eval.find_input("route_uniform") != nullptr);
  // flaxformer: capacity factor by mode, jitter only in training.
  const moeref::Trace flax_train =
      run("flaxformer_tokens_choose", 8, 2, logits, {{"jitter_noise", 0.1}, {"min_expert_capacity", 1}});
  const moeref::Trace flax_eval =
      run("flaxformer_tokens_choose", 8, 2, logits, {{"jitter_noise", 0.1}, {"min_expert_capacity", 1}}, false);
  CHECK(capacity_of(flax_train) == 5);  // round(1.25 * 8 / 2) = 5
  CHECK(capacity_of(flax_eval) == 8);   // round(2.0 * 8 / 2) = 8
  // praxis: nothing depends on the mode.
  CHECK(capacity_of(run("praxis_top2", 8, 2, logits, nlohmann::json::object())) ==
        capacity_of(run("praxis_top2", 8, 2, logits, nlohmann::json::object(), false)));
}

TEST_CASE("topk differences row 11 the dispatch tensor the experts read: stmoe's straight-through floats",
          "[differences]") {
  // f32(0.3) as a combine weight: (1 + c) - c = 0.99999994 in float32.
  const float c = 0.3f;
  CHECK((1.0f + c) - c != 1.0f);
  const std::vector<float> logits = {1.0f, 0.0f};
  CHECK(run("stmoe_topn", 1, 2, logits, nlohmann::json::object()).find_step("dispatch_tensor_straight_through") !=
        nullptr);
  CHECK(run("flaxformer_tokens_choose", 1, 2, logits, nlohmann::json::object()).find_step("dispatch_mask") != nullptr);
  CHECK(step(run("mtf_top2", 1, 2, logits, nlohmann::json::object()), "dispatch_tensor").dtype ==
        moeref::DType::kInt32);
}
