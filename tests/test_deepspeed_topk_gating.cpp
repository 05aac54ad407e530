// deepspeed_topk: DeepSpeed's own TestTopkGate numbers, the 'probs' drop policy's negative-logit
// quirk, l_aux divided by k, and the errors the source raises.
//
// Source tests: microsoft/DeepSpeed, tests/unit/moe/test_moe.py at 38327e0, TestTopkGate.test: two
// logits tensors (S = 4, E = 4, k = 2 and S = 4, E = 6, k = 3; capacity_factor 1, min_capacity 1,
// C = 2), each run on ranks 0 and 1 with the logits scaled by rank + 1, and the expected dispatch
// entries [s, e, c] for drop_policy 'probs' and 'position'. The quirk example is from the reading
// notes (variants-peers.md §5.4), re-derived by hand below.
#include <algorithm>
#include <array>
#include <vector>

#include "torch_test_helpers.hpp"

using namespace moeref::testing;

namespace {

// deepspeed_topk in scope "gating" on supplied logits [1, S, E].
nlohmann::json topk_gating(int64_t S, int64_t E, const std::vector<float>& logits, nlohmann::json hparams) {
  return gating_on_logits("deepspeed_topk", S, E, logits, std::move(hparams));
}

// The dispatched entries of dispatch_mask [1, S, E, C] as (s, e, c), in row-major order: the form
// of the source test's `*_sec_sparse` tensors.
std::vector<std::array<int64_t, 3>> dispatched(const moeref::Trace& trace) {
  const moeref::Tensor& dispatch = step(trace, "dispatch_mask");
  const int64_t E = dispatch.shape[2], C = dispatch.shape[3];
  std::vector<std::array<int64_t, 3>> entries;
  for (int64_t i = 0; i < dispatch.num_elements(); ++i) {
    if (dispatch.i32[static_cast<size_t>(i)] != 0) entries.push_back({i / (E * C), (i / C) % E, i % C});
  }
  return entries;
}

std::vector<float> scaled(std::vector<float> values, float factor) {
  for (float& value : values) value *= factor;
  return values;
}

}  // namespace

TEST_CASE("deepspeed_topk: TestTopkGate, s=4 e=4 k=2", "[deepspeed_topk][source]") {
  const std::vector<float> logits = {0.11f, 0.2f, 0.1f, 0.3f, 0.3f, 0.4f,  0.11f, 0.1f,
                                     0.11f, 0.1f, 0.6f, 0.5f, 0.1f, 0.11f, 0.7f,  0.8f};
  for (const float rank_scale : {1.0f, 2.0f}) {
    INFO("logits *= " << rank_scale);
    const nlohmann::json hp = {{"k", 2}, {"capacity_factor", 1}, {"min_capacity", 1}};
    nlohmann::json probs = hp, position = hp;
    probs["drop_policy"] = "probs";
    position["drop_policy"] = "position";
    const moeref::Trace by_probs = run_json(topk_gating(4, 4, scaled(logits, rank_scale), probs));
    CHECK(by_probs.capacity["expert_capacity"] == 2);
    CHECK(dispatched(by_probs) == std::vector<std::array<int64_t, 3>>{
                                      {0, 1, 0}, {1, 0, 0}, {1, 1, 1}, {2, 2, 0}, {2, 3, 0}, {3, 2, 1}, {3, 3, 1}});
    const moeref::Trace by_position = run_json(topk_gating(4, 4, scaled(logits, rank_scale), position));
    CHECK(dispatched(by_position) == std::vector<std::array<int64_t, 3>>{
                                         {0, 1, 0}, {0, 3, 0}, {1, 0, 0}, {1, 1, 1}, {2, 2, 0}, {2, 3, 1}, {3, 2, 1}});
  }
}

TEST_CASE("deepspeed_topk: TestTopkGate, s=4 e=6 k=3", "[deepspeed_topk][source]") {
  const std::vector<float> logits = {0.5858f, 0.4801f, 0.6269f, 0.5397f, 0.9722f, 0.7034f, 0.5445f, 0.6332f,
                                     0.4519f, 0.6308f, 0.0519f, 0.6450f, 0.4874f, 0.8110f, 0.7467f, 0.8474f,
                                     0.0277f, 0.3068f, 0.8570f, 0.6714f, 0.5310f, 0.3274f, 0.4836f, 0.9892f};
  for (const float rank_scale : {1.0f, 2.0f}) {
    INFO("logits *= " << rank_scale);
    const nlohmann::json hp = {{"k", 3}, {"capacity_factor", 1}, {"min_capacity", 1}};
    nlohmann::json probs = hp, position = hp;
    probs["drop_policy"] = "probs";
    position["drop_policy"] = "position";
    const moeref::Trace by_probs = run_json(topk_gating(4, 6, scaled(logits, rank_scale), probs));
    CHECK(by_probs.capacity["expert_capacity"] == 2);
    CHECK(dispatched(by_probs) == std::vector<std::array<int64_t, 3>>{{0, 2, 0},
                                                                      {0, 4, 0},
                                                                      {0, 5, 0},
                                                                      {1, 3, 0},
                                                                      {2, 1, 0},
                                                                      {2, 2, 1},
                                                                      {2, 3, 1},
                                                                      {3, 0, 0},
                                                                      {3, 1, 1},
                                                                      {3, 5, 1}});
    const moeref::Trace by_position = run_json(topk_gating(4, 6, scaled(logits, rank_scale), position));
    CHECK(dispatched(by_position) == std::vector<std::array<int64_t, 3>>{{0, 2, 0},
                                                                         {0, 4, 0},
                                                                         {0, 5, 0},
                                                                         {1, 1, 0},
                                                                         {1, 3, 0},
                                                                         {1, 5, 1},
                                                                         {2, 1, 1},
                                                                         {2, 2, 1},
                                                                         {2, 3, 1},
                                                                         {3, 0, 0}});
  }
}

TEST_CASE("deepspeed_topk: 'probs' ranks by logits with 0 for unchosen entries, so negative logits lose",
          "[deepspeed_topk][quirk]") {
  // k = 2, capacity_factor 1, min_capacity 1: C = ceil(f32(4 / 3) * 2) = ceil(2.6666667) = 3.
  // Token choices (top-2 logits): t0 {e0 -1, e1 -2}; t1 {e1 -0.5, e0 -5}; t2 {e2 -0.1, e1 -0.2};
  // t3 {e1 -0.3, e2 -0.4}. Expert 0 has only two requests (t0, t1) and room for three, yet its
  // column of topk_masked_gates is [-1, -5, 0, 0]: the top 3 are t2 and t3 (0, not chosen) and t0,
  // so t1 is dropped. Expert 2: [0, 0, -0.1, -0.4] drops t3. 'position' keeps both.
  const std::vector<float> logits = {-1, -2, -3, -5, -0.5f, -6, -4, -0.2f, -0.1f, -3.5f, -0.3f, -0.4f};
  const moeref::Trace by_probs =
      run_json(topk_gating(4, 3, logits, {{"k", 2}, {"min_capacity", 1}, {"drop_policy", "probs"}}));
  CHECK(by_probs.capacity["expert_capacity"] == 3);
  CHECK(step(by_probs, "mask").i32 == std::vector<int32_t>{1, 1, 0, 1, 1, 0, 0, 1, 1, 0, 1, 1});
  CHECK(step(by_probs, "mask_capacity").i32 == std::vector<int32_t>{1, 0, 0, 0, 1, 0, 0, 1, 1, 0, 1, 0});
  const moeref::Trace by_position =
      run_json(topk_gating(4, 3, logits, {{"k", 2}, {"min_capacity", 1}, {"drop_policy", "position"}}));
  // 'position': e1 is chosen by all four tokens; t3 is its fourth and is dropped. t1 keeps e0, t3 keeps e2.
  CHECK(step(by_position, "mask_capacity").i32 == std::vector<int32_t>{1, 1, 0, 1, 1, 0, 0, 1, 1, 0, 0, 1});
  // routing in index form, ranks in torch.topk's order (larger logit first): t1 is [e1, e0], t2 [e2, e1].
  CHECK(step(by_position, "routing_expert").i32 == std::vector<int32_t>{0, 1, 1, 0, 2, 1, 1, 2});
  CHECK(step(by_position, "routing_slot").i32 == std::vector<int32_t>{0, 0, 1, 1, 0, 2, -1, 1});
  // l_aux = mean(me * ce) * E * E / k, ce counting both choices (mask before capacity), the same
  // for both policies.
  CHECK(loss(by_probs, "l_aux") == loss(by_position, "l_aux"));
}

TEST_CASE("deepspeed_topk: l_aux divides by k", "[deepspeed_topk][loss]") {
  // Two tokens, E = 3, k = 3: every expert is chosen by both tokens, ce = [1, 1, 1]; me is the mean
  // softmax, summing to 1: l_aux = mean(me) * 9 / 3 = (1/3) * 3 = 1.
  const moeref::Trace trace = run_json(topk_gating(2, 3, {1, 2, 3, 0, 0, 5}, {{"k", 3}, {"min_capacity", 0}}));
  CHECK(loss(trace, "l_aux") == Approx(1.0f).epsilon(1e-6));
  // Nothing dropped (C = ceil(f32(2/3) * 3) = 2 = S): each token's three weights are its softmax
  // renormalised by its own sum, 1 up to rounding.
  const moeref::Tensor& weight = step(trace, "routing_weight");
  CHECK(weight.f32[0] + weight.f32[1] + weight.f32[2] == Approx(1.0f).epsilon(1e-6));
}

TEST_CASE("deepspeed_topk: the source's errors are refused with the field named", "[deepspeed_topk][errors]") {
  const std::vector<float> logits = {1, 0, 0, 0, 1, 0};
  // drop_tokens False: `locations` is never assigned and topkgating raises.
  CHECK_THROWS_WITH(run_json(topk_gating(2, 3, logits, {{"k", 2}, {"drop_tokens", false}})),
                    Catch::Contains("hparams.drop_tokens") && Catch::Contains("7138"));
  // k > E: torch.topk(logits, k) raises.
  CHECK_THROWS_WITH(run_json(topk_gating(2, 3, logits, {{"k", 4}})),
                    Catch::Contains("hparams.k") && Catch::Contains("at most E = 3"));
  // 'probs' with C > S: torch.topk(topk_masked_gates, k=capacity, dim=0) raises. C = max(ceil(..), 4) = 4 > 2.
  CHECK_THROWS_WITH(run_json(topk_gating(2, 3, logits, {{"k", 2}})),
                    Catch::Contains("hparams.capacity_factor") && Catch::Contains("selected index k out of range"));
  // C = 0: F.one_hot(..., num_classes=0) raises.
  CHECK_THROWS_WITH(
      run_json(topk_gating(2, 3, logits,
                           {{"k", 2}, {"capacity_factor", 0}, {"min_capacity", 0}, {"drop_policy", "position"}})),
      Catch::Contains("num_classes=0"));
  // k has no default.
  CHECK_THROWS_WITH(run_json(topk_gating(2, 3, logits, nlohmann::json::object())), Catch::Contains("hparams.k"));
}
