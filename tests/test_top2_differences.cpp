// The GShard top-2 lineage side by side: one test per row of spec/variants/top2_differences.md.
//
// Four columns are compared, each a moeref variant run at scope "gating" on the SAME supplied
// logits (and, where a row needs them, the same paddings / importance and the same supplied
// random draws):
//   mtf    = mtf_top2     (tensorflow/mesh, mesh_tensorflow/transformer/moe.py, _top_2_gating)
//   L-leg  = lingvo_top2, legacy_mtf_behavior true
//   L-new  = lingvo_top2, legacy_mtf_behavior false
//            (tensorflow/lingvo, lingvo/core/gshard_layers.py, Top2GatingOnLogits)
//   praxis = praxis_top2  (google/praxis, praxis/gshard_utils.py, top2_gating_on_logits), legacy true
//            as its layer hard-wires it; P-new = praxis_top2 with legacy_mtf_behavior false.
// Each test asserts the DIFFERENT answers its row states. Every expected number is derived by
// hand in the comments (float32 values restated from the source formulas with exp/log in double
// rounded once, notation §4.2), never copied from moeref's output.
//
// Dims: G groups, S group size, E experts, C expert capacity.
#include <string>
#include <vector>

#include "moeref/error.hpp"
#include "test_support.hpp"

using moeref::testing::loss;
using moeref::testing::run_json;
using moeref::testing::step;
using moeref::testing::tensor_json;

namespace {

// Scope "gating" with supplied logits [G, S, E]: for lingvo_top2 this is a direct
// Top2GatingOnLogits call, for mtf_top2 and praxis_top2 the gating function on those logits.
nlohmann::json gating(const std::string& variant, int64_t G, int64_t S, int64_t E, const std::vector<float>& logits,
                      nlohmann::json hparams) {
  return {{"variant", variant},
          {"scope", "gating"},
          {"seed", 0},
          {"dims", {{"G", G}, {"S", S}, {"E", E}}},
          {"hparams", std::move(hparams)},
          {"inputs", {{"logits", tensor_json({"G", "S", "E"}, {G, S, E}, logits)}}}};
}

// Adds a [G, S] float32 input (paddings, importance, a per-token random draw).
nlohmann::json with_token_input(nlohmann::json config, const std::string& name, int64_t G, int64_t S,
                                const std::vector<float>& data) {
  config["inputs"][name] = tensor_json({"G", "S"}, {G, S}, data);
  return config;
}

// A fixed capacity C in each variant's own vocabulary (no capacity factor).
nlohmann::json mtf_hp(int64_t C, nlohmann::json extra = nlohmann::json::object()) {
  extra["expert_capacity"] = C;
  return extra;
}
nlohmann::json lingvo_hp(int64_t C, bool legacy, nlohmann::json extra = nlohmann::json::object()) {
  extra["expert_capacity_dim"] = C;
  extra["legacy_mtf_behavior"] = legacy;
  return extra;
}
nlohmann::json praxis_hp(int64_t C, bool legacy, nlohmann::json extra = nlohmann::json::object()) {
  extra["expert_capacity_dim"] = C;
  extra["capacity_factor"] = nullptr;
  extra["legacy_mtf_behavior"] = legacy;
  return extra;
}

int64_t capacity_of(const moeref::Trace& trace) { return trace.capacity.at("expert_capacity").get<int64_t>(); }

size_t step_index(const moeref::Trace& trace, const std::string& name) {
  for (size_t i = 0; i < trace.steps.size(); ++i) {
    if (trace.steps[i].name == name) return i;
  }
  FAIL("no step " << name);
  return 0;
}

// Number of (e, c) slots token s of group 0 is dispatched to: dispatch_tensor is [G, S, E, C].
int32_t dispatched_slots(const moeref::Trace& trace, int64_t s) {
  const moeref::Tensor& dispatch = step(trace, "dispatch_tensor");
  const int64_t E = dispatch.shape[2], C = dispatch.shape[3];
  int32_t total = 0;
  for (int64_t k = s * E * C; k < (s + 1) * E * C; ++k) total += dispatch.i32[static_cast<size_t>(k)];
  return total;
}

std::vector<int32_t> ints(const moeref::Trace& trace, const std::string& name) {
  const auto& values = step(trace, name).i32;
  return {values.begin(), values.end()};
}
float at(const moeref::Trace& trace, const std::string& name, size_t i) { return step(trace, name).f32.at(i); }

}  // namespace

// ---- Row 1: capacity rule -----------------------------------------------------------------------

TEST_CASE("differences row 01 capacity rule: the same S E and factor give different C", "[differences]") {
  // mtf (transformer_moe_layer_v1):   C = max(min(S, int(S * cf / E)), min_expert_capacity = 4)
  // lingvo (Top2GatingOnLogits):     cf > 0: auto = int(S * cf / E), 0 -> 4; C0 < auto: C = roundup4(auto)
  // praxis (top2_gating_on_logits):  cf truthy: auto = int(S * cf / E), NO 0 -> 4; C0 < auto: roundup4(auto)
  // lingvo and praxis are given C0 = expert_capacity_dim = 0 (praxis's layer default).
  struct Case {
    int64_t S, E;
    double cf;
    int64_t mtf, lingvo, praxis;
  };
  const std::vector<Case> cases = {
      // S=16 E=4 cf=1.25: int(5.0) = 5. mtf: max(min(16, 5), 4) = 5. lingvo/praxis: 0 < 5 -> roundup4 = 8.
      {16, 4, 1.25, 5, 8, 8},
      // S=3 E=8 cf=2: int(0.75) = 0. mtf: max(min(3, 0), 4) = 4. lingvo: auto 0 -> 4, 0 < 4 -> 4.
      // praxis: auto stays 0, 0 < 0 is false -> C = C0 = 0: every token is dropped.
      {3, 8, 2.0, 4, 4, 0},
      // S=5 E=1 cf=2: int(10.0) = 10. mtf caps at S: max(min(5, 10), 4) = 5. lingvo/praxis have
      // no cap at S: roundup4(10) = 12 > S.
      {5, 1, 2.0, 5, 12, 12},
  };
  for (const Case& c : cases) {
    INFO("S=" << c.S << " E=" << c.E << " cf=" << c.cf);
    const std::vector<float> logits(static_cast<size_t>(c.S * c.E), 0.0f);
    const moeref::Trace mtf = run_json(
        gating("mtf_top2", 1, c.S, c.E, logits, {{"capacity_factor_train", c.cf}, {"second_policy_train", "all"}}));
    const nlohmann::json lingvo_capacity = {{"expert_capacity_dim", 0}, {"capacity_factor", c.cf}};
    const moeref::Trace lingvo_legacy = run_json(gating("lingvo_top2", 1, c.S, c.E, logits, lingvo_capacity));
    nlohmann::json lingvo_new_hp = lingvo_capacity;
    lingvo_new_hp["legacy_mtf_behavior"] = false;
    const moeref::Trace lingvo_new = run_json(gating("lingvo_top2", 1, c.S, c.E, logits, lingvo_new_hp));
    const moeref::Trace praxis =
        run_json(gating("praxis_top2", 1, c.S, c.E, logits, {{"expert_capacity_dim", 0}, {"capacity_factor", c.cf}}));
    CHECK(capacity_of(mtf) == c.mtf);
    CHECK(capacity_of(lingvo_legacy) == c.lingvo);
    CHECK(capacity_of(lingvo_new) == c.lingvo);  // legacy_mtf_behavior does not touch the capacity rule
    CHECK(capacity_of(praxis) == c.praxis);
  }
}

// ---- Row 2: renormalisation timing --------------------------------------------------------------

TEST_CASE("differences row 02 renormalisation timing: gate_1 of a token that lost its second choice", "[differences]") {
  // G=1, S=2, E=2, C=1, policy all. Token 0 prefers expert 0, token 1 expert 1:
  //   logits t0 = [1, 0], t1 = [0, 1]. Softmax (all three formulas agree on [1, 0]):
  //   p = [0.7310585975646973, 0.2689414322376251].
  // First choices: t0 -> e0 slot 0, t1 -> e1 slot 0; mask_1_count = [1, 1].
  // Second choices queue behind them: t0 -> e1 at 0 + 1 = 1 >= C, t1 -> e0 at 1 >= C: both dropped.
  // Legacy (mtf, L-leg, praxis) renormalises BEFORE capacity: denom = f32(f32(p0 + p1) + f32(1e-9))
  //   = f32(1 + 1e-9) = 1, gate_1 = p0 / 1 = 0.7310586 and it stays so after the drop.
  // Non-legacy (L-new, P-new) renormalises AFTER capacity: gate_2 = 0 after the drop, so
  //   denom = p0 + 0 and gate_1 = p0 / p0 = 1 exactly.
  const std::vector<float> logits = {1.0f, 0.0f, 0.0f, 1.0f};
  const float p0 = 0.7310585975646973f;
  const moeref::Trace mtf = run_json(gating("mtf_top2", 1, 2, 2, logits, mtf_hp(1, {{"second_policy_train", "all"}})));
  const moeref::Trace l_leg = run_json(gating("lingvo_top2", 1, 2, 2, logits, lingvo_hp(1, true)));
  const moeref::Trace l_new = run_json(gating("lingvo_top2", 1, 2, 2, logits, lingvo_hp(1, false)));
  const moeref::Trace praxis = run_json(gating("praxis_top2", 1, 2, 2, logits, praxis_hp(1, true)));
  const moeref::Trace p_new = run_json(gating("praxis_top2", 1, 2, 2, logits, praxis_hp(1, false)));

  // Both tokens lost their second choice everywhere.
  for (const moeref::Trace* t : {&mtf, &l_leg, &l_new, &praxis, &p_new}) {
    CHECK(ints(*t, "mask_1_flat") == std::vector<int32_t>{1, 1});
    CHECK(ints(*t, "mask_2_flat") == std::vector<int32_t>{0, 0});
  }
  // The weight that reaches combine_tensor[g=0, s=0, e=0, c=0] (flat index 0) and [0, 1, 1, 0] (index 3).
  CHECK(at(mtf, "gate_1_capacity", 0) == p0);
  CHECK(at(l_leg, "gate_1_capacity", 0) == p0);
  CHECK(at(praxis, "gate_1_capacity", 0) == p0);
  CHECK(at(l_new, "gate_1_normalized", 0) == 1.0f);
  CHECK(at(p_new, "gate_1_normalized", 0) == 1.0f);
  CHECK(step(mtf, "combine_tensor").f32[0] == p0);
  CHECK(step(l_leg, "combine_tensor").f32[0] == p0);
  CHECK(step(praxis, "combine_tensor").f32[3] == p0);
  CHECK(step(l_new, "combine_tensor").f32[0] == 1.0f);
  CHECK(step(p_new, "combine_tensor").f32[3] == 1.0f);
  // Where the renormalisation sits in the source order: before the capacity mask, or after it.
  CHECK(step_index(mtf, "gate_1_normalized") < step_index(mtf, "mask_1_capacity"));
  CHECK(step_index(l_leg, "gate_1_normalized") < step_index(l_leg, "mask_1_capacity"));
  CHECK(step_index(praxis, "gate_1_normalized") < step_index(praxis, "mask_1_capacity"));
  CHECK(step_index(l_new, "gate_1_normalized") > step_index(l_new, "mask_1_capacity"));
  CHECK(step_index(p_new, "gate_1_normalized") > step_index(p_new, "mask_1_capacity"));
}

// ---- Row 3: denominator, epsilon and division -----------------------------------------------------

TEST_CASE("differences row 03 denominator: epsilon division flavour and the padded token", "[differences]") {
  // G=1, S=2, E=2, C=4, policy all. Both tokens have logits [2, 0]; token 1 is not a real token:
  // mtf importance [1, 0]; lingvo and praxis paddings [0, 1].
  // Softmax of [2, 0]: mtf and TF give p = [0.8807970285415649, 0.11920291185379028]; jax's true
  // division gives p1 = 0.11920291930437088 (row 07).
  const std::vector<float> logits = {2.0f, 0.0f, 2.0f, 0.0f};
  const moeref::Trace mtf = run_json(with_token_input(
      gating("mtf_top2", 1, 2, 2, logits, mtf_hp(4, {{"second_policy_train", "all"}})), "importance", 1, 2, {1, 0}));
  const moeref::Trace l_leg =
      run_json(with_token_input(gating("lingvo_top2", 1, 2, 2, logits, lingvo_hp(4, true)), "paddings", 1, 2, {0, 1}));
  const moeref::Trace l_new =
      run_json(with_token_input(gating("lingvo_top2", 1, 2, 2, logits, lingvo_hp(4, false)), "paddings", 1, 2, {0, 1}));
  const moeref::Trace praxis =
      run_json(with_token_input(gating("praxis_top2", 1, 2, 2, logits, praxis_hp(4, true)), "paddings", 1, 2, {0, 1}));
  const moeref::Trace p_new =
      run_json(with_token_input(gating("praxis_top2", 1, 2, 2, logits, praxis_hp(4, false)), "paddings", 1, 2, {0, 1}));

  // Token 0, legacy denom = f32(f32(p0 + p1) + f32(1e-9)) = f32(0.99999994 + 1e-9) = 0.99999994 in all three.
  CHECK(at(mtf, "denom", 0) == 0.9999999403953552f);
  CHECK(at(l_leg, "denom", 0) == 0.9999999403953552f);
  CHECK(at(praxis, "denom", 0) == 0.9999999403953552f);
  // mtf divides by multiplying with the reciprocal: f32(1 / 0.99999994) = 1.00000006, and
  //   0.88079703 * 1.00000006 = 0.88079715; 0.11920291 * 1.00000006 = 0.11920293.
  // lingvo and praxis divide: 0.88079703 / 0.99999994 = 0.88079709; lingvo 0.11920291 / 0.99999994
  //   = 0.11920292, praxis (jax p1 = 0.11920292) / 0.99999994 = 0.11920293.
  CHECK(at(mtf, "gate_1_normalized", 0) == 0.8807971477508545f);
  CHECK(at(l_leg, "gate_1_normalized", 0) == 0.8807970881462097f);
  CHECK(at(praxis, "gate_1_normalized", 0) == 0.8807970881462097f);
  CHECK(at(mtf, "gate_2_normalized", 0) == 0.11920292675495148f);
  CHECK(at(l_leg, "gate_2_normalized", 0) == 0.11920291930437088f);
  CHECK(at(praxis, "gate_2_normalized", 0) == 0.11920292675495148f);

  // Token 1 (padding). mtf masks gate_1 but NOT gate_2: gates_without_top_1 = raw_gates, gate_2 = p0,
  //   denom = f32(0 + p0) + f32(1e-9) = p0 = 0.88079703, gate_2_normalized = p0 * f32(1 / p0) = 1
  //   (its mask_2 is cleared, so it is still not dispatched: row 04).
  CHECK(at(mtf, "denom", 1) == 0.8807970285415649f);
  CHECK(at(mtf, "gate_2_normalized", 1) == 1.0f);
  // lingvo and praxis clear mask_2 before gate_2 = sum(gates_without_top_1 * mask_2), so both gates
  //   are 0 and the legacy denominator is the epsilon alone: f32(1e-9) = 9.99999972e-10; 0 / 1e-9 = 0.
  CHECK(at(l_leg, "denom", 1) == 9.999999717180685e-10f);
  CHECK(at(praxis, "denom", 1) == 9.999999717180685e-10f);
  CHECK(at(l_leg, "gate_1_normalized", 1) == 0.0f);
  CHECK(at(l_leg, "gate_2_normalized", 1) == 0.0f);
  // Non-legacy: no epsilon. denom = 0 + 0 = 0 is replaced by 1 (where(denom > 0, denom, 1)): lingvo
  //   records both tensors (denom 0, denom_safe 1), praxis records the replaced one as `denom`.
  CHECK(at(l_new, "denom", 1) == 0.0f);
  CHECK(at(l_new, "denom_safe", 1) == 1.0f);
  CHECK(at(p_new, "denom", 1) == 1.0f);
  CHECK(p_new.find_step("denom_safe") == nullptr);
  CHECK(at(l_new, "gate_1_normalized", 1) == 0.0f);
  CHECK(at(p_new, "gate_2_normalized", 1) == 0.0f);
  // Non-legacy token 0 keeps both choices: denom = f32(p0 + p1) = 0.99999994, no epsilon, true division.
  CHECK(at(l_new, "denom", 0) == 0.9999999403953552f);
  CHECK(at(l_new, "gate_1_normalized", 0) == 0.8807970881462097f);
}

// ---- Row 4: the gate the random policy compares -----------------------------------------------------

TEST_CASE("differences row 04 random policy: normalized versus raw gate_2 on the same draw", "[differences]") {
  // G=1, S=1, E=3, logits [1, 0.5, 0], threshold t = 1 (keep iff U < gate_2 / 1), C=4.
  // Softmax: TF and jax give p = [0.5064804, 0.30719590, 0.18632373]; mtf gives p1 = 0.30719587.
  // Legacy gate_2 = p1 / f32(p0 + p1 + 1e-9): lingvo/praxis 0.30719590 / 0.81367630 = 0.37754068;
  //   mtf 0.30719587 * f32(1 / 0.81367624) = 0.37754068 as well.
  // Non-legacy compares the RAW probability p1 = 0.30719590.
  // Draw U = 0.35: legacy keeps (0.35 < 0.37754068), non-legacy drops (0.35 >= 0.30719590).
  const std::vector<float> logits = {1.0f, 0.5f, 0.0f};
  const nlohmann::json mtf_random = mtf_hp(4, {{"second_policy_train", "random"}, {"second_threshold_train", 1.0}});
  const nlohmann::json lingvo_random = {{"second_expert_policy", "random"}, {"second_expert_threshold", 1.0}};
  auto lingvo = [&](bool legacy, float u) {
    return run_json(with_token_input(gating("lingvo_top2", 1, 1, 3, logits, lingvo_hp(4, legacy, lingvo_random)),
                                     "second_policy_uniform", 1, 1, {u}));
  };
  auto praxis = [&](bool legacy, float u) {
    return run_json(with_token_input(gating("praxis_top2", 1, 1, 3, logits, praxis_hp(4, legacy, lingvo_random)),
                                     "random_uniform", 1, 1, {u}));
  };
  auto mtf = [&](const nlohmann::json& hp, float u) {
    return run_json(with_token_input(gating("mtf_top2", 1, 1, 3, logits, hp), "second_policy_uniform", 1, 1, {u}));
  };
  CHECK(ints(mtf(mtf_random, 0.35f), "second_policy_keep") == std::vector<int32_t>{1});
  CHECK(ints(lingvo(true, 0.35f), "sampled_2") == std::vector<int32_t>{1});
  CHECK(ints(praxis(true, 0.35f), "sampled_2") == std::vector<int32_t>{1});
  CHECK(ints(lingvo(false, 0.35f), "sampled_2") == std::vector<int32_t>{0});
  CHECK(ints(praxis(false, 0.35f), "sampled_2") == std::vector<int32_t>{0});
  CHECK(ints(lingvo(true, 0.35f), "mask_2_flat") == std::vector<int32_t>{1});
  CHECK(ints(lingvo(false, 0.35f), "mask_2_flat") == std::vector<int32_t>{0});

  // The scalar divide: mtf multiplies by f32(1 / max(t, 1e-9)), lingvo and praxis divide by
  // f32(max(t, 1e-9)). With t = 0.85 and the same gate_2 = 0.37754068:
  //   mtf    0.37754068 * f32(1 / 0.85) = 0.37754068 * 1.1764706 = 0.44416553
  //   lingvo 0.37754068 / f32(0.85)      = 0.37754068 / 0.85000002 = 0.44416550
  // A draw equal to the lower quotient is kept by mtf and dropped by the strict `<` of the others.
  const float u = 0.44416549801826477f;
  const nlohmann::json t85 = {{"second_expert_policy", "random"}, {"second_expert_threshold", 0.85}};
  CHECK(ints(mtf(mtf_hp(4, {{"second_policy_train", "random"}, {"second_threshold_train", 0.85}}), u),
             "second_policy_keep") == std::vector<int32_t>{1});
  CHECK(ints(run_json(with_token_input(gating("lingvo_top2", 1, 1, 3, logits, lingvo_hp(4, true, t85)),
                                       "second_policy_uniform", 1, 1, {u})),
             "sampled_2") == std::vector<int32_t>{0});
  CHECK(ints(run_json(with_token_input(gating("praxis_top2", 1, 1, 3, logits, praxis_hp(4, true, t85)),
                                       "random_uniform", 1, 1, {u})),
             "sampled_2") == std::vector<int32_t>{0});
}

// ---- Row 5: padding semantics -------------------------------------------------------------------

TEST_CASE("differences row 05 padding: which masks importance and paddings touch", "[differences]") {
  // G=1, S=2, E=2, C=4, policy all; logits t0 = [1, 0], t1 = [2, 0]. Token 1 is marked.
  const std::vector<float> logits = {1.0f, 0.0f, 2.0f, 0.0f};
  const nlohmann::json mtf_all = mtf_hp(4, {{"second_policy_train", "all"}});
  auto run_with = [&](const std::string& variant, const nlohmann::json& hp, const std::string& input,
                      const std::vector<float>& data) {
    return run_json(with_token_input(gating(variant, 1, 2, 2, logits, hp), input, 1, 2, data));
  };
  // mtf, importance 0: mask_1 *= (importance == 1) and mask_2 *= (importance > 0), both whenever
  // importance is given. gate_2 itself is not masked: p0 of [2, 0] = 0.88079703.
  const moeref::Trace mtf = run_with("mtf_top2", mtf_all, "importance", {1, 0});
  CHECK(ints(mtf, "mask_1_important") == std::vector<int32_t>{1, 0, 0, 0});
  CHECK(ints(mtf, "mask_2_important") == std::vector<int32_t>{0, 1, 0, 0});
  CHECK(at(mtf, "gate_2", 1) == 0.8807970285415649f);
  CHECK(dispatched_slots(mtf, 1) == 0);
  // lingvo and praxis, importance 0 WITHOUT paddings: mask_1 *= (importance == 1), but mask_2 is
  // masked only when paddings is given. Token 1's second choice is its argmax e0 (gates_without_top_1
  // = raw_gates), legacy weight p0 / f32(0 + p0 + 1e-9) = 1: it is dispatched.
  const moeref::Trace l_imp = run_with("lingvo_top2", lingvo_hp(4, true), "importance", {1, 0});
  const moeref::Trace p_imp = run_with("praxis_top2", praxis_hp(4, true), "importance", {1, 0});
  for (const moeref::Trace* t : {&l_imp, &p_imp}) {
    CHECK(ints(*t, "mask_1_important") == std::vector<int32_t>{1, 0, 0, 0});
    CHECK(ints(*t, "index_2") == std::vector<int32_t>{1, 0});
    CHECK(t->find_step("mask_2_important") == nullptr);
    CHECK(t->find_step("mask_2_nonpadding") == nullptr);
    CHECK(dispatched_slots(*t, 1) == 1);
  }
  // lingvo and praxis, paddings 1: mask_1 *= 1 - paddings, then mask_2 *= (1 - paddings > 0), and
  // gate_2 is taken AFTER that mask: 0. Not dispatched.
  const moeref::Trace l_pad = run_with("lingvo_top2", lingvo_hp(4, true), "paddings", {0, 1});
  const moeref::Trace p_pad = run_with("praxis_top2", praxis_hp(4, true), "paddings", {0, 1});
  CHECK(ints(l_pad, "mask_1_nonpadded") == std::vector<int32_t>{1, 0, 0, 0});
  CHECK(ints(p_pad, "mask_1_nonpadding") == std::vector<int32_t>{1, 0, 0, 0});
  CHECK(ints(l_pad, "mask_2_important") == std::vector<int32_t>{0, 1, 0, 0});
  CHECK(ints(p_pad, "mask_2_nonpadding") == std::vector<int32_t>{0, 1, 0, 0});
  CHECK(at(l_pad, "gate_2", 1) == 0.0f);
  CHECK(at(p_pad, "gate_2", 1) == 0.0f);
  CHECK(dispatched_slots(l_pad, 1) == 0);
  CHECK(dispatched_slots(p_pad, 1) == 0);
  // mtf has no paddings input; lingvo and praxis take importance only on a direct gating call.
  CHECK_THROWS_AS(run_with("mtf_top2", mtf_all, "paddings", {0, 1}), moeref::InputError);
}

// ---- Row 6: aux loss --------------------------------------------------------------------------

TEST_CASE("differences row 06 aux loss: mean flavour and the non-legacy density denominator", "[differences]") {
  // (a) G=1, S=3, E=2, no padding; logits [3, 0], [1, 0], [1, 0]. All softmaxes agree here:
  //   p([3, 0]) = [0.95257413, 0.047425874], p([1, 0]) = [0.7310586, 0.26894143].
  //   All first choices are e0: count = [3, 0]; sum_S p_e0 = f32(0.95257413 + 0.7310586 + 0.7310586) = 2.4146914.
  //   mtf reduce_mean multiplies by f32(1/3) = 0.33333334: density_1_e0 = f32(3 * 0.33333334) = 1,
  //     proxy_e0 = 2.4146914 * 0.33333334 = 0.80489719; loss = (proxy_e0 * 1 + 0) * f32(1/2) * 4 = 1.6097944.
  //   lingvo/praxis divide by f32(3): density_1_e0 = 1, proxy_e0 = 2.4146914 / 3 = 0.80489713;
  //     aux = (0.80489713 / 2) * 4 = 1.6097943.
  //   L-new also divides both densities by dd = f32(3 / 3) + f32(1e-6) = 1.0000010 (no padding, yet
  //     dd != 1): density 0.99999905, proxy 0.80489635, aux = 1.6097912.
  {
    const std::vector<float> logits = {3.0f, 0.0f, 1.0f, 0.0f, 1.0f, 0.0f};
    const moeref::Trace mtf =
        run_json(gating("mtf_top2", 1, 3, 2, logits, mtf_hp(4, {{"second_policy_train", "all"}})));
    const moeref::Trace l_leg = run_json(gating("lingvo_top2", 1, 3, 2, logits, lingvo_hp(4, true)));
    const moeref::Trace l_new = run_json(gating("lingvo_top2", 1, 3, 2, logits, lingvo_hp(4, false)));
    const moeref::Trace praxis = run_json(gating("praxis_top2", 1, 3, 2, logits, praxis_hp(4, true)));
    const moeref::Trace p_new = run_json(gating("praxis_top2", 1, 3, 2, logits, praxis_hp(4, false)));
    CHECK(loss(mtf, "gating_loss") == 1.6097943782806396f);
    CHECK(loss(l_leg, "aux_loss") == 1.60979425907135f);
    CHECK(loss(praxis, "aux_loss") == 1.60979425907135f);
    CHECK(loss(l_new, "aux_loss") == 1.6097911596298218f);
    CHECK(loss(p_new, "aux_loss") == 1.6097911596298218f);
    CHECK(at(l_new, "density_denom", 0) == 1.0000009536743164f);
    CHECK(l_leg.find_step("density_denom") == nullptr);
    // What each layer returns beside it: mtf the loss times loss_coef = 0.01, praxis times
    // moe_load_balance_loss_weight = 1.0; lingvo returns aux_loss alone (the task scales it).
    CHECK(loss(mtf, "loss") == 1.6097943782806396f * 0.01f);
    CHECK(loss(praxis, "aux_moe_load_balance_loss") == 1.60979425907135f);
    CHECK(l_leg.losses.size() == 1);
  }
  // (b) G=1, S=2, E=2; logits t0 = [1, 0], t1 = [2, 0], token 1 padded (mtf importance 0).
  //   Legacy: density_1 = [1/2, 0]; proxy = [0.7310586 / 2, 0.26894143 / 2] = [0.3655293, 0.13447072];
  //     loss = (0.3655293 * 0.5 + 0) / 2 * 4 = 0.3655293 (mtf's f32(1/2) is exact, so all legacy agree).
  //   Non-legacy: dd = f32(1 / 2) + f32(1e-6) = 0.50000101; density 0.5 / dd = 0.99999797,
  //     proxy 0.3655293 / dd = 0.73105711; aux = 0.73105711 * 0.99999797 / 2 * 4 = 1.4621112,
  //     about 4 = 1 / (fraction of real tokens)^2 times the legacy value.
  {
    const std::vector<float> logits = {1.0f, 0.0f, 2.0f, 0.0f};
    auto padded = [&](const std::string& variant, const nlohmann::json& hp) {
      return run_json(with_token_input(gating(variant, 1, 2, 2, logits, hp), "paddings", 1, 2, {0, 1}));
    };
    const moeref::Trace mtf = run_json(with_token_input(
        gating("mtf_top2", 1, 2, 2, logits, mtf_hp(4, {{"second_policy_train", "all"}})), "importance", 1, 2, {1, 0}));
    CHECK(loss(mtf, "gating_loss") == 0.36552929878234863f);
    CHECK(loss(padded("lingvo_top2", lingvo_hp(4, true)), "aux_loss") == 0.36552929878234863f);
    CHECK(loss(padded("praxis_top2", praxis_hp(4, true)), "aux_loss") == 0.36552929878234863f);
    CHECK(loss(padded("lingvo_top2", lingvo_hp(4, false)), "aux_loss") == 1.462111234664917f);
    CHECK(loss(padded("praxis_top2", praxis_hp(4, false)), "aux_loss") == 1.462111234664917f);
  }
  // Only mtf has the second-place loss (and the num_microbatches division).
  const std::vector<float> two = {1.0f, 0.0f};
  CHECK_NOTHROW(run_json(gating("mtf_top2", 1, 1, 2, two, mtf_hp(4, {{"use_second_place_loss", true}}))));
  CHECK_THROWS_AS(run_json(gating("lingvo_top2", 1, 1, 2, two, {{"use_second_place_loss", true}})), moeref::InputError);
  CHECK_THROWS_AS(run_json(gating("praxis_top2", 1, 1, 2, two, {{"use_second_place_loss", true}})), moeref::InputError);
}

// ---- Row 7: softmax arithmetic ----------------------------------------------------------------------

TEST_CASE("differences row 07 softmax: exp of x minus LSE versus reciprocal multiply versus division",
          "[differences]") {
  // G=1, S=3, E=3, rows [2.5, 0, 0], [3, 1, 0], [0, 0, 0]; raw_gates read at e = 1 (and 0 for row 3).
  // Row 1: t = [1, f32(exp(-2.5)) = 0.082085, 0.082085], Z = f32(1.1641700).
  //   mtf:  lse = f32(f32(log Z) + 2.5) = f32(0.15200841 + 2.5) = 2.6520085; exp(0 - 2.6520085) = 0.070509449
  //   TF:   f32(1 / Z) = 0.85898107; 0.082085 * 0.85898107 = 0.070509464
  //   jax:  0.082085 / 1.1641700 = 0.070509456             (exact value 0.0705094607)
  // Row 2 (spec/variants/lingvo_top2.md, "Arithmetic"): p1 TF 0.11419519037, mtf and jax 0.11419519782.
  // Row 3 (spec/variants/praxis_top2.md, step 5): mtf exp(0 - log 3) = 0.333333313, TF and jax 0.333333343.
  const std::vector<float> logits = {2.5f, 0.0f, 0.0f, 3.0f, 1.0f, 0.0f, 0.0f, 0.0f, 0.0f};
  const moeref::Trace mtf = run_json(gating("mtf_top2", 1, 3, 3, logits, mtf_hp(4, {{"second_policy_train", "all"}})));
  const moeref::Trace l_leg = run_json(gating("lingvo_top2", 1, 3, 3, logits, lingvo_hp(4, true)));
  const moeref::Trace l_new = run_json(gating("lingvo_top2", 1, 3, 3, logits, lingvo_hp(4, false)));
  const moeref::Trace praxis = run_json(gating("praxis_top2", 1, 3, 3, logits, praxis_hp(4, true)));
  CHECK(at(mtf, "raw_gates", 1) == 0.07050944864749908f);
  CHECK(at(l_leg, "raw_gates", 1) == 0.07050946354866028f);
  CHECK(at(l_new, "raw_gates", 1) == 0.07050946354866028f);
  CHECK(at(praxis, "raw_gates", 1) == 0.07050945609807968f);
  CHECK(at(mtf, "raw_gates", 4) == 0.11419519782066345f);
  CHECK(at(l_leg, "raw_gates", 4) == 0.11419519037008286f);
  CHECK(at(praxis, "raw_gates", 4) == 0.11419519782066345f);
  CHECK(at(mtf, "raw_gates", 6) == 0.3333333134651184f);
  CHECK(at(l_leg, "raw_gates", 6) == 0.3333333432674408f);
  CHECK(at(praxis, "raw_gates", 6) == 0.3333333432674408f);
}

// ---- Row 8: position recorded for a dropped token -------------------------------------------------

TEST_CASE("differences row 08 dropped token position: pre-drop in mtf and 0 in lingvo and praxis", "[differences]") {
  // G=1, S=3, E=2, C=1, policy all; every token has logits [1, 0]: first choices all e0, second all e1.
  // First: exclusive cumsum over S gives positions 0, 1, 2 in e0; only token 0 fits (C = 1).
  // Second: mask_1_count = [1, 0], positions in e1 = cumsum [0, 1, 2] + 0; only token 0 fits.
  // mtf records sum_E position (pre-drop): [0, 1, 2]; lingvo and praxis record
  // sum_E position * mask_capacity, which is 0 for a dropped choice: [0, 0, 0].
  const std::vector<float> logits = {1.0f, 0.0f, 1.0f, 0.0f, 1.0f, 0.0f};
  const moeref::Trace mtf = run_json(gating("mtf_top2", 1, 3, 2, logits, mtf_hp(1, {{"second_policy_train", "all"}})));
  const moeref::Trace l_leg = run_json(gating("lingvo_top2", 1, 3, 2, logits, lingvo_hp(1, true)));
  const moeref::Trace l_new = run_json(gating("lingvo_top2", 1, 3, 2, logits, lingvo_hp(1, false)));
  const moeref::Trace praxis = run_json(gating("praxis_top2", 1, 3, 2, logits, praxis_hp(1, true)));
  CHECK(ints(mtf, "position_in_expert_1_flat") == std::vector<int32_t>{0, 1, 2});
  CHECK(ints(mtf, "position_in_expert_2_flat") == std::vector<int32_t>{0, 1, 2});
  for (const moeref::Trace* t : {&l_leg, &l_new, &praxis}) {
    CHECK(ints(*t, "position_in_expert_1_flat") == std::vector<int32_t>{0, 0, 0});
    CHECK(ints(*t, "position_in_expert_2_flat") == std::vector<int32_t>{0, 0, 0});
  }
  for (const moeref::Trace* t : {&mtf, &l_leg, &l_new, &praxis}) {
    CHECK(ints(*t, "mask_1_flat") == std::vector<int32_t>{1, 0, 0});
    CHECK(ints(*t, "mask_2_flat") == std::vector<int32_t>{1, 0, 0});
  }
  // The [G, S, E] position: mtf multiplies the exclusive cumsum by mask_1, lingvo and praxis do not.
  // With t0 = [1, 0] (e0) and t1 = [0, 1] (e1), entry (t1, e0) holds the running count 1 in lingvo
  // and praxis, 0 in mtf.
  const std::vector<float> apart = {1.0f, 0.0f, 0.0f, 1.0f};
  CHECK(ints(run_json(gating("mtf_top2", 1, 2, 2, apart, mtf_hp(1, {{"second_policy_train", "all"}}))),
             "position_in_expert_1") == std::vector<int32_t>{0, 0, 0, 0});
  CHECK(ints(run_json(gating("lingvo_top2", 1, 2, 2, apart, lingvo_hp(1, true))), "position_in_expert_1") ==
        std::vector<int32_t>{0, 0, 1, 0});
  CHECK(ints(run_json(gating("praxis_top2", 1, 2, 2, apart, praxis_hp(1, true))), "position_in_expert_1") ==
        std::vector<int32_t>{0, 0, 1, 0});
}

// ---- Row 9: default policy and threshold -----------------------------------------------------------

TEST_CASE("differences row 09 default policy: mtf random at 0.2 and lingvo praxis all", "[differences]") {
  // G=1, S=1, E=2, logits [2, 0], every hparam at its default (C = 4 in all three: mtf
  // max(min(1, int(1.25 / 2)), 4); lingvo expert_capacity_dim 4; praxis roundup4(int(1 * 2.0 / 2)) = 4).
  // mtf's default policy is random with threshold 0.2, in training AND evaluation:
  //   gate_2 = 0.11920293 (row 03), keep iff U < 0.11920293 * f32(1 / 0.2) = 0.59601462.
  //   With U = 0.99 the second choice is dropped.
  // lingvo and praxis default to policy all (threshold 0.0): the second choice is kept and no draw is made.
  const std::vector<float> logits = {2.0f, 0.0f};
  const nlohmann::json defaults = nlohmann::json::object();
  const moeref::Trace mtf =
      run_json(with_token_input(gating("mtf_top2", 1, 1, 2, logits, defaults), "second_policy_uniform", 1, 1, {0.99f}));
  const moeref::Trace lingvo = run_json(gating("lingvo_top2", 1, 1, 2, logits, defaults));
  const moeref::Trace praxis = run_json(gating("praxis_top2", 1, 1, 2, logits, defaults));
  const nlohmann::json& mtf_hps = mtf.config.at("hparams");
  CHECK(mtf_hps.at("second_policy_train") == "random");
  CHECK(mtf_hps.at("second_policy_eval") == "random");
  CHECK(mtf_hps.at("second_threshold_train").get<double>() == 0.2);
  CHECK(mtf_hps.at("second_threshold_eval").get<double>() == 0.2);
  for (const moeref::Trace* t : {&lingvo, &praxis}) {
    CHECK(t->config.at("hparams").at("second_expert_policy") == "all");
    CHECK(t->config.at("hparams").at("second_expert_threshold").get<double>() == 0.0);
    CHECK(t->find_step("sampled_2") == nullptr);
    CHECK(ints(*t, "mask_2_flat") == std::vector<int32_t>{1});
  }
  CHECK(ints(mtf, "second_policy_keep") == std::vector<int32_t>{0});
  CHECK(ints(mtf, "mask_2_flat") == std::vector<int32_t>{0});
  CHECK(lingvo.find_input("second_policy_uniform") == nullptr);
  CHECK(praxis.find_input("random_uniform") == nullptr);
}

// ---- Row 10: policies available ----------------------------------------------------------------------

TEST_CASE("differences row 10 policies: none and threshold only in mtf and sampling only in lingvo praxis",
          "[differences]") {
  // E=3, logits [2, 1, 0]: greedy second choice e1. C = 4.
  const std::vector<float> logits = {2.0f, 1.0f, 0.0f};
  // mtf: all, none, threshold, random. `none` clears every second choice; `threshold` keeps
  // gate_2 > t: mtf softmax p = [0.66524100, 0.24472849, 0.090030581], gate_2 = 0.24472849 *
  // f32(1 / f32(0.66524100 + 0.24472849 + 1e-9)) = 0.24472849 * f32(1 / 0.90996951) = 0.26894140:
  // > 0.2 is kept, > 0.3 is not.
  CHECK(ints(run_json(gating("mtf_top2", 1, 1, 3, logits, mtf_hp(4, {{"second_policy_train", "none"}}))),
             "mask_2_policy") == std::vector<int32_t>{0, 0, 0});
  CHECK(ints(run_json(gating("mtf_top2", 1, 1, 3, logits,
                             mtf_hp(4, {{"second_policy_train", "threshold"}, {"second_threshold_train", 0.2}}))),
             "second_policy_keep") == std::vector<int32_t>{1});
  CHECK(ints(run_json(gating("mtf_top2", 1, 1, 3, logits,
                             mtf_hp(4, {{"second_policy_train", "threshold"}, {"second_threshold_train", 0.3}}))),
             "second_policy_keep") == std::vector<int32_t>{0});
  CHECK_THROWS_AS(run_json(gating("mtf_top2", 1, 1, 3, logits, mtf_hp(4, {{"second_policy_train", "sampling"}}))),
                  moeref::InputError);
  // lingvo and praxis: all, sampling, random. `sampling` draws the second expert by Gumbel-max over
  // the logits with the first choice excluded: U = [0.5, 0.01, 0.99] gives noise
  // -log(-log U) = [0.37, -1.53, 4.60]; noised logits [-2.4e38, 1 - 1.53, 0 + 4.60] -> e2, not the
  // greedy e1.
  const std::vector<float> u = {0.5f, 0.01f, 0.99f};
  for (const std::string& variant : {std::string("lingvo_top2"), std::string("praxis_top2")}) {
    INFO(variant);
    const std::string draw = variant == "lingvo_top2" ? "noise_uniform" : "sampling_uniform";
    nlohmann::json config = gating(variant, 1, 1, 3, logits, {{"second_expert_policy", "sampling"}});
    config["inputs"][draw] = tensor_json({"G", "S", "E"}, {1, 1, 3}, u);
    CHECK(ints(run_json(config), "index_2") == std::vector<int32_t>{2});
    CHECK(ints(run_json(gating(variant, 1, 1, 3, logits, nlohmann::json::object())), "index_2") ==
          std::vector<int32_t>{1});
    CHECK_THROWS_AS(run_json(gating(variant, 1, 1, 3, logits, {{"second_expert_policy", "threshold"}})),
                    moeref::InputError);
    CHECK_THROWS_AS(run_json(gating(variant, 1, 1, 3, logits, {{"second_expert_policy", "none"}})), moeref::InputError);
  }
}

// ---- Row 11: train/eval dependence ---------------------------------------------------------------------

TEST_CASE("differences row 11 train and eval: only mtf changes capacity and policy", "[differences]") {
  // G=1, S=16, E=4, all logits 0 (every token: e0 first, e1 second).
  // mtf: train cf 1.25 -> C = max(min(16, int(5.0)), 4) = 5; eval cf 2.0 -> int(8.0) = 8.
  //   With second_policy_train all and second_policy_eval none, 16 second choices are live in
  //   training and none in evaluation.
  // lingvo (capacity_factor 1.25, C0 0 -> 8) and praxis (defaults, cf 2.0 -> 8): `train` changes nothing.
  const std::vector<float> logits(64, 0.0f);
  auto with_train = [](nlohmann::json config, bool train) {
    config["train"] = train;
    return run_json(config);
  };
  const nlohmann::json mtf_config =
      gating("mtf_top2", 1, 16, 4, logits, {{"second_policy_train", "all"}, {"second_policy_eval", "none"}});
  const moeref::Trace mtf_train = with_train(mtf_config, true);
  const moeref::Trace mtf_eval = with_train(mtf_config, false);
  CHECK(capacity_of(mtf_train) == 5);
  CHECK(capacity_of(mtf_eval) == 8);
  auto live_second = [](const moeref::Trace& t) {
    int32_t total = 0;
    for (int32_t v : step(t, "mask_2_policy").i32) total += v;
    return total;
  };
  CHECK(live_second(mtf_train) == 16);
  CHECK(live_second(mtf_eval) == 0);
  const nlohmann::json lingvo_config =
      gating("lingvo_top2", 1, 16, 4, logits, {{"expert_capacity_dim", 0}, {"capacity_factor", 1.25}});
  const nlohmann::json praxis_config = gating("praxis_top2", 1, 16, 4, logits, nlohmann::json::object());
  for (const nlohmann::json* config : {&lingvo_config, &praxis_config}) {
    const moeref::Trace train = with_train(*config, true);
    const moeref::Trace eval = with_train(*config, false);
    CHECK(capacity_of(train) == 8);
    CHECK(capacity_of(eval) == 8);
    CHECK(step(train, "combine_tensor").f32 == step(eval, "combine_tensor").f32);
    CHECK(loss(train, "aux_loss") == loss(eval, "aux_loss"));
  }
}

// ---- Row 12: mask and cumsum dtype ------------------------------------------------------------------------

TEST_CASE("differences row 12 mask dtype: praxis int32 truncates a fractional padding", "[differences]") {
  // Source dtypes: mtf float32 masks; lingvo mask_dtype (default fprop_dtype, float); praxis int32
  // (hard-wired by its layer). moeref stores every mask as int32 because the values are exact
  // integers, but the dtype decides what a fractional padding does:
  // G=1, S=2, E=2, C=4; logits t0 = [1, 0], t1 = [2, 0]; token 1 has padding 0.5.
  //   praxis: mask_1 *= int32(1 - 0.5) = 0, so no first choice; the proxy keeps the fraction:
  //     density_1_proxy_per_token[t1] = [0.88079703 * 0.5, 0.11920292 * 0.5] = [0.44039851, 0.059601463]
  //     (jax p1 of [2, 0] is 0.11920291930437088). importance = 0.5 > 0 keeps mask_2: the token's
  //     argmax e0 becomes its second choice and is dispatched.
  //   lingvo: its float mask_1 would become 0.5 (a fractional mask and fractional positions); moeref
  //     does not model that and rejects the input.
  //   mtf: no paddings input; importance 0.5 removes the first choice by (importance == 1), not by a cast.
  const std::vector<float> logits = {1.0f, 0.0f, 2.0f, 0.0f};
  const moeref::Trace praxis = run_json(
      with_token_input(gating("praxis_top2", 1, 2, 2, logits, praxis_hp(4, true)), "paddings", 1, 2, {0, 0.5f}));
  CHECK(ints(praxis, "mask_1_nonpadding") == std::vector<int32_t>{1, 0, 0, 0});
  CHECK(at(praxis, "density_1_proxy_per_token", 2) == 0.44039851427078247f);
  CHECK(at(praxis, "density_1_proxy_per_token", 3) == 0.05960145965218544f);
  CHECK(ints(praxis, "mask_2_nonpadding") == std::vector<int32_t>{0, 1, 1, 0});
  CHECK(dispatched_slots(praxis, 1) == 1);
  CHECK(step(praxis, "mask_1_nonpadding").dtype == moeref::DType::kInt32);
  CHECK_THROWS_AS(run_json(with_token_input(gating("lingvo_top2", 1, 2, 2, logits, lingvo_hp(4, true)), "paddings", 1,
                                            2, {0, 0.5f})),
                  moeref::InputError);
  const moeref::Trace mtf = run_json(with_token_input(
      gating("mtf_top2", 1, 2, 2, logits, mtf_hp(4, {{"second_policy_train", "all"}})), "importance", 1, 2, {1, 0.5f}));
  CHECK(ints(mtf, "mask_1_important") == std::vector<int32_t>{1, 0, 0, 0});
  CHECK(ints(mtf, "mask_2_important") == std::vector<int32_t>{0, 1, 1, 0});
}

// ---- Row 13: defaults -----------------------------------------------------------------------------------------

TEST_CASE("differences row 13 defaults: capacity legacy flag and loss scaling at default hparams", "[differences]") {
  // G=1, S=32, E=4, all logits 0, every hparam at its default.
  //   mtf: train cf 1.25, min 4: C = max(min(32, int(40 / 4)), 4) = 10; eval cf 2.0: int(16.0) = 16.
  //   lingvo: expert_capacity_dim 4 (moeref's choice: the source has no default), no capacity factor: C = 4.
  //   praxis: the layer's expert_capacity_dim 0 and capacity factor 2.0: auto int(16.0) = 16 -> C = 16.
  // Softmax of 4 zeros is exactly 0.25 in all three; all first choices are e0:
  //   density_1 = [1, 0, 0, 0], proxy = [0.25] * 4, loss = (0.25 * 1) / 4 * 16 = 1 in all three.
  //   mtf returns it and loss_coef 0.01 times it; praxis it and 1.0 times it; lingvo it alone.
  const std::vector<float> logits(128, 0.0f);
  const nlohmann::json defaults = nlohmann::json::object();
  nlohmann::json mtf_eval_config = gating("mtf_top2", 1, 32, 4, logits, defaults);
  mtf_eval_config["train"] = false;
  const moeref::Trace mtf = run_json(gating("mtf_top2", 1, 32, 4, logits, defaults));
  const moeref::Trace mtf_eval = run_json(mtf_eval_config);
  const moeref::Trace lingvo = run_json(gating("lingvo_top2", 1, 32, 4, logits, defaults));
  const moeref::Trace praxis = run_json(gating("praxis_top2", 1, 32, 4, logits, defaults));
  CHECK(capacity_of(mtf) == 10);
  CHECK(capacity_of(mtf_eval) == 16);
  CHECK(capacity_of(lingvo) == 4);
  CHECK(capacity_of(praxis) == 16);
  CHECK(lingvo.config.at("hparams").at("legacy_mtf_behavior") == true);
  CHECK(praxis.config.at("hparams").at("legacy_mtf_behavior") == true);
  CHECK(lingvo.config.at("hparams").at("capacity_factor").is_null());
  CHECK(praxis.config.at("hparams").at("capacity_factor").get<double>() == 2.0);
  REQUIRE(mtf.losses.size() == 2);
  CHECK(mtf.losses[0].first == "gating_loss");
  CHECK(mtf.losses[0].second == 1.0f);
  CHECK(mtf.losses[1].first == "loss");
  CHECK(mtf.losses[1].second == 0.01f);
  REQUIRE(lingvo.losses.size() == 1);
  CHECK(lingvo.losses[0].first == "aux_loss");
  CHECK(lingvo.losses[0].second == 1.0f);
  REQUIRE(praxis.losses.size() == 2);
  CHECK(praxis.losses[0].first == "aux_loss");
  CHECK(praxis.losses[1].first == "aux_moe_load_balance_loss");
  CHECK(praxis.losses[1].second == 1.0f);
}
