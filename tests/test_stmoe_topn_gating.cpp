// stmoe_topn: hand-derived cases for TopNGating.forward (lucidrains/st-moe-pytorch,
// st_moe_pytorch/st_moe_pytorch.py at d94e65d).
//
// Source test numbers: st-moe-pytorch has no test suite (its only script, assert.py, checks that
// distributed and single-process outputs agree on random weights and asserts no numbers), so
// every expected value below is derived by hand in the comments, or computed in the test from the
// source's formula (a softmax restated here), never copied from moeref's output.
#include <cmath>
#include <string>
#include <vector>

#include "moeref/error.hpp"
#include "moeref/ops/tf_softmax.hpp"
#include "moeref/ops/torch_gelu.hpp"
#include "moeref/ops/torch_softmax.hpp"
#include "test_support.hpp"

using moeref::testing::loss;
using moeref::testing::run_json;
using moeref::testing::step;
using moeref::testing::tensor_json;

namespace {

// Scope "gating" with supplied gate_logits [G, S, E] and, optionally, route_uniform [K, G, S].
nlohmann::json gating(int64_t G, int64_t S, int64_t E, const std::vector<float>& logits, nlohmann::json hparams,
                      const std::vector<float>& route_uniform = {}, int64_t K = 2) {
  nlohmann::json config = {{"variant", "stmoe_topn"},
                           {"scope", "gating"},
                           {"dims", {{"G", G}, {"S", S}, {"E", E}}},
                           {"hparams", std::move(hparams)},
                           {"inputs", {{"gate_logits", tensor_json({"G", "S", "E"}, {G, S, E}, logits)}}}};
  if (!route_uniform.empty()) {
    config["inputs"]["route_uniform"] = tensor_json({"K", "G", "S"}, {K, G, S}, route_uniform);
  }
  return config;
}

// torch.softmax of one row as PyTorch's CPU kernel computes it: exp(x - max) * (1 / sum).
std::vector<float> softmax_row(const std::vector<float>& x) {
  moeref::testing::ShiftedExps e = moeref::testing::shifted_exps(x);
  const float inverse = 1.0f / static_cast<float>(e.sum);
  for (float& v : e.t) v = v * inverse;
  return e.t;
}

std::vector<int32_t> ints(const moeref::Tensor& t) {
  const auto& values = t.i32;
  return {values.begin(), values.end()};
}

bool has_step(const moeref::Trace& trace, const std::string& name) { return trace.find_step(name) != nullptr; }

}  // namespace

TEST_CASE("stmoe capacity: max(min(S, int(S * cf / E)), 4), which can exceed S", "[stmoe_topn]") {
  auto capacity = [](int64_t S, int64_t E, double cf) {
    nlohmann::json config = {{"variant", "stmoe_topn"},
                             {"scope", "gating"},
                             {"dims", {{"G", 1}, {"S", S}, {"E", E}, {"M", 2}}},
                             {"hparams", {{"capacity_factor_train", cf}}}};
    return run_json(config).capacity["expert_capacity"].get<int64_t>();
  };
  CHECK(capacity(16, 4, 1.25) == 5);   // int(20.0 / 4) = 5
  CHECK(capacity(12, 4, 0.5) == 4);    // int(1.5) = 1, raised to MIN_EXPERT_CAPACITY
  CHECK(capacity(3, 2, 1.25) == 4);    // min(3, int(1.875)) = 1 -> 4 > S = 3
  CHECK(capacity(8, 2, 100.0) == 8);   // min(S, int(400)) = 8
  CHECK(capacity(40, 3, 1.25) == 16);  // int(50 / 3) = int(16.67) = 16
}

// ---- A fully commented case: ties, a random keep, rank-major queueing, capacity drops -------

TEST_CASE("walkthrough: top-2, C = 4, rank 0 overflows, rank 1 queues behind every rank-0 choice", "[stmoe_topn]") {
  // G = 1, S = 6, E = 3; capacity_factor_train 1.25: int(6 * 1.25 / 3) = int(2.5) = 2 -> C = 4.
  // threshold_train 0.6, so rank 1 is kept iff U < gate_1 / 0.6.
  const std::vector<std::vector<float>> rows = {{0, 0, 0}, {2, 1, 0}, {2, 0, 1}, {2, 1, 1}, {2, 0, 1}, {1, 2, 0}};
  std::vector<float> logits;
  for (const auto& row : rows) logits.insert(logits.end(), row.begin(), row.end());
  // route_uniform [K=2, G=1, S=6]: rank 0 is always routed whatever its draw (0.999 for s0);
  // rank 1 of s1 draws 0.99, every other rank 1 draws 0.
  const std::vector<float> route = {0.999f, 0, 0, 0, 0, 0, 0, 0.99f, 0, 0, 0, 0};
  const moeref::Trace trace = run_json(gating(1, 6, 3, logits, {{"threshold_train", 0.6}}, route));
  CHECK(trace.capacity["expert_capacity"] == 4);

  // raw_gates: the torch softmax of each row.
  std::vector<float> raw;
  for (const auto& row : rows) {
    const std::vector<float> p = softmax_row(row);
    raw.insert(raw.end(), p.begin(), p.end());
  }
  CHECK(step(trace, "raw_gates").f32 == raw);
  // topk, rank-major [K, G, S]. s0 is a three-way tie (experts 0, 1 in ascending order); s3
  // ties experts 1 and 2 for rank 1 (expert 1).
  CHECK(ints(step(trace, "gate_indices")) == std::vector<int32_t>{0, 0, 0, 0, 0, 1, 1, 1, 2, 1, 2, 0});
  // gates_normalized = gates / max(g0 + g1, eps): renormalised over both ranks before any drop.
  const moeref::Tensor& normalized = step(trace, "gates_normalized");
  for (size_t s = 0; s < 6; ++s) {
    const int32_t e0 = step(trace, "gate_indices").i32[s], e1 = step(trace, "gate_indices").i32[6 + s];
    const float g0 = raw[s * 3 + static_cast<size_t>(e0)], g1 = raw[s * 3 + static_cast<size_t>(e1)];
    CHECK(normalized.f32[s] == g0 / (g0 + g1));
    CHECK(normalized.f32[6 + s] == g1 / (g0 + g1));
  }
  // s1: gate_1 = 0.2447 / (0.6652 + 0.2447) = 0.2689; 0.2689 / 0.6 = 0.448 <= 0.99: not routed.
  CHECK(normalized.f32[7] / 0.6f < 0.99f);
  CHECK(ints(step(trace, "should_route")) == std::vector<int32_t>{1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1, 1});
  // Rank 0 choices: experts 0,0,0,0,0,1. Expert 0's positions 0..4: s4 (4 >= C) is dropped.
  CHECK(ints(step(trace, "position_in_expert_0_flat")) == std::vector<int32_t>{0, 1, 2, 3, 4, 0});
  // prev_expert_count after rank 0: kept choices per expert [4, 1, 0].
  CHECK(ints(step(trace, "prev_expert_count_0")) == std::vector<int32_t>{4, 1, 0});
  // Rank 1 (routed: s0->e1, s2->e2, s3->e1, s4->e2, s5->e0): exclusive cumsum of the routed
  // rank-1 mask plus prev_expert_count: s0 0+1 = 1, s2 0+0 = 0, s3 1+1 = 2, s4 1+0 = 1,
  // s5 0+4 = 4 (dropped); s1 not routed: 0.
  CHECK(ints(step(trace, "position_in_expert_1_flat")) == std::vector<int32_t>{1, 0, 0, 2, 1, 4});
  CHECK(ints(step(trace, "prev_expert_count_1")) == std::vector<int32_t>{4, 3, 2});
  CHECK(ints(step(trace, "mask_flat")) == std::vector<int32_t>{1, 1, 1, 1, 0, 1, 1, 0, 1, 1, 1, 0});
  // No renormalisation after drops: s4 keeps only its second gate, unchanged.
  const moeref::Tensor& capped = step(trace, "gates_capacity");
  CHECK(capped.f32[4] == 0.0f);
  CHECK(capped.f32[10] == normalized.f32[10]);
  // Index form: slot -1 where no slot is held.
  CHECK(ints(step(trace, "routing_slot")) == std::vector<int32_t>{0, 1, 1, -1, 2, 0, 3, 2, -1, 1, 0, -1});
  // combine_tensor [G, S, E, C]: s4's weight sits at expert 2, slot 1.
  const moeref::Tensor& combine = step(trace, "combine_tensor");
  CHECK(combine.f32[(4 * 3 + 2) * 4 + 1] == normalized.f32[10]);
  CHECK(combine.f32[(4 * 3 + 0) * 4 + 0] == 0.0f);

  // balance_loss: mask_1 is a view of mask[0], so density_1 counts rank 0 AFTER capacity:
  // expert 0 holds 4 of 6 tokens (not 5), expert 1 holds 1.
  CHECK(step(trace, "density_1").f32 == std::vector<float>{4.0f / 6.0f, 1.0f / 6.0f, 0.0f});
  double proxy[3] = {0, 0, 0};
  for (size_t s = 0; s < 6; ++s) {
    for (size_t e = 0; e < 3; ++e) proxy[e] += static_cast<double>(raw[s * 3 + e]);
  }
  const float p0 = static_cast<float>(proxy[0]) / 6.0f, p1 = static_cast<float>(proxy[1]) / 6.0f;
  const double products = static_cast<double>(p0 * (4.0f / 6.0f)) + static_cast<double>(p1 * (1.0f / 6.0f));
  CHECK(loss(trace, "balance_loss") == (static_cast<float>(products) / 3.0f) * 9.0f);
  // router_z_loss = mean over tokens of logsumexp(gate_logits)^2.
  double z = 0.0;
  for (const auto& row : rows) {
    double sum = 0.0;
    for (float v : row) sum += std::exp(static_cast<double>(v));
    z += std::log(sum) * std::log(sum);
  }
  CHECK(loss(trace, "router_z_loss") == Approx(z / 6.0).epsilon(1e-6));
}

TEST_CASE("stmoe thresholds: one per rank, rank 0 always routed, a list of the wrong length fails", "[stmoe_topn]") {
  // top_n = 3, E = 3; one token with logits [0, 0, 0]: every normalised gate is 1/3.
  // threshold_train [0.0, 1e9]: rank 1's threshold is clamped to eps = 1e-9 (always kept),
  // rank 2 needs U < (1/3) / 1e9 (never, for U = 0.5).
  const std::vector<float> route = {0.9f, 0.5f, 0.5f};
  const moeref::Trace trace = run_json(
      gating(1, 1, 3, {0, 0, 0}, {{"top_n", 3}, {"threshold_train", nlohmann::json::array({0.0, 1e9})}}, route, 3));
  CHECK(ints(step(trace, "should_route")) == std::vector<int32_t>{1, 1, 0});
  CHECK(ints(step(trace, "mask_flat")) == std::vector<int32_t>{1, 1, 0});
  // One number serves every rank: 0.0 keeps both later ranks.
  const moeref::Trace all = run_json(gating(1, 1, 3, {0, 0, 0}, {{"top_n", 3}, {"threshold_train", 0.0}}, route, 3));
  CHECK(ints(step(all, "should_route")) == std::vector<int32_t>{1, 1, 1});
  // assert len(threshold_train) == top_n - 1
  CHECK_THROWS_WITH(
      run_json(gating(1, 1, 3, {0, 0, 0}, {{"top_n", 3}, {"threshold_train", nlohmann::json::array({0.1, 0.2, 0.3})}})),
      Catch::Contains("hparams.threshold_train") && Catch::Contains("top_n - 1 = 2"));
  // Evaluation reads threshold_eval and still draws: U = 0.5 against (1/2) / 0.2 keeps rank 1.
  nlohmann::json eval = gating(1, 1, 2, {0, 0}, {{"threshold_eval", 0.2}, {"threshold_train", 1e9}}, {0.9f, 0.5f});
  eval["train"] = false;
  const moeref::Trace evaluated = run_json(eval);
  CHECK(ints(step(evaluated, "should_route")) == std::vector<int32_t>{1, 1});
  CHECK(loss(evaluated, "balance_loss") == 0.0f);
  CHECK(loss(evaluated, "router_z_loss") == 0.0f);
  CHECK_FALSE(has_step(evaluated, "density_1"));
}

TEST_CASE("stmoe refuses what the source cannot run", "[stmoe_topn]") {
  using Catch::Contains;
  const std::vector<float> logits = {0, 1, 2};
  CHECK_THROWS_WITH(run_json(gating(1, 1, 3, logits, {{"top_n", 1}})), Contains("hparams.top_n"));
  CHECK_THROWS_WITH(run_json(gating(1, 1, 3, logits, {{"top_n", 4}})), Contains("hparams.top_n") && Contains("E = 3"));
  CHECK_THROWS_WITH(run_json(gating(1, 1, 3, logits, {{"differentiable_topk", true}})),
                    Contains("hparams.differentiable_topk"));
  CHECK_THROWS_WITH(run_json(gating(1, 1, 3, logits, {{"threshold_train", "high"}})),
                    Contains("hparams.threshold_train"));
  CHECK_THROWS_AS(run_json(gating(1, 1, 3, logits, {{"threshold_train", nlohmann::json::array()}})),
                  moeref::InputError);
  // Scope layer: H = int(M * expert_hidden_mult * 2 / 3) must be at least 1.
  nlohmann::json layer = {{"variant", "stmoe_topn"},
                          {"dims", {{"G", 1}, {"S", 4}, {"E", 2}, {"M", 2}}},
                          {"hparams", {{"expert_hidden_mult", 0.5}}}};
  CHECK_THROWS_WITH(run_json(layer), Contains("hparams.expert_hidden_mult"));
}

TEST_CASE("stmoe straight-through dispatch: (1 + c) - c is not always 1 in float32", "[stmoe_topn]") {
  // The forward value of dispatch_tensor + combine_tensor - combine_tensor.detach().
  // c = f32(0.3) = 0.300000012: f32(1 + c) = 1.30000007 rounds up by 2^-24 and the
  // subtraction cannot give it back. c = f32(0.7) happens to round back to 1.
  const float c = 0.3f;
  CHECK((1.0f + c) - c == 0.99999994f);
  const float c_back = 0.7f;
  CHECK((1.0f + c_back) - c_back == 1.0f);
  // Token with logits [0, 0]: both gates 1/2 after renormalisation; (1 + 0.5) - 0.5 = 1 exactly.
  const moeref::Trace trace = run_json(gating(1, 1, 2, {0, 0}, {{"threshold_train", 0.0}}));
  const moeref::Tensor& straight = step(trace, "dispatch_tensor_straight_through");
  const moeref::Tensor& combine = step(trace, "combine_tensor");
  const moeref::Tensor& dispatch = step(trace, "dispatch_tensor");
  for (size_t i = 0; i < straight.f32.size(); ++i) {
    CHECK(straight.f32[i] == (static_cast<float>(dispatch.i32[i]) + combine.f32[i]) - combine.f32[i]);
  }
  CHECK(combine.f32[0] == 0.5f);
  CHECK(straight.f32[0] == 1.0f);
  // Without straight-through, the experts read the 0/1 dispatch and no float step is recorded.
  const moeref::Trace plain = run_json(gating(1, 1, 2, {0, 0}, {{"straight_through_dispatch_tensor", false}}));
  CHECK_FALSE(has_step(plain, "dispatch_tensor_straight_through"));
}

TEST_CASE("stmoe Gumbel noise: -log(-log(U)), logs clamped at 1e-20, z-loss on un-noised logits", "[stmoe_topn]") {
  nlohmann::json config = gating(1, 1, 3, {0.5f, 0.0f, -0.5f}, {{"noise_gates", true}, {"noise_mult", 2.0}});
  config["inputs"]["gumbel_uniform"] = tensor_json({"G", "S", "E"}, {1, 1, 3}, {0.5f, 0.0f, 0.25f});
  const moeref::Trace trace = run_json(config);
  const moeref::Tensor& noise = step(trace, "noise");
  auto log32 = [](float t) { return static_cast<float>(std::log(static_cast<double>(std::max(t, 1e-20f)))); };
  // U = 0.5: -log(-log 0.5) = -log(0.6931472) = 0.36651292.
  CHECK(noise.f32[0] == Approx(0.36651292).epsilon(1e-7));
  // U = 0: log(clamp(0, 1e-20)) = -46.0517; -log(46.0517) = -3.8298.
  CHECK(noise.f32[1] == -log32(-log32(0.0f)));
  CHECK(noise.f32[1] == Approx(-3.8298).epsilon(1e-4));
  const moeref::Tensor& noised = step(trace, "maybe_noised_gate_logits");
  CHECK(noised.f32[2] == -0.5f + noise.f32[2] * 2.0f);
  // The z-loss reads gate_logits, not the noised ones: lse(0.5, 0, -0.5)^2.
  const double lse = std::log(std::exp(0.5) + 1.0 + std::exp(-0.5));
  CHECK(loss(trace, "router_z_loss") == Approx(lse * lse).epsilon(1e-6));
}

TEST_CASE("stmoe torch ops: softmax is tf's reciprocal multiply, erf GELU", "[stmoe_topn][ops]") {
  const float logits[4] = {0.1f, -2.0f, 3.5f, 0.0f};
  float torch_probs[4], tf_probs[4];
  moeref::ops::torch_softmax(logits, torch_probs, 1, 4);
  moeref::ops::tf_softmax(logits, tf_probs, 1, 4);
  for (int e = 0; e < 4; ++e) CHECK(torch_probs[e] == tf_probs[e]);
  // gelu(x) = x * Phi(x): gelu(1) = 0.8413447, gelu(-1) = -0.15865526, gelu(0) = 0.
  CHECK(moeref::ops::torch_gelu(1.0f) == Approx(0.841344746).epsilon(1e-7));
  CHECK(moeref::ops::torch_gelu(-1.0f) == Approx(-0.158655254).epsilon(1e-6));
  CHECK(moeref::ops::torch_gelu(0.0f) == 0.0f);
}
