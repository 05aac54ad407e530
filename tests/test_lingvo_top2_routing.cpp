// lingvo_top2: hand-derived routing cases, one per rule of Top2GatingOnLogits.
//
// Source: tensorflow/lingvo, lingvo/core/gshard_layers.py at e0be5dc4ce9b,
// Top2GatingOnLogits and ComputeGating. Every expected number below is derived
// by hand in the comments (or, for a float formula, recomputed here from the
// source's formula), never copied from moeref's output.
//
// Source tests: lingvo/core/gshard_layers_test.py at e0be5dc4ce9b holds only
// CausalDepthwiseConv1DLayer and Conv1DStateLayer tests, and
// lingvo/core/gshard_builder_test.py holds no gating numbers (its MoE tests
// check shapes, or outputs of TF-initialised random weights). No test in the
// repository calls Top2GatingOnLogits with concrete numbers, so there is no
// source vector to lift; see spec/variants/lingvo_top2.md, "Source tests".
//
// Softmax values used below are exact: with logits 0 and -200 the shifted
// exponentials are 1 and exp(-200) ~ 1e-87, which is 0 in float32, so
// tf.nn.softmax gives exactly 1 and 0; two equal logits give exactly 0.5.
#include <cmath>
#include <limits>
#include <vector>

#include "test_support.hpp"

using moeref::testing::loss;
using moeref::testing::run_json;
using moeref::testing::step;
using moeref::testing::tensor_json;

namespace {

constexpr float kNeg = -200.0f;  // a logit whose probability is exactly 0 next to a 0 logit

// A direct Top2GatingOnLogits call: scope "gating" with supplied logits [G, S, E].
nlohmann::json direct_config(int64_t G, int64_t S, int64_t E, const std::vector<float>& logits,
                             const nlohmann::json& hparams) {
  return {{"variant", "lingvo_top2"},
          {"scope", "gating"},
          {"seed", 0},
          {"dims", {{"G", G}, {"S", S}, {"E", E}}},
          {"hparams", hparams},
          {"inputs", {{"logits", tensor_json({"G", "S", "E"}, {G, S, E}, logits)}}}};
}

std::vector<int32_t> ints(const moeref::Tensor& t) {
  const auto& values = t.i32;
  return {values.begin(), values.end()};
}
std::vector<float> floats(const moeref::Tensor& t) {
  const auto& values = t.f32;
  return {values.begin(), values.end()};
}

// combine_tensor [G, S, E, C] as a dense vector with the listed (flat slot, value) entries.
std::vector<float> combine_with(int64_t size, const std::vector<std::pair<int64_t, float>>& entries) {
  std::vector<float> out(static_cast<size_t>(size), 0.0f);
  for (const auto& [slot, value] : entries) out[static_cast<size_t>(slot)] = value;
  return out;
}

}  // namespace

TEST_CASE("lingvo_top2 walkthrough: legacy, policy all, first and second choices dropped by capacity",
          "[lingvo_top2][walkthrough]") {
  // G=1, S=4, E=2, C=2 (expert_capacity_dim 2, no capacity_factor).
  //   s0 logits [0, 0]    -> raw_gates [0.5, 0.5]: index_1 = 0 (tie, lowest index), index_2 = 1
  //   s1 logits [0, -200] -> raw_gates [1, 0]:   index_1 = 0; gates_without_top_1 = [0, 0], so index_2 = 0
  //   s2 logits [-200, 0] -> raw_gates [0, 1]:   index_1 = 1; index_2 = 0 (all-zero row, lowest index)
  //   s3 logits [0, 0]    -> like s0.
  const auto config = direct_config(1, 4, 2, {0, 0, 0, kNeg, kNeg, 0, 0, 0}, {{"expert_capacity_dim", 2}});
  const moeref::Trace trace = run_json(config);

  CHECK(floats(step(trace, "raw_gates")) == std::vector<float>{0.5f, 0.5f, 1, 0, 0, 1, 0.5f, 0.5f});
  CHECK(ints(step(trace, "index_1")) == std::vector<int32_t>{0, 0, 1, 0});
  CHECK(ints(step(trace, "index_2")) == std::vector<int32_t>{1, 0, 0, 1});
  // gate_1 = raw_gates at index_1; gate_2 = gates_without_top_1 at index_2 (0 for s1 and s2).
  CHECK(floats(step(trace, "gate_1")) == std::vector<float>{0.5f, 1, 1, 0.5f});
  CHECK(floats(step(trace, "gate_2")) == std::vector<float>{0.5f, 0, 0, 0.5f});
  // legacy: denom = gate_1 + gate_2 + 1e-9 = f32(1 + 1e-9) = 1 for every token, so the
  // normalised gates equal the raw ones.
  CHECK(floats(step(trace, "denom")) == std::vector<float>{1, 1, 1, 1});
  CHECK(floats(step(trace, "gate_1_normalized")) == std::vector<float>{0.5f, 1, 1, 0.5f});

  // position_in_expert_1 = exclusive cumsum of mask_1 over S, NOT multiplied by mask_1:
  //   mask_1 rows e0, e0, e1, e0 -> s0 [0,0], s1 [1,0], s2 [2,0], s3 [2,1].
  CHECK(ints(step(trace, "position_in_expert_1")) == std::vector<int32_t>{0, 0, 1, 0, 2, 0, 2, 1});
  // Aux loss: density_1 = [3/4, 1/4]; density_1_proxy = mean raw_gates = [2/4, 2/4];
  // mean(0.375, 0.125) * E^2 = 0.25 * 4 = 1.
  CHECK(floats(step(trace, "density_1")) == std::vector<float>{0.75f, 0.25f});
  CHECK(floats(step(trace, "density_1_proxy")) == std::vector<float>{0.5f, 0.5f});
  CHECK(loss(trace, "aux_loss") == 1.0f);
  // over_capacity_1 counts mask_1 * position >= C: only s3 at e0 (2 >= 2). Ratio 1 / sum(mask_1) = 1/4.
  CHECK(ints(step(trace, "over_capacity_1")) == std::vector<int32_t>{1});
  CHECK(floats(step(trace, "over_capacity_1_ratio")) == std::vector<float>{0.25f});
  // s3 loses its first choice; its position is recorded as 0, not as the pre-drop 2.
  CHECK(ints(step(trace, "mask_1_flat")) == std::vector<int32_t>{1, 1, 1, 0});
  CHECK(ints(step(trace, "position_in_expert_1_flat")) == std::vector<int32_t>{0, 1, 0, 0});
  CHECK(ints(step(trace, "mask_1_count")) == std::vector<int32_t>{2, 1});
  // Second choices queue behind the kept first choices: exclusive cumsum of mask_2
  // (rows e1, e0, e0, e1 -> [0,0], [0,1], [1,1], [2,1]) plus mask_1_count [2, 1].
  CHECK(ints(step(trace, "position_in_expert_2")) == std::vector<int32_t>{2, 1, 2, 2, 3, 2, 4, 2});
  // mask_2 * position >= 2: s1 e0 (2), s2 e0 (3), s3 e1 (2). Ratio 3/4.
  CHECK(ints(step(trace, "over_capacity_2")) == std::vector<int32_t>{3});
  CHECK(floats(step(trace, "over_capacity_2_ratio")) == std::vector<float>{0.75f});
  CHECK(ints(step(trace, "mask_2_flat")) == std::vector<int32_t>{1, 0, 0, 0});
  CHECK(ints(step(trace, "position_in_expert_2_flat")) == std::vector<int32_t>{1, 0, 0, 0});
  // Legacy gates are not renormalised after the drops.
  CHECK(floats(step(trace, "gate_1_capacity")) == std::vector<float>{0.5f, 1, 1, 0});
  CHECK(floats(step(trace, "gate_2_capacity")) == std::vector<float>{0.5f, 0, 0, 0});
  // combine [S=4, E=2, C=2], flat slot ((s * 2) + e) * 2 + c:
  //   s0 e0 c0 = 0.5 (slot 0), s0 e1 c1 = 0.5 (slot 3), s1 e0 c1 = 1 (slot 5), s2 e1 c0 = 1 (slot 10).
  CHECK(floats(step(trace, "combine_tensor")) == combine_with(16, {{0, 0.5f}, {3, 0.5f}, {5, 1}, {10, 1}}));
  std::vector<int32_t> dispatch(16, 0);
  for (int64_t slot : {0, 3, 5, 10}) dispatch[static_cast<size_t>(slot)] = 1;
  CHECK(ints(step(trace, "dispatch_tensor")) == dispatch);
  CHECK(trace.capacity["expert_capacity"] == 2);
  CHECK(step(trace, "combine_tensor").shape == std::vector<int64_t>{1, 4, 2, 2});
}

TEST_CASE("lingvo_top2 legacy_mtf_behavior: renormalise before (with 1e-9) vs after capacity (denominator 0 -> 1)",
          "[lingvo_top2][legacy]") {
  // S=2, E=2, C=1. s0 logits [-200, 0] -> p [0, 1]: first e1, second e0 with gate 0.
  // s1 logits [0, 0] -> p [0.5, 0.5]: first e0, second e1 with gate 0.5.
  // Positions: first choices e1 (s0), e0 (s1) both at 0 -> kept; mask_1_count [1, 1].
  // Second choices: s0 e0 at 0 + 1 = 1 and s1 e1 at 0 + 1 = 1 -> both dropped (C = 1).
  const std::vector<float> logits = {kNeg, 0, 0, 0};
  const auto legacy = run_json(direct_config(1, 2, 2, logits, {{"expert_capacity_dim", 1}}));
  const auto modern =
      run_json(direct_config(1, 2, 2, logits, {{"expert_capacity_dim", 1}, {"legacy_mtf_behavior", false}}));

  // legacy: s1's first gate is 0.5 / (0.5 + 0.5 + 1e-9) = 0.5 and stays 0.5 after its second is dropped.
  CHECK(floats(step(legacy, "gate_1_capacity")) == std::vector<float>{1, 0.5f});
  CHECK(floats(step(legacy, "combine_tensor")) == std::vector<float>{0, 1, 0.5f, 0});
  // non-legacy: no early normalisation; after capacity denom = 0.5 + 0 -> gate_1 = 1.
  CHECK(modern.find_step("gate_1_normalized") != nullptr);
  CHECK(floats(step(modern, "gate_1_capacity")) == std::vector<float>{1, 0.5f});
  CHECK(floats(step(modern, "denom")) == std::vector<float>{1, 0.5f});
  CHECK(floats(step(modern, "gate_1_normalized")) == std::vector<float>{1, 1});
  CHECK(floats(step(modern, "combine_tensor")) == std::vector<float>{0, 1, 1, 0});

  // Aux loss: legacy divides by 1: density_1 [1/2, 1/2], proxy [(0 + 0.5)/2, (1 + 0.5)/2] = [0.25, 0.75],
  // mean(0.125, 0.375) * 4 = 1. Non-legacy divides both densities by dd = mean_S(importance) + 1e-6
  // = f32(1 + f32(1e-6)) (importance is ones without paddings).
  CHECK(loss(legacy, "aux_loss") == 1.0f);
  const float dd = 1.0f + 1e-6f;
  CHECK(floats(step(modern, "density_denom")) == std::vector<float>{dd});
  const float d1 = 0.5f / dd, p0 = 0.25f / dd, p1 = 0.75f / dd;
  const float expected = static_cast<float>(static_cast<double>(p0 * d1) + static_cast<double>(p1 * d1)) / 2.0f * 4.0f;
  CHECK(loss(modern, "aux_loss") == expected);
  CHECK(loss(modern, "aux_loss") < 1.0f);

  // A token whose gates are all dropped: denominator 0 is replaced by 1, so the gates stay 0 (no NaN).
  const auto dropped =
      run_json(direct_config(1, 1, 2, {0, 0}, {{"expert_capacity_dim", 0}, {"legacy_mtf_behavior", false}}));
  CHECK(floats(step(dropped, "denom")) == std::vector<float>{0});
  CHECK(floats(step(dropped, "denom_safe")) == std::vector<float>{1});
  CHECK(floats(step(dropped, "gate_1_normalized")) == std::vector<float>{0});
}

TEST_CASE("lingvo_top2 random policy: legacy compares the normalised gate_2, non-legacy the raw probability",
          "[lingvo_top2][random]") {
  // E=4, logits [0, 0, 0, -200]: raw_gates = f32(1/3) for e0..e2 (t = [1, 1, 1, 0], 1/Z = f32(1/3)).
  // index_1 = 0, index_2 = 1, gate_2 = f32(1/3).
  // legacy:     gate_2 = p / (2p + 1e-9) = 0.5;  0.5 / f32(0.8) = 0.625 > U = 0.5  -> kept.
  // non-legacy: gate_2 = p = 0.3333;          0.3333 / f32(0.8) = 0.4167 < U = 0.5 -> dropped.
  const std::vector<float> logits = {0, 0, 0, kNeg};
  const nlohmann::json uniform = tensor_json({"G", "S"}, {1, 1}, {0.5f});
  auto config = direct_config(1, 1, 4, logits, {{"second_expert_policy", "random"}, {"second_expert_threshold", 0.8}});
  config["inputs"]["second_policy_uniform"] = uniform;
  const auto legacy = run_json(config);
  config["hparams"]["legacy_mtf_behavior"] = false;
  const auto modern = run_json(config);

  const float third = 1.0f / 3.0f;
  CHECK(floats(step(legacy, "raw_gates")) == std::vector<float>{third, third, third, 0});
  CHECK(floats(step(legacy, "gate_2_normalized")) == std::vector<float>{0.5f});
  CHECK(ints(step(legacy, "sampled_2")) == std::vector<int32_t>{1});
  CHECK(floats(step(legacy, "gate_2_sampled")) == std::vector<float>{0.5f});
  CHECK(ints(step(modern, "sampled_2")) == std::vector<int32_t>{0});
  CHECK(floats(step(modern, "gate_2_sampled")) == std::vector<float>{0});
  CHECK(ints(step(modern, "mask_2_sampled")) == std::vector<int32_t>{0, 0, 0, 0});
  // Non-legacy: the lone first choice is renormalised to exactly 1.
  CHECK(floats(step(modern, "gate_1_normalized")) == std::vector<float>{1});
  // The draw is recorded as an input of the trace.
  REQUIRE(legacy.find_input("second_policy_uniform") != nullptr);
}

TEST_CASE("lingvo_top2 random policy: strict less-than, and threshold 0 divides by f32(1e-9)",
          "[lingvo_top2][random]") {
  // p = [0.5, 0.5]: legacy gate_2 = 0.5 / f32(1 + 1e-9) = 0.5. Threshold 1: keep iff U < 0.5.
  auto config = direct_config(1, 3, 2, {0, 0, 0, 0, 0, kNeg},
                              {{"second_expert_policy", "random"}, {"second_expert_threshold", 1.0}});
  // s0: U = 0.5 equals gate_2 / 1 -> not kept. s1: U just below 0.5 -> kept.
  // s2: logits [0, -200] -> gate_2 = 0, so 0 < 0 fails even for U = 0.
  config["inputs"]["second_policy_uniform"] = tensor_json({"G", "S"}, {1, 3}, {0.5f, 0.49999997f, 0.0f});
  CHECK(ints(step(run_json(config), "sampled_2")) == std::vector<int32_t>{0, 1, 0});
  // Default threshold 0.0: max(0, 1e-9) -> gate_2 / f32(1e-9) = 5e8 for s0, s1: always kept; s2 still dropped.
  config["hparams"].erase("second_expert_threshold");
  config["inputs"]["second_policy_uniform"] = tensor_json({"G", "S"}, {1, 3}, {0.99999994f, 0.99999994f, 0.0f});
  CHECK(ints(step(run_json(config), "sampled_2")) == std::vector<int32_t>{1, 1, 0});
}

TEST_CASE("lingvo_top2 sampling policy: Gumbel-max with the first choice's logit replaced by -0.7 * float32 max",
          "[lingvo_top2][sampling]") {
  // E=3, logits [0, 0, 0]: raw_gates = f32(1/3) each, index_1 = 0 (tie).
  // updated_logits = [-0.7 * FLT_MAX (in float32), 0, 0].
  // noise = -log(-log U): U = 0.99999994 -> +16.6 (largest, but on the excluded expert),
  // U = 0.1 -> -log(2.3026) = -0.834, U = 0.9 -> -log(0.10536) = +2.250. So index_2 = 2.
  auto config = direct_config(1, 2, 3, {0, 0, 0, 0, 0, 0}, {{"second_expert_policy", "sampling"}});
  // s1: U = [0.5, 0, 0.2]: U = 0 gives noise -inf on e1; e2 wins (e0 is the first choice).
  config["inputs"]["noise_uniform"] =
      tensor_json({"G", "S", "E"}, {1, 2, 3}, {0.99999994f, 0.1f, 0.9f, 0.5f, 0.0f, 0.2f});
  const auto trace = run_json(config);

  // The replacement value: ones * dtype.max * f32(-0.7), i.e. f32(FLT_MAX * f32(-0.7)); the
  // double product of two floats is exact, so rounding it once gives the float32 product.
  const float very_negative =
      static_cast<float>(static_cast<double>(std::numeric_limits<float>::max()) * static_cast<double>(-0.7f));
  CHECK(very_negative == -0.7f * std::numeric_limits<float>::max());
  CHECK(std::isfinite(very_negative));
  const auto updated = floats(step(trace, "updated_logits"));
  CHECK(updated == std::vector<float>{very_negative, 0, 0, very_negative, 0, 0});
  // Adding any finite noise leaves it at about -2.4e38: it can never win.
  CHECK(floats(step(trace, "noised_logits"))[0] == very_negative);
  const auto noise = floats(step(trace, "noise"));
  CHECK(noise[0] > 16.0f);
  CHECK(noise[1] == Approx(-0.8340324).epsilon(1e-6));
  CHECK(noise[2] == Approx(2.2503672).epsilon(1e-6));
  CHECK(std::isinf(noise[4]));
  CHECK(noise[4] < 0.0f);
  CHECK(ints(step(trace, "index_2")) == std::vector<int32_t>{2, 2});
  // gate_2 is the un-noised probability of the sampled expert.
  const float third = 1.0f / 3.0f;
  CHECK(floats(step(trace, "gate_2")) == std::vector<float>{third, third});
  REQUIRE(trace.find_input("noise_uniform") != nullptr);
}

TEST_CASE("lingvo_top2 sampling on a padded token: nothing is excluded, the mask then drops it",
          "[lingvo_top2][sampling][paddings]") {
  // One token, padded. mask_1 is zeroed by the paddings before sampling, so updated_logits keeps
  // the first choice's logit: with U = [0.9, 0.1] index_2 = 0 = index_1. mask_2 *= importance > 0
  // (importance = 1 - paddings = 0) then removes it.
  auto config = direct_config(1, 1, 2, {0, 0}, {{"second_expert_policy", "sampling"}});
  config["inputs"]["noise_uniform"] = tensor_json({"G", "S", "E"}, {1, 1, 2}, {0.9f, 0.1f});
  config["inputs"]["paddings"] = tensor_json({"G", "S"}, {1, 1}, {1.0f});
  const auto trace = run_json(config);
  CHECK(floats(step(trace, "updated_logits")) == std::vector<float>{0, 0});
  CHECK(ints(step(trace, "index_1")) == std::vector<int32_t>{0});
  CHECK(ints(step(trace, "index_2")) == std::vector<int32_t>{0});
  CHECK(ints(step(trace, "mask_2_important")) == std::vector<int32_t>{0, 0});
  CHECK(floats(step(trace, "combine_tensor")) == std::vector<float>(8, 0.0f));
}

TEST_CASE("lingvo_top2 paddings: mask_1 and the proxy are multiplied by 1 - paddings, mask_2 by importance > 0",
          "[lingvo_top2][paddings]") {
  // S=3, E=2, C=4. s1 is padded. logits: s0 [0, -200], s1 [0, -200], s2 [-200, 0].
  auto config = direct_config(1, 3, 2, {0, kNeg, 0, kNeg, kNeg, 0}, {});
  config["inputs"]["paddings"] = tensor_json({"G", "S"}, {1, 3}, {0, 1, 0});
  const auto trace = run_json(config);
  CHECK(ints(step(trace, "mask_1_nonpadded")) == std::vector<int32_t>{1, 0, 0, 0, 0, 1});
  CHECK(floats(step(trace, "density_1_proxy_per_token")) == std::vector<float>{1, 0, 0, 0, 0, 1});
  CHECK(floats(step(trace, "importance")) == std::vector<float>{1, 0, 1});
  // The padded token keeps all its gates, so its second choice is its argmax e0 ...
  CHECK(ints(step(trace, "index_2")) == std::vector<int32_t>{0, 0, 0});
  // ... which mask_2 *= (importance > 0) removes; gate_2 is computed after that mask, so it is 0.
  CHECK(ints(step(trace, "mask_2_important")) == std::vector<int32_t>{1, 0, 0, 0, 1, 0});
  CHECK(floats(step(trace, "gate_2")) == std::vector<float>{0, 0, 0});
  // The padded token occupies no slot. Second choices at e0 queue behind mask_1_count[e0] = 1 (s0's
  // first choice): s0's own zero-weight second choice takes position 1, s2's takes 2.
  CHECK(ints(step(trace, "position_in_expert_2_flat")) == std::vector<int32_t>{1, 0, 2});
  // Legacy density: padded tokens still count in the 1/S: density_1 = [1/3, 1/3].
  const float third = 1.0f / 3.0f;
  CHECK(floats(step(trace, "density_1")) == std::vector<float>{third, third});
  // The padded token gets nothing.
  const auto combine = floats(step(trace, "combine_tensor"));
  for (int64_t k = 8; k < 16; ++k) CHECK(combine[static_cast<size_t>(k)] == 0.0f);

  // Non-legacy: dd = mean(1, 0, 1) + 1e-6 = f32(f32(2/3) + f32(1e-6)); density_1 = (1/3) / dd.
  config["hparams"]["legacy_mtf_behavior"] = false;
  const auto modern = run_json(config);
  const float dd = 2.0f / 3.0f + 1e-6f;
  CHECK(floats(step(modern, "density_denom")) == std::vector<float>{dd});
  CHECK(floats(step(modern, "density_1")) == std::vector<float>{third / dd, third / dd});
}

TEST_CASE("lingvo_top2 importance without paddings: the second choice of an unimportant token is not masked",
          "[lingvo_top2][importance]") {
  // Direct call only (ComputeGating passes importance=None). S=3, E=2, logits [0, -200] for all.
  // importance [1, 0, 0.5]: mask_1 keeps only importance == 1 (s0). s1 and s2 keep all their gates,
  // so index_2 = 0 with gate_2 = 1, and mask_2 is NOT masked because paddings is None:
  // legacy gate_2 = 1 / (0 + 1 + 1e-9) = 1, so both are dispatched as second choices with weight 1.
  auto config = direct_config(1, 3, 2, {0, kNeg, 0, kNeg, 0, kNeg}, {});
  config["inputs"]["importance"] = tensor_json({"G", "S"}, {1, 3}, {1, 0, 0.5f});
  const auto trace = run_json(config);
  CHECK(ints(step(trace, "mask_1_important")) == std::vector<int32_t>{1, 0, 0, 0, 0, 0});
  CHECK(trace.find_step("mask_2_important") == nullptr);
  CHECK(floats(step(trace, "gate_2_normalized")) == std::vector<float>{0, 1, 1});
  // Positions of the second choices at e0: behind s0's first choice (count 1): s0's own zero-weight
  // second choice 1, s1 2, s2 3; all fit C = 4.
  CHECK(ints(step(trace, "position_in_expert_2_flat")) == std::vector<int32_t>{1, 2, 3});
  // combine [S=3, E=2, C=4]: s0 e0 c0 = 1 (slot 0), s1 e0 c2 = 1 (slot 10), s2 e0 c3 = 1 (slot 19).
  CHECK(floats(step(trace, "combine_tensor")) == combine_with(24, {{0, 1}, {10, 1}, {19, 1}}));

  // With paddings also given, the paddings no longer touch mask_1 (importance wins), but mask_2 is
  // masked by importance > 0: s1 (importance 0) loses its second choice, s2 (0.5) keeps it, and the
  // padded-but-important s0 keeps its first choice.
  config["inputs"]["paddings"] = tensor_json({"G", "S"}, {1, 3}, {1, 1, 0});
  const auto both = run_json(config);
  CHECK(ints(step(both, "mask_1_important")) == std::vector<int32_t>{1, 0, 0, 0, 0, 0});
  CHECK(both.find_step("mask_1_nonpadded") == nullptr);
  CHECK(ints(step(both, "mask_2_important")) == std::vector<int32_t>{1, 0, 0, 0, 1, 0});
  CHECK(floats(step(both, "combine_tensor")) == combine_with(24, {{0, 1}, {18, 1}}));
}

TEST_CASE("lingvo_top2 C = 0: every choice is dropped, the summaries count every entry", "[lingvo_top2][capacity]") {
  // expert_capacity_dim 0 without capacity_factor. mask * position >= 0 holds for all S*E entries,
  // so over_capacity_1 = 2*2 = 4 and the ratio is 4 / sum(mask_1) = 4/2 = 2.
  const auto trace = run_json(direct_config(1, 2, 2, {0, 0, 0, kNeg}, {{"expert_capacity_dim", 0}}));
  CHECK(trace.capacity["expert_capacity"] == 0);
  CHECK(step(trace, "combine_tensor").shape == std::vector<int64_t>{1, 2, 2, 0});
  CHECK(ints(step(trace, "over_capacity_1")) == std::vector<int32_t>{4});
  CHECK(floats(step(trace, "over_capacity_1_ratio")) == std::vector<float>{2});
  CHECK(ints(step(trace, "mask_1_flat")) == std::vector<int32_t>{0, 0});
  CHECK(ints(step(trace, "position_in_expert_1_flat")) == std::vector<int32_t>{0, 0});
  // The aux loss is computed before capacity: density_1 [1, 0], proxy [0.75, 0.25] -> mean(0.75, 0) * 4 = 1.5.
  CHECK(loss(trace, "aux_loss") == 1.5f);
  // capacity_factor 0 is "no capacity factor" too (capacity_factor > 0 is false).
  const auto zero_factor =
      run_json(direct_config(1, 2, 2, {0, 0, 0, kNeg}, {{"expert_capacity_dim", 0}, {"capacity_factor", 0.0}}));
  CHECK(zero_factor.capacity["expert_capacity"] == 0);
}

TEST_CASE("lingvo_top2 expert_padding_idx: numpy indices, logits replaced before the softmax",
          "[lingvo_top2][expert_padding]") {
  // E=3, logits [5, 0, 0]; padding expert 0 (listed twice) -> [-0.7 max, 0, 0] -> p = [0, 0.5, 0.5].
  const float very_negative = -0.7f * std::numeric_limits<float>::max();
  auto trace = run_json(direct_config(1, 1, 3, {5, 0, 0}, {{"expert_padding_idx", nlohmann::json::array({0, 0})}}));
  CHECK(floats(step(trace, "logits_expert_padded")) == std::vector<float>{very_negative, 0, 0});
  CHECK(floats(step(trace, "raw_gates")) == std::vector<float>{0, 0.5f, 0.5f});
  CHECK(ints(step(trace, "index_1")) == std::vector<int32_t>{1});
  CHECK(ints(step(trace, "index_2")) == std::vector<int32_t>{2});
  // -1 is the last expert (numpy indexing).
  trace = run_json(direct_config(1, 1, 3, {0, 0, 5}, {{"expert_padding_idx", nlohmann::json::array({-1})}}));
  CHECK(floats(step(trace, "logits_expert_padded")) == std::vector<float>{0, 0, very_negative});
  // An empty list is falsy in the source: no padding step at all.
  trace = run_json(direct_config(1, 1, 3, {0, 0, 5}, {{"expert_padding_idx", nlohmann::json::array()}}));
  CHECK(trace.find_step("logits_expert_padded") == nullptr);
  // Out of range for E = 3 (numpy raises IndexError).
  CHECK_THROWS_WITH(run_json(direct_config(1, 1, 3, {0, 0, 5}, {{"expert_padding_idx", nlohmann::json::array({3})}})),
                    Catch::Contains("hparams.expert_padding_idx"));
}

TEST_CASE("lingvo_top2 ties: lowest index for both choices, legacy gates exactly 0.5", "[lingvo_top2][ties]") {
  // E=4, all logits equal: p = 0.25 each (t = 1, 1/Z = 0.25). index_1 = 0, index_2 = 1,
  // denom = 0.5 + 1e-9 = 0.5 in float32, gates 0.25 / 0.5 = 0.5.
  const auto trace = run_json(direct_config(1, 1, 4, {3, 3, 3, 3}, {}));
  CHECK(ints(step(trace, "index_1")) == std::vector<int32_t>{0});
  CHECK(ints(step(trace, "index_2")) == std::vector<int32_t>{1});
  CHECK(floats(step(trace, "gate_1_normalized")) == std::vector<float>{0.5f});
  CHECK(floats(step(trace, "gate_2_normalized")) == std::vector<float>{0.5f});
  // Token order decides positions: three identical tokens queue 0, 1, 2 at expert 0.
  const auto three = run_json(direct_config(1, 3, 2, {1, 1, 1, 1, 1, 1}, {}));
  CHECK(ints(step(three, "position_in_expert_1_flat")) == std::vector<int32_t>{0, 1, 2});
  CHECK(ints(step(three, "position_in_expert_2_flat")) == std::vector<int32_t>{0, 1, 2});
}

TEST_CASE("lingvo_top2 E = 1: the second choice is the same expert with gate 0", "[lingvo_top2][edge]") {
  // raw_gates = 1 exactly; gates_without_top_1 = 0 so index_2 = 0 and gate_2 = 0. Under 'all' the
  // zero-weight second choice takes a position after all first choices and is never dispatched.
  const auto trace = run_json(direct_config(1, 3, 1, {0.3f, -1, 2}, {}));
  CHECK(floats(step(trace, "raw_gates")) == std::vector<float>{1, 1, 1});
  CHECK(ints(step(trace, "index_2")) == std::vector<int32_t>{0, 0, 0});
  CHECK(ints(step(trace, "position_in_expert_2")) == std::vector<int32_t>{3, 4, 5});
  // C = 4: only s0's second choice fits (position 3), with weight 0: not dispatched.
  CHECK(ints(step(trace, "mask_2_flat")) == std::vector<int32_t>{1, 0, 0});
  const auto dispatch = ints(step(trace, "dispatch_tensor"));
  CHECK(dispatch == std::vector<int32_t>{1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0});
}

TEST_CASE("lingvo_top2 local_dispatch=false: one group of G*S tokens, C from G*S, slots numbered across groups",
          "[lingvo_top2][local_dispatch]") {
  // G=2, S=2, E=2, M=2; router_weights = identity, so logits = x exactly (one exact product per term).
  // Every token prefers e0. capacity_factor 4: local groups give int(2*4/2) = 4 -> C = 4; the single
  // group of 4 tokens gives int(4*4/2) = 8 -> C = 8.
  nlohmann::json config = {{"variant", "lingvo_top2"},
                           {"scope", "gating"},
                           {"dims", {{"G", 2}, {"S", 2}, {"E", 2}, {"M", 2}}},
                           {"hparams", {{"capacity_factor", 4.0}, {"expert_capacity_dim", 0}}},
                           {"inputs",
                            {{"x", tensor_json({"G", "S", "M"}, {2, 2, 2}, {1, 0, 1, 0, 1, 0, 1, 0})},
                             {"router_weights", tensor_json({"M", "E"}, {2, 2}, {1, 0, 0, 1})}}}};
  const auto local = run_json(config);
  CHECK(local.capacity["expert_capacity"] == 4);
  CHECK(ints(step(local, "position_in_expert_1_flat")) == std::vector<int32_t>{0, 1, 0, 1});
  CHECK(ints(step(local, "top1_expert_per_example")) == std::vector<int32_t>{0, 0, 0, 0});

  config["hparams"]["local_dispatch"] = false;
  const auto global = run_json(config);
  CHECK(global.capacity["expert_capacity"] == 8);
  CHECK(global.capacity["group_size"] == 4);
  CHECK(step(global, "logits").shape == std::vector<int64_t>{1, 4, 2});
  CHECK(ints(step(global, "position_in_expert_1_flat")) == std::vector<int32_t>{0, 1, 2, 3});
  CHECK(ints(step(global, "position_in_expert_2_flat")) == std::vector<int32_t>{0, 1, 2, 3});
  const auto& regrouped = step(global, "dispatch_tensor_regrouped");
  CHECK(regrouped.shape == std::vector<int64_t>{2, 2, 2, 8});
  // Token (g=1, s=0) is the third token of the single group: first choice e0 slot 2.
  CHECK(regrouped.i32[static_cast<size_t>(((1 * 2 + 0) * 2 + 0) * 8 + 2)] == 1);
  CHECK(step(global, "combine_tensor_regrouped").f32 == step(global, "combine_tensor").f32);
}

TEST_CASE("lingvo_top2 has no train flag: the config's train field changes nothing", "[lingvo_top2]") {
  nlohmann::json config = {{"variant", "lingvo_top2"},
                           {"seed", 5},
                           {"dims", {{"G", 2}, {"S", 4}, {"E", 3}, {"M", 4}, {"H", 3}}},
                           {"hparams", {{"second_expert_policy", "random"}, {"second_expert_threshold", 0.3}}}};
  config["train"] = true;
  const auto trained = run_json(config);
  config["train"] = false;
  const auto evaluated = run_json(config);
  REQUIRE(trained.steps.size() == evaluated.steps.size());
  for (size_t i = 0; i < trained.steps.size(); ++i) {
    INFO(trained.steps[i].name);
    CHECK(trained.steps[i].tensor.f32 == evaluated.steps[i].tensor.f32);
    CHECK(trained.steps[i].tensor.i32 == evaluated.steps[i].tensor.i32);
  }
}

TEST_CASE("lingvo_top2 arithmetic: tf.nn.softmax multiplies by 1/sum, legacy renormalisation divides",
          "[lingvo_top2][arithmetic]") {
  // Expected values from a float32 emulation of the two formulas, each op rounded once:
  //   TF CPU softmax: t = exp(x - max); p = t * f32(1 / f32(sum t))
  //   logits [3, 1, 0]: p = [0.8437947, 0.11419519, 0.042010065].
  //   (exp(x - logsumexp) as mtf does, or t / sum, give 0.114195198 for the middle entry instead.)
  const auto three = run_json(direct_config(1, 1, 3, {3, 1, 0}, {}));
  CHECK(floats(step(three, "raw_gates")) ==
        std::vector<float>{0.8437947034835815f, 0.11419519037008286f, 0.04201006516814232f});
  // logits [2, 0]: p = [0.88079703, 0.11920291]; denom = f32(f32(p0 + p1) + f32(1e-9)) = 0.99999994.
  // gate_1 / denom = 0.8807970881 (true division); gate_1 * f32(1/denom) would be 0.8807971478.
  const auto two = run_json(direct_config(1, 1, 2, {2, 0}, {}));
  CHECK(floats(step(two, "raw_gates")) == std::vector<float>{0.8807970285415649f, 0.11920291185379028f});
  CHECK(floats(step(two, "denom")) == std::vector<float>{0.9999999403953552f});
  CHECK(floats(step(two, "gate_1_normalized")) == std::vector<float>{0.8807970881462097f});
  CHECK(floats(step(two, "gate_2_normalized")) == std::vector<float>{0.11920291930437088f});
}
