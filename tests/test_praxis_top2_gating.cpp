// praxis_top2: hand-derived cases for every policy, capacity rule and padding edge of
// top2_gating_on_logits (google/praxis, praxis/gshard_utils.py, at feeaff1).
//
// Source test numbers: praxis has no gshard_utils_test.py (not at feeaff1 and not anywhere in
// the mirrored history), and the MoE tests in praxis/layers/transformers_test.py
// (test_transformer_moe_dense_layer_gating, test_transformer_moe_dense_layer) are skipped
// (@absltest.SkipTest) and only compare two stackings with random weights; they hold no gating
// numbers. Every expected value below is therefore derived by hand in the comments, or computed
// independently in the test from the source's formula, never copied from moeref's output.
#include <cmath>
#include <limits>
#include <vector>

#include "moeref/error.hpp"
#include "moeref/ops/jax_softmax.hpp"
#include "moeref/ops/mtf_softmax.hpp"
#include "moeref/ops/praxis_capacity.hpp"
#include "moeref/ops/praxis_grouping.hpp"
#include "test_support.hpp"

using moeref::testing::loss;
using moeref::testing::run_json;
using moeref::testing::step;
using moeref::testing::tensor_json;

namespace {

// A scope "gating" config with supplied logits [G, S, E].
nlohmann::json gating(int64_t G, int64_t S, int64_t E, const std::vector<float>& logits, nlohmann::json hparams) {
  return moeref::testing::gating_on_logits("praxis_top2", G, S, E, logits, std::move(hparams));
}

// jax.nn.softmax of one row, restated from jax/_src/nn/functions.py `_softmax`:
// exp(x - max) / sum(exp(x - max)), exp in double rounded once, float32 division.
std::vector<float> softmax_row(const std::vector<float>& x) {
  moeref::testing::ShiftedExps e = moeref::testing::shifted_exps(x);
  const float z = static_cast<float>(e.sum);
  for (float& v : e.t) v = v / z;
  return e.t;
}

std::vector<int32_t> ints(const moeref::Tensor& t) {
  const auto& values = t.i32;
  return {values.begin(), values.end()};
}
int32_t int_step(const moeref::Trace& trace, const std::string& name) { return step(trace, name).i32.at(0); }
float float_step(const moeref::Trace& trace, const std::string& name) { return step(trace, name).f32.at(0); }

size_t step_position(const moeref::Trace& trace, const std::string& name) {
  for (size_t i = 0; i < trace.steps.size(); ++i) {
    if (trace.steps[i].name == name) return i;
  }
  FAIL("no step " << name);
  return 0;
}

}  // namespace

// ---- Capacity, grouping and softmax building blocks ----------------------------------------

TEST_CASE("praxis capacity: no 0 -> 4 floor, None -> 1, round up to 4 only when raised", "[praxis_top2][ops]") {
  using moeref::ops::praxis_top2_expert_capacity;
  // top2_gating_on_logits: auto = int(S * cf / E); C0 None -> 1; C0 < auto -> ((auto + 3) // 4) * 4.
  // S=8, cf=2, E=4: auto = int(4.0) = 4; C0 = 0 < 4 -> roundup4(4) = 4.
  CHECK(praxis_top2_expert_capacity(8, 2.0, 0, 4).expert_capacity == 4);
  // S=5, cf=2, E=4: auto = int(2.5) = 2; 0 < 2 -> roundup4(2) = 4.
  CHECK(praxis_top2_expert_capacity(5, 2.0, 0, 4).expert_capacity == 4);
  // S=3, cf=2, E=8: auto = int(0.75) = 0; 0 < 0 is false -> C = 0. (lingvo sets auto = 4 here.)
  const auto zero = praxis_top2_expert_capacity(3, 2.0, 0, 8);
  CHECK(zero.expert_capacity == 0);
  CHECK(zero.auto_expert_capacity == 0);
  CHECK_FALSE(zero.raised);
  // C0 None -> 1: S=2, cf=2, E=4: auto = 1; 1 < 1 false -> C = 1. S=3, E=8: auto = 0 -> C = 1.
  CHECK(praxis_top2_expert_capacity(2, 2.0, std::nullopt, 4).expert_capacity == 1);
  CHECK(praxis_top2_expert_capacity(3, 2.0, std::nullopt, 8).expert_capacity == 1);
  // C0 None -> 1 < auto = 4 -> 4.
  CHECK(praxis_top2_expert_capacity(8, 2.0, std::nullopt, 4).expert_capacity == 4);
  // C0 = 3 >= auto = 2: kept as is, not rounded to a multiple of 4.
  CHECK(praxis_top2_expert_capacity(5, 2.0, 3, 4).expert_capacity == 3);
  // C0 = 9 >= auto = 8 (S=16, cf=2, E=4): kept as 9. C0 = 5 < 8: raised to 8.
  CHECK(praxis_top2_expert_capacity(16, 2.0, 9, 4).expert_capacity == 9);
  CHECK(praxis_top2_expert_capacity(16, 2.0, 5, 4).expert_capacity == 8);
  // Python doubles: 10 * 1.1 = 11.000000000000002 -> 11 -> roundup4 = 12;
  // 100 * 0.29 = 28.999999999999996 -> 28 (already a multiple of 4).
  CHECK(praxis_top2_expert_capacity(10, 1.1, 0, 1).auto_expert_capacity == 11);
  CHECK(praxis_top2_expert_capacity(10, 1.1, 0, 1).expert_capacity == 12);
  CHECK(praxis_top2_expert_capacity(100, 0.29, 0, 1).expert_capacity == 28);
  // capacity_factor falsy (None or 0.0): C = expert_capacity_dim, whatever S and E are.
  CHECK(praxis_top2_expert_capacity(100, std::nullopt, 3, 4).expert_capacity == 3);
  CHECK(praxis_top2_expert_capacity(100, 0.0, 3, 4).expert_capacity == 3);
  CHECK_FALSE(praxis_top2_expert_capacity(100, 0.0, 3, 4).used_capacity_factor);
  // assert capacity_factor or expert_capacity_dim
  CHECK_THROWS_AS(praxis_top2_expert_capacity(8, 0.0, 0, 4), moeref::InputError);
  CHECK_THROWS_AS(praxis_top2_expert_capacity(8, std::nullopt, std::nullopt, 4), moeref::InputError);
  CHECK_THROWS_AS(praxis_top2_expert_capacity(8, 0.0, std::nullopt, 4), moeref::InputError);
}

TEST_CASE("praxis grouping: min_group_size lowers the number of groups", "[praxis_top2][ops]") {
  using moeref::ops::praxis_moe_groups;
  // TransformerFeedForwardMoe._dispatch_and_combine_expert_outputs.
  CHECK(praxis_moe_groups(12, 4, std::nullopt).num_groups == 4);
  CHECK(praxis_moe_groups(12, 4, std::nullopt).group_size == 3);
  // 12 / 4 = 3 < 6: num_groups = (12 + 5) // 6 = 2, g_len = 6.
  CHECK(praxis_moe_groups(12, 4, 6).num_groups == 2);
  CHECK(praxis_moe_groups(12, 4, 6).group_size == 6);
  // 12 / 4 = 3 < 5: num_groups = (12 + 4) // 5 = 3, g_len = 4.
  CHECK(praxis_moe_groups(12, 4, 5).num_groups == 3);
  // 10 / 2 = 5 >= 4: unchanged.
  CHECK(praxis_moe_groups(10, 2, 4).num_groups == 2);
  // 10 % 4 != 0 -> ValueError; 10 / 4 = 2.5 < 3: (10 + 2) // 3 = 4 groups, still 10 % 4 != 0.
  CHECK_THROWS_AS(praxis_moe_groups(10, 4, std::nullopt), moeref::InputError);
  CHECK_THROWS_AS(praxis_moe_groups(10, 4, 3), moeref::InputError);
}

TEST_CASE("jax softmax divides by the sum, mtf subtracts logsumexp", "[praxis_top2][ops]") {
  // Three equal logits: jax gives exp(0) / 3 = f32(1/3) = 0.333333343; mtf gives
  // exp(0 - f32(log 3)) = 0.333333313. The two frameworks disagree in the last bits.
  const float logits[3] = {0.0f, 0.0f, 0.0f};
  float jax[3], mtf[3];
  moeref::ops::jax_softmax(logits, jax, 1, 3);
  moeref::ops::mtf_softmax(logits, mtf, 1, 3);
  CHECK(jax[0] == 1.0f / 3.0f);
  CHECK(jax[0] == 0.333333343f);
  CHECK(mtf[0] == 0.333333313f);
  CHECK(jax[0] != mtf[0]);
  const std::vector<float> row = {1.0f, 2.0f, 3.0f};
  float out[3];
  moeref::ops::jax_softmax(row.data(), out, 1, 3);
  const std::vector<float> expected = softmax_row(row);
  for (int e = 0; e < 3; ++e) CHECK(out[e] == expected[static_cast<size_t>(e)]);
}

// ---- A fully commented minimal case -------------------------------------------------------

TEST_CASE("walkthrough: legacy, policy all, C = 1, first and second choices dropped", "[praxis_top2]") {
  // G=1, S=4, E=2. capacity_factor null, expert_capacity_dim 1 -> C = 1 (no rule applies).
  // Logits per token: t0 [2,0], t1 [2,0], t2 [0,2], t3 [2,0].
  const moeref::Trace trace =
      run_json(gating(1, 4, 2, {2, 0, 2, 0, 0, 2, 2, 0}, {{"capacity_factor", nullptr}, {"expert_capacity_dim", 1}}));
  CHECK(trace.capacity["expert_capacity"] == 1);
  // softmax([2, 0]) = [p, q] with p = 1 / (1 + e^-2), q = e^-2 / (1 + e^-2) in float32.
  const std::vector<float> pq = softmax_row({2.0f, 0.0f});
  const float p = pq[0], q = pq[1];
  CHECK(step(trace, "raw_gates").f32 == std::vector<float>{p, q, p, q, q, p, p, q});
  // index_1 = argmax: experts 0, 0, 1, 0; mask_1 is its one-hot.
  CHECK(ints(step(trace, "index_1")) == std::vector<int32_t>{0, 0, 1, 0});
  CHECK(ints(step(trace, "mask_1")) == std::vector<int32_t>{1, 0, 1, 0, 0, 1, 1, 0});
  // gate_1 = p for every token; gates_without_top_1 keeps the other expert; index_2 = the other one.
  CHECK(step(trace, "gate_1").f32 == std::vector<float>{p, p, p, p});
  CHECK(ints(step(trace, "index_2")) == std::vector<int32_t>{1, 1, 0, 1});
  CHECK(step(trace, "gate_2").f32 == std::vector<float>{q, q, q, q});
  // Legacy renormalisation before capacity, true division: p / ((p + q) + f32(1e-9)).
  const float d = (p + q) + 1e-9f;
  CHECK(step(trace, "gate_1_normalized").f32.at(0) == p / d);
  CHECK(step(trace, "gate_2_normalized").f32.at(0) == q / d);
  // position_in_expert_1 = exclusive cumsum over S of mask_1 (not multiplied by the mask):
  // expert 0 column 0,1,2,2; expert 1 column 0,0,0,1.
  CHECK(ints(step(trace, "position_in_expert_1")) == std::vector<int32_t>{0, 0, 1, 0, 2, 0, 2, 1});
  // density_1 = mean_S mask_1 = [3/4, 1/4]; density_1_proxy = mean_S raw_gates;
  // aux_loss = mean_E(proxy * density) * E^2 (legacy: density_denom = 1).
  CHECK(step(trace, "density_1").f32 == std::vector<float>{0.75f, 0.25f});
  const float proxy_0 = static_cast<float>(3.0 * p + q) / 4.0f;
  const float proxy_1 = static_cast<float>(3.0 * q + p) / 4.0f;
  CHECK(step(trace, "density_1_proxy").f32 == std::vector<float>{proxy_0, proxy_1});
  const float aux =
      static_cast<float>(static_cast<double>(proxy_0 * 0.75f) + static_cast<double>(proxy_1 * 0.25f)) / 2.0f * 4.0f;
  CHECK(loss(trace, "aux_loss") == aux);
  CHECK(loss(trace, "aux_moe_load_balance_loss") == aux);  // weight 1.0
  // over_capacity_1: entries with mask_1 * position >= 1: t1 (1) and t3 (2) -> 2 / sum(mask_1) 4.
  CHECK(float_step(trace, "over_capacity_1") == 0.5f);
  // Capacity 1 keeps t0 in expert 0 and t2 in expert 1.
  CHECK(ints(step(trace, "mask_1_capacity")) == std::vector<int32_t>{1, 0, 0, 0, 0, 1, 0, 0});
  CHECK(ints(step(trace, "mask_1_count")) == std::vector<int32_t>{1, 1});
  CHECK(ints(step(trace, "mask_1_flat")) == std::vector<int32_t>{1, 0, 1, 0});
  CHECK(ints(step(trace, "position_in_expert_1_flat")) == std::vector<int32_t>{0, 0, 0, 0});
  // Second choices queue behind the kept first choices (mask_1_count = [1, 1]): the exclusive
  // cumsum of mask_2 is [0,0], [0,1], [0,2], [1,2] per token, plus 1 in both columns.
  CHECK(ints(step(trace, "position_in_expert_2")) == std::vector<int32_t>{1, 1, 1, 2, 1, 3, 2, 3});
  // Every second choice is at a position >= 1: all four dropped, ratio 4 / 4.
  CHECK(float_step(trace, "over_capacity_2") == 1.0f);
  CHECK(ints(step(trace, "mask_2_flat")) == std::vector<int32_t>{0, 0, 0, 0});
  // Legacy: the surviving first gate stays p / d < 1 (no renormalisation after drops).
  CHECK(step(trace, "gate_1_capacity").f32 == std::vector<float>{p / d, 0.0f, p / d, 0.0f});
  const moeref::Tensor& combine = step(trace, "combine_tensor");
  REQUIRE(combine.shape == std::vector<int64_t>{1, 4, 2, 1});
  CHECK(combine.f32 == std::vector<float>{p / d, 0, 0, 0, 0, p / d, 0, 0});
  CHECK(ints(step(trace, "dispatch_tensor")) == std::vector<int32_t>{1, 0, 0, 0, 0, 1, 0, 0});
  CHECK(ints(step(trace, "dispatch_count_tensor")) == std::vector<int32_t>{1, 0, 1, 0});
  CHECK(int_step(trace, "dispatch_0") == 2);
  CHECK(int_step(trace, "dispatch_1") == 2);
  CHECK(int_step(trace, "dispatch_2") == 0);
}

TEST_CASE("non-legacy renormalises after capacity: a lone surviving gate becomes exactly 1", "[praxis_top2]") {
  // The walkthrough's logits with legacy_mtf_behavior False: t0 keeps only its first expert,
  // so gate_1 / (gate_1 + 0) = 1 exactly; t1 lost both, denominator 0 -> 1, gates 0.
  const moeref::Trace trace =
      run_json(gating(1, 4, 2, {2, 0, 2, 0, 0, 2, 2, 0},
                      {{"capacity_factor", nullptr}, {"expert_capacity_dim", 1}, {"legacy_mtf_behavior", false}}));
  const std::vector<float> pq = softmax_row({2.0f, 0.0f});
  CHECK(step(trace, "gate_1_capacity").f32 == std::vector<float>{pq[0], 0.0f, pq[0], 0.0f});
  CHECK(step(trace, "denom").f32 == std::vector<float>{pq[0], 1.0f, pq[0], 1.0f});
  CHECK(step(trace, "gate_1_normalized").f32 == std::vector<float>{1.0f, 0.0f, 1.0f, 0.0f});
  CHECK(step(trace, "combine_tensor").f32 == std::vector<float>{1, 0, 0, 0, 0, 1, 0, 0});
  // The renormalisation steps come after the capacity steps.
  CHECK(step_position(trace, "denom") > step_position(trace, "gate_2_capacity"));
  // Without paddings importance is all ones: density_denom = 4/4 + 1e-6 = f32(1.000001).
  CHECK(step(trace, "density_denom").f32 == std::vector<float>{1.0f + 1e-6f});
  CHECK(step(trace, "density_1").f32 == std::vector<float>{0.75f / (1.0f + 1e-6f), 0.25f / (1.0f + 1e-6f)});
}

// ---- Paddings: int32 masks truncate fractions ------------------------------------------------

namespace {
// G=1, S=4, E=3, C = 4 (capacity_factor null). Logits t0 [2,1,0], t1 [0,2,1], t2 [1,0,2], t3 [2,0,1];
// paddings [0, 0.5, 1, 2^-26].
nlohmann::json padded_config(bool legacy) {
  nlohmann::json config =
      gating(1, 4, 3, {2, 1, 0, 0, 2, 1, 1, 0, 2, 2, 0, 1},
             {{"capacity_factor", nullptr}, {"expert_capacity_dim", 4}, {"legacy_mtf_behavior", legacy}});
  config["inputs"]["paddings"] = tensor_json({"G", "S"}, {1, 4}, {0.0f, 0.5f, 1.0f, std::ldexp(1.0f, -26)});
  return config;
}
}  // namespace

TEST_CASE("paddings: fractional padding removes the first choice but keeps the second", "[praxis_top2][paddings]") {
  const moeref::Trace trace = run_json(padded_config(true));
  // nonpaddings = 1.0 - paddings in float32; 1 - 2^-26 rounds to 1.0 (half an ulp below 1 is 2^-25).
  REQUIRE(1.0f - std::ldexp(1.0f, -26) == 1.0f);
  CHECK(step(trace, "nonpaddings").f32 == std::vector<float>{1.0f, 0.5f, 0.0f, 1.0f});
  CHECK(ints(step(trace, "index_1")) == std::vector<int32_t>{0, 1, 2, 0});
  // mask_1 *= nonpaddings.astype(int32): 0.5 truncates to 0, so t1 loses its first choice.
  CHECK(ints(step(trace, "mask_1_nonpadding")) == std::vector<int32_t>{1, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0});
  // The proxy keeps the fraction: t1's raw gates times 0.5.
  const std::vector<float> r1 = softmax_row({0, 2, 1});
  const moeref::Tensor& proxy = step(trace, "density_1_proxy_per_token");
  CHECK(proxy.f32.at(3) == r1[0] * 0.5f);
  CHECK(proxy.f32.at(4) == r1[1] * 0.5f);
  CHECK(proxy.f32.at(6) == 0.0f);
  // t1 and t2 have no first choice, so gates_without_top_1 = raw_gates and index_2 = argmax again.
  CHECK(ints(step(trace, "index_2")) == std::vector<int32_t>{1, 1, 2, 2});
  // mask_2 *= (importance > 0) with importance = nonpaddings: t1 (0.5) keeps it, t2 (0) loses it.
  CHECK(ints(step(trace, "mask_2_nonpadding")) == std::vector<int32_t>{0, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1});
  // t1: gate_1 = 0, gate_2 = its max probability g, normalised g / (g + 1e-9).
  const float g = r1[1];
  CHECK(step(trace, "gate_2").f32.at(1) == g);
  CHECK(step(trace, "gate_2_normalized").f32.at(1) == g / (g + 1e-9f));
  // t2: both gates 0, denominator f32(1e-9), gates stay 0.
  CHECK(step(trace, "denom").f32.at(2) == 1e-9f);
  CHECK(step(trace, "gate_2_normalized").f32.at(2) == 0.0f);
  // density_1 counts only real first choices: expert 0 twice -> [2/4, 0, 0].
  CHECK(step(trace, "density_1").f32 == std::vector<float>{0.5f, 0.0f, 0.0f});
  // Second positions: expert 1 after mask_1_count[1] = 0: t0 -> 0, t1 -> 1; expert 2: t3 -> 0.
  CHECK(ints(step(trace, "position_in_expert_2_flat")) == std::vector<int32_t>{0, 1, 0, 0});
  CHECK(ints(step(trace, "position_in_expert_1_flat")) == std::vector<int32_t>{0, 0, 0, 1});
  CHECK(ints(step(trace, "dispatch_count_tensor")) == std::vector<int32_t>{2, 1, 0, 2});
  // paddings.astype(int32) = [0, 0, 1, 0]: dispatch_0 = 1 - 1 = 0.
  CHECK(int_step(trace, "paddings_count") == 1);
  CHECK(int_step(trace, "dispatch_0") == 0);
  CHECK(int_step(trace, "dispatch_1") == 1);
  CHECK(int_step(trace, "dispatch_2") == 2);
  // combine[t1, e1, c1] = gate_2_normalized of t1.
  const moeref::Tensor& combine = step(trace, "combine_tensor");
  CHECK(combine.f32.at(static_cast<size_t>((1 * 3 + 1) * 4 + 1)) == g / (g + 1e-9f));
}

TEST_CASE("paddings, non-legacy: densities divide by the non-padded fraction", "[praxis_top2][paddings]") {
  const moeref::Trace trace = run_json(padded_config(false));
  // density_denom = mean(nonpaddings) + 1e-6 = (2.5 / 4) + 1e-6.
  const float dd = 2.5f / 4.0f + 1e-6f;
  CHECK(step(trace, "density_denom").f32 == std::vector<float>{dd});
  CHECK(step(trace, "density_1").f32 == std::vector<float>{0.5f / dd, 0.0f, 0.0f});
  // t1 keeps only its second choice: g / (0 + g) = 1 exactly.
  CHECK(step(trace, "gate_2_normalized").f32.at(1) == 1.0f);
  CHECK(step(trace, "gate_1_normalized").f32.at(2) == 0.0f);
  CHECK(step(trace, "denom").f32.at(2) == 1.0f);
}

TEST_CASE("importance (direct callers only): masks mask_2 only when paddings are passed", "[praxis_top2][paddings]") {
  // G=1, S=3, E=2, logits [2,0] each; importance [1, 0.5, 0]. Without paddings, mask_2 is not
  // masked at all, so the importance-0 token still gets a second choice with weight ~1.
  nlohmann::json config = gating(1, 3, 2, {2, 0, 2, 0, 2, 0}, {});
  config["inputs"]["importance"] = tensor_json({"G", "S"}, {1, 3}, {1.0f, 0.5f, 0.0f});
  const moeref::Trace trace = run_json(config);
  CHECK(ints(step(trace, "mask_1_important")) == std::vector<int32_t>{1, 0, 0, 0, 0, 0});
  CHECK(trace.find_step("mask_2_nonpadding") == nullptr);
  CHECK(ints(step(trace, "index_2")) == std::vector<int32_t>{1, 0, 0});
  CHECK(ints(step(trace, "dispatch_count_tensor")) == std::vector<int32_t>{2, 1, 1});
  // With paddings passed too (all 0), mask_2 *= (importance > 0): the importance-0 token is out.
  config["inputs"]["paddings"] = tensor_json({"G", "S"}, {1, 3}, {0.0f, 0.0f, 0.0f});
  const moeref::Trace with_paddings = run_json(config);
  CHECK(ints(step(with_paddings, "mask_2_nonpadding")) == std::vector<int32_t>{0, 1, 1, 0, 0, 0});
  CHECK(ints(step(with_paddings, "dispatch_count_tensor")) == std::vector<int32_t>{2, 1, 0});
  // The layer never passes importance.
  nlohmann::json layer = config;
  layer["scope"] = "layer";
  layer["dims"]["M"] = 2;
  layer["dims"]["H"] = 2;
  CHECK_THROWS_AS(run_json(layer), moeref::InputError);
}

// ---- Policies ---------------------------------------------------------------------------------

TEST_CASE("random policy: legacy compares the normalised gate, non-legacy the raw one", "[praxis_top2][policy]") {
  // One token, E=3, logits [2,0,0]: p = softmax; index_1 = 0, index_2 = 1 (lowest of the tie).
  const std::vector<float> p = softmax_row({2, 0, 0});
  const float threshold = 0.5f;
  const float raw_scaled = p[1] / threshold;  // gate_2 / max(t, 1e-9)
  const float normalized_scaled = (p[1] / ((p[0] + p[1]) + 1e-9f)) / threshold;
  REQUIRE(raw_scaled < normalized_scaled);
  const float u = (raw_scaled + normalized_scaled) / 2.0f;  // between the two
  auto run = [&](bool legacy, float draw) {
    nlohmann::json config = gating(1, 1, 3, {2, 0, 0},
                                   {{"second_expert_policy", "random"},
                                    {"second_expert_threshold", 0.5},
                                    {"legacy_mtf_behavior", legacy},
                                    {"capacity_factor", nullptr},
                                    {"expert_capacity_dim", 4}});
    config["inputs"]["random_uniform"] = tensor_json({"G", "S"}, {1, 1}, {draw});
    return run_json(config);
  };
  CHECK(int_step(run(true, u), "sampled_2") == 1);
  CHECK(int_step(run(false, u), "sampled_2") == 0);
  // Strict: U equal to the scaled gate is not below it.
  CHECK(int_step(run(true, normalized_scaled), "sampled_2") == 0);
  const moeref::Trace dropped = run(false, u);
  CHECK(step(dropped, "gate_2_sampled").f32 == std::vector<float>{0.0f});
  CHECK(ints(step(dropped, "mask_2_sampled")) == std::vector<int32_t>{0, 0, 0});
  // Non-legacy, second dropped: gate_1 = p0 / p0 = 1.
  CHECK(step(dropped, "gate_1_normalized").f32 == std::vector<float>{1.0f});
}

TEST_CASE("random policy with the layer's threshold 0.0 keeps every non-zero second gate", "[praxis_top2][policy]") {
  // max(0.0, 1e-9) = 1e-9: U < gate_2 / f32(1e-9) holds even for the largest draw below 1.
  nlohmann::json config = gating(1, 2, 2, {2, 0, 0, 2}, {{"second_expert_policy", "random"}});
  config["inputs"]["random_uniform"] = tensor_json({"G", "S"}, {1, 2}, {0.99999994f, 0.5f});
  const moeref::Trace trace = run_json(config);
  CHECK(ints(step(trace, "sampled_2")) == std::vector<int32_t>{1, 1});
  // E=1: gate_2 = 0 and 0 / t = 0, U < 0 never holds: always dropped.
  nlohmann::json single = gating(1, 1, 1, {0.5f}, {{"second_expert_policy", "random"}});
  single["inputs"]["random_uniform"] = tensor_json({"G", "S"}, {1, 1}, {0.0f});
  CHECK(int_step(run_json(single), "sampled_2") == 0);
}

TEST_CASE("sampling policy: Gumbel noise can pick a non-greedy second expert", "[praxis_top2][policy]") {
  // G=1, S=2, E=3, logits [2, 0, 0.5] for both tokens; C = 4.
  // t0 draws [0.5, 0.99, 0.01]: noise_e = -log(-log U_e): e1 +4.6, e2 -1.53, so e1 (logit 0)
  // beats e2 (logit 0.5); e0 is the first choice, replaced by -0.7 * f32max.
  // t1 draws [0.5, 0, 0]: noise -inf for e1 and e2, so the very negative e0 wins: index_2 = index_1.
  nlohmann::json config =
      gating(1, 2, 3, {2, 0, 0.5f, 2, 0, 0.5f},
             {{"second_expert_policy", "sampling"}, {"capacity_factor", nullptr}, {"expert_capacity_dim", 4}});
  config["inputs"]["sampling_uniform"] =
      tensor_json({"G", "S", "E"}, {1, 2, 3}, {0.5f, 0.99f, 0.01f, 0.5f, 0.0f, 0.0f});
  const moeref::Trace trace = run_json(config);
  auto gumbel = [](float u) {
    const float log_u = static_cast<float>(std::log(static_cast<double>(u)));
    return -static_cast<float>(std::log(static_cast<double>(-log_u)));
  };
  const moeref::Tensor& noise = step(trace, "noise");
  CHECK(noise.f32.at(1) == gumbel(0.99f));
  CHECK(noise.f32.at(2) == gumbel(0.01f));
  CHECK(std::isinf(noise.f32.at(4)));
  CHECK(noise.f32.at(4) < 0.0f);
  const float very_negative = -0.7f * std::numeric_limits<float>::max();
  CHECK(very_negative == -2.38197633e38f);
  CHECK(step(trace, "updated_logits").f32.at(0) == very_negative);
  CHECK(step(trace, "noised_logits").f32.at(1) == 0.0f + gumbel(0.99f));
  CHECK(ints(step(trace, "index_2")) == std::vector<int32_t>{1, 0});
  // gate_2 is the un-noised probability of the sampled expert; for t1 it is gates_without_top_1[0] = 0.
  const std::vector<float> p = softmax_row({2, 0, 0.5f});
  CHECK(step(trace, "gate_2").f32 == std::vector<float>{p[1], 0.0f});
  // t1's zero-weight second choice still takes slot mask_1_count[0] = 2 of expert 0, undispatched.
  CHECK(ints(step(trace, "position_in_expert_2_flat")) == std::vector<int32_t>{0, 2});
  CHECK(ints(step(trace, "mask_2_flat")) == std::vector<int32_t>{1, 1});
  CHECK(ints(step(trace, "dispatch_count_tensor")) == std::vector<int32_t>{2, 1});
}

// ---- Logit cap, ties, E = 1, C = 0 ----------------------------------------------------------

TEST_CASE("gating_logit_cap: cap * tanh(logits / cap) before the softmax", "[praxis_top2]") {
  const moeref::Trace trace = run_json(gating(1, 1, 3, {3, -3, 0.5f}, {{"gating_logit_cap", 2.0}}));
  std::vector<float> capped;
  for (float x : {3.0f, -3.0f, 0.5f})
    capped.push_back(2.0f * static_cast<float>(std::tanh(static_cast<double>(x / 2.0f))));
  CHECK(step(trace, "logits_capped").f32 == capped);
  CHECK(step(trace, "raw_gates").f32 == softmax_row(capped));
  // No cap by default: no logits_capped step.
  CHECK(run_json(gating(1, 1, 3, {3, -3, 0.5f}, {})).find_step("logits_capped") == nullptr);
}

TEST_CASE("ties: equal logits pick experts 0 and 1, normalised gates exactly 0.5", "[praxis_top2][ties]") {
  // jnp.argmax returns the first maximum. p = 0.25; (0.25 + 0.25) + 1e-9 rounds to 0.5.
  const moeref::Trace trace = run_json(gating(1, 1, 4, {0, 0, 0, 0}, {}));
  CHECK(step(trace, "raw_gates").f32 == std::vector<float>{0.25f, 0.25f, 0.25f, 0.25f});
  CHECK(ints(step(trace, "index_1")) == std::vector<int32_t>{0});
  CHECK(ints(step(trace, "index_2")) == std::vector<int32_t>{1});
  CHECK(step(trace, "gate_1_normalized").f32 == std::vector<float>{0.5f});
  CHECK(step(trace, "gate_2_normalized").f32 == std::vector<float>{0.5f});
}

TEST_CASE("E = 1: the zero-weight second choice takes a slot and is not dispatched", "[praxis_top2][edge]") {
  // S=2, cf 2.0, C0 0: auto = int(2 * 2 / 1) = 4 -> C = 4. raw_gates = 1, gate_2 = 0.
  const moeref::Trace trace = run_json(gating(1, 2, 1, {0.3f, -7.0f}, {}));
  CHECK(trace.capacity["expert_capacity"] == 4);
  CHECK(step(trace, "raw_gates").f32 == std::vector<float>{1.0f, 1.0f});
  CHECK(step(trace, "gate_1_normalized").f32 == std::vector<float>{1.0f, 1.0f});  // 1 / f32(1 + 1e-9)
  CHECK(step(trace, "gate_2").f32 == std::vector<float>{0.0f, 0.0f});
  CHECK(ints(step(trace, "index_2")) == std::vector<int32_t>{0, 0});
  CHECK(ints(step(trace, "position_in_expert_2_flat")) == std::vector<int32_t>{2, 3});
  CHECK(ints(step(trace, "mask_2_flat")) == std::vector<int32_t>{1, 1});
  CHECK(ints(step(trace, "dispatch_count_tensor")) == std::vector<int32_t>{1, 1});
  CHECK(int_step(trace, "dispatch_1") == 2);
}

TEST_CASE("C = 0 (the layer defaults with S * 2 < E): every token dropped", "[praxis_top2][edge]") {
  // S=1, E=4, capacity_factor 2.0, expert_capacity_dim 0: auto = int(0.5) = 0, C = 0.
  const moeref::Trace trace = run_json(gating(1, 1, 4, {1, 2, 3, 4}, {}));
  CHECK(trace.capacity["expert_capacity"] == 0);
  CHECK(step(trace, "combine_tensor").shape == std::vector<int64_t>{1, 1, 4, 0});
  // mask * position >= 0 holds for all G*S*E = 4 entries: ratio 4 / max(1, 1) = 4 (= E).
  CHECK(float_step(trace, "over_capacity_1") == 4.0f);
  CHECK(float_step(trace, "over_capacity_2") == 4.0f);
  CHECK(ints(step(trace, "mask_1_flat")) == std::vector<int32_t>{0});
  CHECK(int_step(trace, "dispatch_0") == 1);
  // The loss is computed before capacity and is unaffected.
  CHECK(loss(trace, "aux_loss") > 0.0f);
  // expert_capacity_dim null instead: None -> 1, and 1 < 0 is false, so C = 1: the first choice
  // (expert 3) and the second (expert 2) each take slot 0 of their expert.
  const moeref::Trace one = run_json(gating(1, 1, 4, {1, 2, 3, 4}, {{"expert_capacity_dim", nullptr}}));
  CHECK(one.capacity["expert_capacity"] == 1);
  CHECK(int_step(one, "dispatch_2") == 1);
}

TEST_CASE("praxis_top2 rejects what the source rejects", "[praxis_top2][errors]") {
  // assert capacity_factor or expert_capacity_dim
  CHECK_THROWS_AS(run_json(gating(1, 1, 2, {0, 0}, {{"capacity_factor", 0.0}})), moeref::InputError);
  // Paddings outside [0, 1] (moeref restriction; see the spec).
  nlohmann::json bad = gating(1, 1, 2, {0, 0}, {});
  bad["inputs"]["paddings"] = tensor_json({"G", "S"}, {1, 1}, {1.5f});
  CHECK_THROWS_AS(run_json(bad), moeref::InputError);
  // B and L without num_groups; num_groups not dividing B*L.
  const nlohmann::json layer = {{"variant", "praxis_top2"},
                                {"dims", {{"B", 2}, {"L", 3}, {"E", 2}, {"M", 2}, {"H", 2}}}};
  CHECK_THROWS_AS(run_json(layer), moeref::InputError);
  nlohmann::json four = layer;
  four["hparams"] = {{"num_groups", 4}};
  CHECK_THROWS_AS(run_json(four), moeref::InputError);
  nlohmann::json zero_weight = layer;
  zero_weight["hparams"] = {{"num_groups", 2}, {"moe_load_balance_loss_weight", 0.0}};
  CHECK_THROWS_AS(run_json(zero_weight), moeref::InputError);
}
