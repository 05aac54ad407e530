// mtf_top2 edge cases: capacity rule, grouping, importance, ties, E = 1, padding.
//
// Source: tensorflow/mesh, mesh_tensorflow/transformer/moe.py, `transformer_moe_layer_v1`
// (grouping, capacity), `_split_into_groups` and `_top_2_gating`.
// Dims: B batch, L length, G groups, S group size, E experts, C expert capacity,
//       M model dim, H expert hidden dim.
//
// Expected values are derived by hand in the comments; logits are log(p) of
// hand-picked probabilities, or 0 / -200 where exact values are wanted.
#include <cmath>
#include <cstdint>
#include <initializer_list>
#include <string>
#include <vector>

#include "moeref/error.hpp"
#include "mtf_top2_test_helpers.hpp"
#include "test_support.hpp"

// run_json, step, tensor_json, ints, log_probs, gating_config, f_at, i_at, check_token_slots.
using namespace moeref::testing::mtf;

namespace {

// A config whose x (and router weights) are generated from the seed.
json generated_config(const json& dims, const json& hparams, bool train = true, const char* scope = "gating") {
  return json{{"variant", "mtf_top2"}, {"scope", scope},    {"train", train}, {"seed", 5},
              {"dims", dims},          {"hparams", hparams}};
}

// Every value is zero (a tensor's floats or ints, or a copy of them).
template <class Values>
bool all_zero(const Values& values) {
  for (auto v : values) {
    if (v != 0) return false;
  }
  return true;
}

}  // namespace

// ---- Capacity ------------------------------------------------------------------------

TEST_CASE("mtf_top2 capacity rule with the train and eval factors", "[mtf_top2][capacity]") {
  // transformer_moe_layer_v1: cf = capacity_factor_train if train else capacity_factor_eval;
  // C = max(min(S, int((S * cf) / E)), min_expert_capacity).
  // S = 1024, E = 16: train 1024 * 1.25 / 16 = 80; eval 1024 * 2.0 / 16 = 128.
  const json dims = {{"G", 1}, {"S", 1024}, {"E", 16}, {"M", 1}};
  const json hp = {{"second_policy_train", "none"}, {"second_policy_eval", "none"}};
  const Trace train = run_json(generated_config(dims, hp, true));
  const Trace eval = run_json(generated_config(dims, hp, false));
  CHECK(train.config["dims"]["C"] == 80);
  CHECK(train.capacity["expert_capacity"] == 80);
  CHECK(step(train, "combine_tensor").shape == std::vector<int64_t>{1, 1024, 16, 80});
  CHECK(eval.config["dims"]["C"] == 128);
  CHECK(step(eval, "dispatch_tensor").shape == std::vector<int64_t>{1, 1024, 16, 128});
  // Changing the factors changes C: train cf 0.5 -> 1024 * 0.5 / 16 = 32.
  json hp_small = hp;
  hp_small["capacity_factor_train"] = 0.5;
  CHECK(run_json(generated_config(dims, hp_small, true)).config["dims"]["C"] == 32);
}

TEST_CASE("mtf_top2 min_expert_capacity can raise C above S", "[mtf_top2][capacity]") {
  // S = 2, E = 4, cf 1.25: int(2 * 1.25 / 4) = int(0.625) = 0; min(2, 0) = 0; max(0, 4) = 4 > S.
  // Nothing can be dropped: every first choice is kept.
  const std::vector<double> p = {0.4, 0.3, 0.2, 0.1};
  const Trace trace = run_json(gating_config(1, 2, 4, log_probs({p, p}), {{"second_policy_train", "all"}}));
  CHECK(trace.config["dims"]["C"] == 4);
  CHECK(ints(trace, "mask_1_flat") == std::vector<int32_t>{1, 1});
  CHECK(ints(trace, "mask_2_flat") == std::vector<int32_t>{1, 1});
  // Gates 0.4 / 0.7 and 0.3 / 0.7; expert 0 slots 0, 1; expert 1 slots 0, 1.
  check_token_slots(trace, 0, 0, {{0, 0, 0.4 / 0.7}, {1, 0, 0.3 / 0.7}});
  check_token_slots(trace, 0, 1, {{0, 1, 0.4 / 0.7}, {1, 1, 0.3 / 0.7}});
}

TEST_CASE("mtf_top2 expert_capacity overrides the capacity rule", "[mtf_top2][capacity]") {
  // The rule would give max(min(8, int(8 * 1.25 / 2)), 4) = max(5, 4) = 5; the hparam says 3.
  const json dims = {{"G", 1}, {"S", 8}, {"E", 2}, {"M", 2}};
  const Trace rule = run_json(generated_config(dims, {{"second_policy_train", "none"}}));
  CHECK(rule.config["dims"]["C"] == 5);
  const Trace given = run_json(generated_config(dims, {{"second_policy_train", "none"}, {"expert_capacity", 3}}));
  CHECK(given.config["dims"]["C"] == 3);
  CHECK(step(given, "combine_tensor").shape == std::vector<int64_t>{1, 8, 2, 3});
  CHECK(given.capacity["rule"].get<std::string>().find("expert_capacity") != std::string::npos);
  // A given C that disagrees with the derived one is an error naming dims.C.
  json wrong = generated_config({{"G", 1}, {"S", 8}, {"E", 2}, {"M", 2}, {"C", 4}}, {{"second_policy_train", "none"}});
  CHECK_THROWS_WITH(run_json(wrong), Catch::Contains("dims.C"));
}

TEST_CASE("mtf_top2 capacity 0 drops every token but keeps the losses", "[mtf_top2][capacity][edge]") {
  // min_expert_capacity 0, cf 0.1, S = 8, E = 4: int(8 * 0.1 / 4) = int(0.2) = 0 -> C = 0.
  // Every position is >= 0 = C, so every mask is cleared by `less(position, C)`;
  // combine_tensor has a zero-size C dim. The losses are computed before capacity.
  std::vector<std::vector<double>> rows;
  for (int s = 0; s < 8; ++s)
    rows.push_back(s % 2 == 0 ? std::vector<double>{0.4, 0.3, 0.2, 0.1} : std::vector<double>{0.1, 0.2, 0.3, 0.4});
  const json hp = {{"second_policy_train", "all"}, {"min_expert_capacity", 0}, {"capacity_factor_train", 0.1}};
  const Trace trace = run_json(gating_config(1, 8, 4, log_probs(rows), hp));
  CHECK(trace.config["dims"]["C"] == 0);
  CHECK(step(trace, "combine_tensor").shape == std::vector<int64_t>{1, 8, 4, 0});
  CHECK(step(trace, "combine_tensor").f32.empty());
  CHECK(step(trace, "dispatch_tensor").i32.empty());
  CHECK(all_zero(ints(trace, "mask_1_flat")));
  CHECK(all_zero(ints(trace, "mask_2_flat")));
  CHECK(all_zero(ints(trace, "mask_1_count")));
  CHECK(all_zero(step(trace, "gate_1_capacity").f32));
  // Same routing with room for everyone: identical losses.
  json roomy = hp;
  roomy["expert_capacity"] = 8;
  const Trace reference = run_json(gating_config(1, 8, 4, log_probs(rows), roomy));
  CHECK(moeref::testing::loss(trace, "gating_loss") == moeref::testing::loss(reference, "gating_loss"));
  CHECK(moeref::testing::loss(trace, "gating_loss") > 0.0f);
}

TEST_CASE("mtf_top2 layer with capacity 0 outputs zeros", "[mtf_top2][capacity][edge][layer]") {
  // With no slots, outputs = einsum(expert_output, combine) over an empty C dim is 0.
  const json dims = {{"G", 1}, {"S", 4}, {"E", 2}, {"M", 3}, {"H", 2}};
  const Trace trace =
      run_json(generated_config(dims, {{"expert_capacity", 0}, {"second_policy_train", "all"}}, true, "layer"));
  CHECK(step(trace, "expert_inputs").shape == std::vector<int64_t>{2, 1, 0, 3});
  const Tensor& outputs = step(trace, "outputs");
  CHECK(outputs.shape == std::vector<int64_t>{1, 4, 3});
  CHECK(all_zero(outputs.f32));
}

// ---- Grouping ------------------------------------------------------------------------

TEST_CASE("mtf_top2 grouping: B*L = 1500 with group_size 1024 is one group of 1500", "[mtf_top2][grouping]") {
  // _split_into_groups(1500, 1024, 1): num_groups = max(1, 1500 // 1024) = 1 divides 1500.
  const json dims = {{"B", 1}, {"L", 1500}, {"E", 2}, {"M", 1}};
  const Trace trace = run_json(generated_config(dims, {{"second_policy_train", "none"}, {"expert_capacity", 4}}));
  CHECK(trace.config["dims"]["G"] == 1);
  CHECK(trace.config["dims"]["S"] == 1500);
  CHECK(step(trace, "index_1").shape == std::vector<int64_t>{1, 1500});
  // Positions run over all 1500 tokens of the group: with C = 4 only 4 tokens per expert are kept.
  const std::vector<int32_t> count = ints(trace, "mask_1_count");
  CHECK(count[0] + count[1] == 8);
}

TEST_CASE("mtf_top2 grouping: B*L = 12 with group_size 4 is 3 groups of 4, row-major", "[mtf_top2][grouping]") {
  // _split_into_groups(12, 4, 1): 12 // 4 = 3 divides 12 -> G = 3, S = 4. mtf.reshape
  // keeps row-major order, so token (b, l) is flat index b*L + l = g*S + s.
  const json dims = {{"B", 3}, {"L", 4}, {"E", 2}, {"M", 2}};
  json config = generated_config(dims, {{"second_policy_train", "none"}, {"group_size", 4}});
  std::vector<float> importance = {1, 1, 0, 1, 1, 0, 0, 1, 1, 1, 1, 0};
  config["inputs"]["importance"] = tensor_json({"B", "L"}, {3, 4}, importance);
  const Trace trace = run_json(config);
  CHECK(trace.config["dims"]["G"] == 3);
  CHECK(trace.config["dims"]["S"] == 4);
  const Tensor* x = trace.find_input("x");
  REQUIRE(x != nullptr);
  CHECK(x->shape == std::vector<int64_t>{3, 4, 2});
  const Tensor& grouped = step(trace, "inputs");
  CHECK(grouped.shape == std::vector<int64_t>{3, 4, 2});
  CHECK(grouped.f32 == x->f32);
  CHECK(step(trace, "importance").shape == std::vector<int64_t>{3, 4});
  CHECK(step(trace, "importance").f32 == importance);
  // Padding (importance 0) at flat 2, 5, 6, 11 routes nowhere.
  const std::vector<int32_t> flat = ints(trace, "mask_1_flat");
  for (size_t t : {size_t{2}, size_t{5}, size_t{6}, size_t{11}}) CHECK(flat[t] == 0);
}

TEST_CASE("mtf_top2 grouping: mesh_dim_size forces a multiple of it", "[mtf_top2][grouping]") {
  // _split_into_groups(12, 4, 2): 3 is not a multiple of 2 -> 4, which divides 12 -> S = 3.
  const json dims = {{"B", 3}, {"L", 4}, {"E", 2}, {"M", 2}};
  const Trace trace =
      run_json(generated_config(dims, {{"second_policy_train", "none"}, {"group_size", 4}, {"mesh_dim_size", 2}}));
  CHECK(trace.config["dims"]["G"] == 4);
  CHECK(trace.config["dims"]["S"] == 3);
  // _split_into_groups(12, 12, 2): 1 -> 2 groups of 6.
  const Trace two =
      run_json(generated_config(dims, {{"second_policy_train", "none"}, {"group_size", 12}, {"mesh_dim_size", 2}}));
  CHECK(two.config["dims"]["G"] == 2);
  CHECK(two.config["dims"]["S"] == 6);
  // n = 9 is not a multiple of 2: _split_into_groups raises.
  const json odd = {{"B", 3}, {"L", 3}, {"E", 2}, {"M", 2}};
  CHECK_THROWS_AS(run_json(generated_config(odd, {{"mesh_dim_size", 2}})), moeref::InputError);
}

// ---- Importance ----------------------------------------------------------------------

TEST_CASE("mtf_top2 importance: 1 routes both, 0.5 only a second choice, 0 nothing", "[mtf_top2][importance]") {
  // _top_2_gating with importance:
  //   mask_1 *= (importance == 1); gate_1 *= (importance == 1); density_1_proxy *= (importance == 1)
  //   gates_without_top_1 = raw_gates * (1 - mask_1)   (masked mask_1: importance != 1 keeps all gates)
  //   mask_2 *= (importance > 0)
  // S = 4, E = 3, C = 4, policy all:
  //   t0 imp 1   p = [0.5, 0.3, 0.2]: first e0, second e1
  //   t1 imp 0.5 p = [0.2, 0.5, 0.3]: no first; gw = p, so index_2 = argmax = 1 and
  //                                   gate_2_n = 0.5 / (0 + 0.5 + 1e-9) ~ 1
  //   t2 imp 0   p = [0.5, 0.3, 0.2]: nothing (index_2 = 0, but mask_2 cleared)
  //   t3 imp 1   p = [0.2, 0.5, 0.3]: first e1, second e2
  // First choices: e0 <- t0 slot 0, e1 <- t3 slot 0; mask_1_count = [1, 1, 0].
  // Second choices of e1: t0 -> 0 + 1 = 1, t1 -> 1 + 1 = 2 (after t3's first choice,
  // although t3 is a later token). Second choice of e2: t3 -> 0.
  const std::vector<double> a = {0.5, 0.3, 0.2}, b = {0.2, 0.5, 0.3};
  json config =
      gating_config(1, 4, 3, log_probs({a, b, a, b}), {{"second_policy_train", "all"}, {"expert_capacity", 4}});
  config["inputs"]["importance"] = tensor_json({"G", "S"}, {1, 4}, {1.0f, 0.5f, 0.0f, 1.0f});
  const Trace trace = run_json(config);
  CHECK(ints(trace, "mask_1_important") == std::vector<int32_t>{1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0});
  CHECK(ints(trace, "index_2") == std::vector<int32_t>{1, 1, 0, 2});
  CHECK(ints(trace, "mask_2_important") == std::vector<int32_t>{0, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1});
  const Tensor& gate_1_important = step(trace, "gate_1_important");
  CHECK(gate_1_important.f32[1] == 0.0f);
  CHECK(gate_1_important.f32[2] == 0.0f);
  CHECK(static_cast<double>(step(trace, "gate_2_normalized").f32[1]) == Approx(1.0).margin(2e-7));
  check_token_slots(trace, 0, 0, {{0, 0, 0.625}, {1, 1, 0.375}});
  check_token_slots(trace, 0, 1, {{1, 2, 1.0}});
  check_token_slots(trace, 0, 2, {});
  check_token_slots(trace, 0, 3, {{1, 0, 0.625}, {2, 0, 0.375}});

  // density_1 = reduce_mean(mask_1, group): divides by S = 4, padding included.
  //   e0: 1/4, e1: 1/4, e2: 0.
  // density_1_proxy = reduce_mean(raw_gates * (importance == 1)):
  //   e0: (0.5 + 0.2)/4 = 0.175, e1: (0.3 + 0.5)/4 = 0.2, e2: (0.2 + 0.3)/4 = 0.125.
  // loss = mean_E(density_1_proxy * density_1) * E^2 = (0.04375 + 0.05 + 0) / 3 * 9 = 0.28125.
  const auto density_1 = step(trace, "density_1").f32;
  CHECK(density_1 == std::vector<float>{0.25f, 0.25f, 0.0f});
  const auto proxy = step(trace, "density_1_proxy").f32;
  CHECK(static_cast<double>(proxy[0]) == Approx(0.175).epsilon(1e-6));
  CHECK(static_cast<double>(proxy[1]) == Approx(0.2).epsilon(1e-6));
  CHECK(static_cast<double>(proxy[2]) == Approx(0.125).epsilon(1e-6));
  CHECK(static_cast<double>(moeref::testing::loss(trace, "gating_loss")) == Approx(0.28125).epsilon(1e-6));
}

TEST_CASE("mtf_top2 importance 0.5 passes the threshold policy and queues behind first choices",
          "[mtf_top2][importance][policy]") {
  // gate_2_n ~ 1 > 0.2, so `greater(gate_2, threshold)` keeps it; t1 (imp 0.5) and t0 both
  // want expert 0: t0's first choice takes slot 0, t1's (second) choice slot 1.
  const std::vector<double> a = {0.6, 0.3, 0.1};
  json config =
      gating_config(1, 2, 3, log_probs({a, a}),
                    {{"second_policy_train", "threshold"}, {"second_threshold_train", 0.9}, {"expert_capacity", 2}});
  config["inputs"]["importance"] = tensor_json({"G", "S"}, {1, 2}, {0.5f, 1.0f});
  const Trace trace = run_json(config);
  // t0 (imp 0.5): gate_2_n ~ 1 > 0.9 kept; t1 (imp 1): gate_2_n = 0.3/0.9 = 0.333 dropped.
  CHECK(ints(trace, "second_policy_keep") == std::vector<int32_t>{1, 0});
  check_token_slots(trace, 0, 0, {{0, 1, 1.0}});
  check_token_slots(trace, 0, 1, {{0, 0, 0.6 / 0.9}});
}

TEST_CASE("mtf_top2 all padding: nothing routed, zero loss, no NaN", "[mtf_top2][importance][edge]") {
  // importance == 0 everywhere: mask_1, gate_1 and the proxy are cleared (== 1 fails) and
  // mask_2 is cleared (> 0 fails), so combine is 0 and loss = mean(0 * 0) * E^2 = 0.
  const json dims = {{"G", 1}, {"S", 3}, {"E", 3}, {"M", 2}, {"H", 3}};
  json config =
      generated_config(dims, {{"second_policy_train", "random"}, {"use_second_place_loss", false}}, true, "layer");
  config["inputs"]["importance"] = tensor_json({"G", "S"}, {1, 3}, {0.0f, 0.0f, 0.0f});
  const Trace trace = run_json(config);
  CHECK(all_zero(step(trace, "combine_tensor").f32));
  CHECK(all_zero(step(trace, "dispatch_tensor").i32));
  CHECK(all_zero(step(trace, "expert_inputs").f32));
  CHECK(all_zero(step(trace, "outputs").f32));
  CHECK(moeref::testing::loss(trace, "gating_loss") == 0.0f);
  CHECK(moeref::testing::loss(trace, "loss") == 0.0f);
  for (const moeref::NamedTensor& named : trace.steps) {
    for (float v : named.tensor.f32) {
      INFO("step " << named.name);
      CHECK_FALSE(std::isnan(v));
    }
  }
}

// ---- Ties and zero gates ---------------------------------------------------------------

TEST_CASE("mtf_top2 ties: the lowest index wins for index_1 and index_2", "[mtf_top2][ties]") {
  // mtf.top_1 -> tf.math.argmax: smallest index among equal maxima, for both top_1 calls.
  //   t0 logits [0, 0, 0, 0] -> index_1 0, index_2 1 (gates equal, both normalise to ~0.5)
  //   t1 logits [1, 3, 3, 0] -> index_1 1, index_2 2
  //   t2 logits [3, 1, 3, 3] -> index_1 0, index_2 2
  const Trace trace = run_json(gating_config(1, 3, 4, {0, 0, 0, 0, 1, 3, 3, 0, 3, 1, 3, 3},
                                             {{"second_policy_train", "all"}, {"expert_capacity", 4}}));
  CHECK(ints(trace, "index_1") == std::vector<int32_t>{0, 1, 0});
  CHECK(ints(trace, "index_2") == std::vector<int32_t>{1, 2, 2});
  const auto g1 = step(trace, "gate_1_normalized").f32;
  const auto g2 = step(trace, "gate_2_normalized").f32;
  for (size_t s = 0; s < 3; ++s) {
    // Equal raw gates times the same reciprocal: bit-identical normalised gates.
    CHECK(g1[s] == g2[s]);
    CHECK(static_cast<double>(g1[s]) == Approx(0.5).epsilon(1e-6));
  }
}

TEST_CASE("mtf_top2 a zero-weight second choice takes a slot but is not dispatched", "[mtf_top2][ties][edge]") {
  // Logits [0, -200, -200]: exp(-200) underflows to 0 in float32, so raw_gates = [1, 0, 0]
  // and gates_without_top_1 = [0, 0, 0]: top_1 of all zeros is index 0 with gate 0.
  //   t0 [0, -200, -200]: index_1 0, index_2 0 (the same expert), gate_2 0.
  //   t1 [-200, 0, -200]: index_1 1, index_2 0, gate_2 0.
  // First choices: e0 <- t0 slot 0, e1 <- t1 slot 0; mask_1_count = [1, 1, 0].
  // Second choices (policy all) both on e0: t0 -> 0 + 1 = 1, t1 -> 1 + 1 = 2; both < C = 3,
  // so mask_2_flat = 1, but their weight is 0 and dispatch = cast(combine, bool) is 0.
  const Trace trace = run_json(
      gating_config(1, 2, 3, {0, -200, -200, -200, 0, -200}, {{"second_policy_train", "all"}, {"expert_capacity", 3}}));
  CHECK(ints(trace, "index_1") == std::vector<int32_t>{0, 1});
  CHECK(ints(trace, "index_2") == std::vector<int32_t>{0, 0});
  CHECK(step(trace, "gate_2").f32 == std::vector<float>{0.0f, 0.0f});
  CHECK(step(trace, "gate_1_normalized").f32 == std::vector<float>{1.0f, 1.0f});
  CHECK(ints(trace, "position_in_expert_2_flat") == std::vector<int32_t>{1, 2});
  CHECK(ints(trace, "mask_2_flat") == std::vector<int32_t>{1, 1});
  check_token_slots(trace, 0, 0, {{0, 0, 1.0}});
  check_token_slots(trace, 0, 1, {{1, 0, 1.0}});
}

// ---- E = 1 ------------------------------------------------------------------------------

TEST_CASE("mtf_top2 with one expert: the second choice is a zero-weight copy of the first", "[mtf_top2][edge][e1]") {
  // E = 1: softmax of one logit is exp(x - (log(1) + x)) = exp(0) = 1 exactly;
  // gates_without_top_1 = 1 * (1 - 1) = 0, so index_2 = 0 = index_1 and gate_2 = 0;
  // denom = f32(1 + 0 + 1e-9) = 1, gate_1_n = 1 exactly.
  SECTION("policy all: second choices occupy slots 3, 4, 5 after the 3 first choices") {
    // C = 4: first choices at 0, 1, 2; mask_1_count = 3; second choices at 3, 4, 5;
    // only t0's fits (3 < 4), with weight 0: slot 3 stays empty and undispatched.
    const Trace trace =
        run_json(gating_config(1, 3, 1, {0.3f, -1.7f, 2.0f}, {{"second_policy_train", "all"}, {"expert_capacity", 4}}));
    CHECK(step(trace, "raw_gates").f32 == std::vector<float>{1.0f, 1.0f, 1.0f});
    CHECK(ints(trace, "index_2") == std::vector<int32_t>{0, 0, 0});
    CHECK(step(trace, "gate_2").f32 == std::vector<float>{0.0f, 0.0f, 0.0f});
    CHECK(step(trace, "gate_1_normalized").f32 == std::vector<float>{1.0f, 1.0f, 1.0f});
    CHECK(ints(trace, "position_in_expert_2_flat") == std::vector<int32_t>{3, 4, 5});
    CHECK(ints(trace, "mask_2_flat") == std::vector<int32_t>{1, 0, 0});
    check_token_slots(trace, 0, 0, {{0, 0, 1.0}});
    check_token_slots(trace, 0, 1, {{0, 1, 1.0}});
    check_token_slots(trace, 0, 2, {{0, 2, 1.0}});
    // density_1 = 3 * f32(1/3) = 1 (rounded), proxy = 1: loss = 1 * 1 * E^2 = 1.
    CHECK(static_cast<double>(moeref::testing::loss(trace, "gating_loss")) == Approx(1.0).epsilon(1e-6));
  }
  SECTION("policy random: U < 0 never holds, even for U = 0") {
    json config =
        gating_config(1, 3, 1, {0.3f, -1.7f, 2.0f}, {{"second_policy_train", "random"}, {"expert_capacity", 4}});
    config["inputs"]["second_policy_uniform"] = tensor_json({"G", "S"}, {1, 3}, {0.0f, 0.5f, 0.99f});
    const Trace trace = run_json(config);
    CHECK(ints(trace, "second_policy_keep") == std::vector<int32_t>{0, 0, 0});
    CHECK(ints(trace, "mask_2_flat") == std::vector<int32_t>{0, 0, 0});
  }
  SECTION("policy threshold: 0 > f32(threshold) never holds") {
    const Trace trace = run_json(gating_config(
        1, 3, 1, {0.3f, -1.7f, 2.0f}, {{"second_policy_train", "threshold"}, {"second_threshold_train", 0.0}}));
    CHECK(ints(trace, "second_policy_keep") == std::vector<int32_t>{0, 0, 0});
  }
}

// ---- combine_tensor, element by element ----------------------------------------------------

TEST_CASE("mtf_top2 combine_tensor holds the source's sum of one-hot products in every element",
          "[mtf_top2][combine][edge]") {
  // combine[t, e, c] = gate_1 * mask_1 * one_hot(index_1)[e] * one_hot(pos_1)[c]
  //                  + gate_2 * mask_2 * one_hot(index_2)[e] * one_hot(pos_2)[c],
  // recomputed here per element from the trace's own steps and compared bit for bit.
  // (moeref fills each row from the 16 sums a token can have; this is the plain formula.)
  // Token 1 ties three ways, token 3 two ways; four tokens choose expert 0 first, more
  // than C = 2 (a position >= C is an all-zero one-hot).
  std::vector<float> logits = {2.0f, 0.0f, 1.0f,  0.0f, 0.0f, 0.0f, 0.0f, 2.0f, 1.0f,
                               1.0f, 1.0f, -3.0f, 0.0f, 1.0f, 2.0f, 3.0f, 0.0f, 2.0f};
  json config = gating_config(1, 6, 3, logits, {{"second_policy_train", "all"}, {"expert_capacity", 2}});
  const Trace trace = run_json(config);
  const Tensor& combine = step(trace, "combine_tensor");
  const int64_t S = 6, E = 3, C = 2;
  REQUIRE(combine.shape == std::vector<int64_t>{1, S, E, C});
  const auto& g1 = step(trace, "gate_1_capacity").f32;
  const auto& g2 = step(trace, "gate_2_capacity").f32;
  const std::vector<int32_t> m1 = ints(trace, "mask_1_flat"), m2 = ints(trace, "mask_2_flat");
  const std::vector<int32_t> i1 = ints(trace, "index_1"), i2 = ints(trace, "index_2");
  const std::vector<int32_t> p1 = ints(trace, "position_in_expert_1_flat"),
                             p2 = ints(trace, "position_in_expert_2_flat");
  int nonzero = 0, over_capacity = 0, placed = 0;
  for (int64_t t = 0; t < S; ++t) {
    const size_t u = static_cast<size_t>(t);
    over_capacity += p1[u] >= C || p2[u] >= C ? 1 : 0;
    placed += (m1[u] != 0 && g1[u] != 0.0f ? 1 : 0) + (m2[u] != 0 && g2[u] != 0.0f ? 1 : 0);
    for (int64_t e = 0; e < E; ++e) {
      for (int64_t c = 0; c < C; ++c) {
        const float term_1 =
            g1[u] * static_cast<float>(m1[u]) * (i1[u] == e ? 1.0f : 0.0f) * (p1[u] == c ? 1.0f : 0.0f);
        const float term_2 =
            g2[u] * static_cast<float>(m2[u]) * (i2[u] == e ? 1.0f : 0.0f) * (p2[u] == c ? 1.0f : 0.0f);
        const float expected = term_1 + term_2;
        const float actual = combine.f32[static_cast<size_t>((t * E + e) * C + c)];
        INFO("token " << t << ", expert " << e << ", slot " << c);
        CHECK(moeref::testing::bits_of(actual) == moeref::testing::bits_of(expected));
        nonzero += actual != 0.0f ? 1 : 0;
      }
    }
  }
  CHECK(nonzero == placed);  // one nonzero per kept choice with a weight
  // Every slot is taken: e0 by t0, t1 (first choices; t3, t5 overflow), e1 by t2 and
  // t1's second choice, e2 by t4 and t0's second choice (the other seconds queue past C).
  CHECK(placed == E * C);
  CHECK(over_capacity > 0);
}
