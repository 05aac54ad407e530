// deepspeed_top1: hand-derived cases for DeepSpeed's top1gating (microsoft/DeepSpeed,
// deepspeed/moe/sharded_moe.py at 38327e0): the float32 capacity, random token selection,
// torch.topk's tie choice without it (checked as a consistent alternative), used_token, RSample,
// Jitter, drop_tokens=False, l_aux, and the errors the source raises.
//
// DeepSpeed's own tests (tests/unit/moe/test_moe.py at 38327e0) call top1gating only in TestTopk,
// which runs it with random logits on two ranks and asserts nothing; their gating numbers are for
// topkgating (tests/test_deepspeed_topk_gating.cpp). The torch.topk tie choices quoted below
// ({2, 4} of five equal tokens) were observed on torch 1.13 CPU (Debian python3-torch) while
// writing these tests; moeref does not run torch. Every other value is derived by hand.
#include <cmath>
#include <vector>

#include "moeref/check.hpp"
#include "moeref/ops/deepspeed_capacity.hpp"
#include "torch_test_helpers.hpp"

using namespace moeref::testing;

namespace {

// deepspeed_top1 in scope "gating" on supplied logits [1, S, E].
nlohmann::json top1_gating(int64_t S, int64_t E, const std::vector<float>& logits, nlohmann::json hparams) {
  nlohmann::json config = gating_on_logits("deepspeed_top1", S, E, logits, std::move(hparams));
  config["train"] = true;
  return config;
}

}  // namespace

TEST_CASE("deepspeed capacity: ceil of a float32 product, then min_capacity", "[deepspeed_top1][ops]") {
  using moeref::ops::deepspeed_capacity;
  // S = 25, E = 2, cf = 1.2: f32(12.5) * f32(1.2) = 15.000001 (1.2 is 1.20000005 in float32), ceil 16.
  // In doubles 12.5 * 1.2 = 15.0 exactly, ceil 15.
  CHECK(deepspeed_capacity(25, 2, 1.2, 0).expert_capacity == 16);
  // S = 16, E = 4, cf 1.0: 4; min_capacity 8 raises it.
  CHECK(deepspeed_capacity(16, 4, 1.0, 0).expert_capacity == 4);
  CHECK(deepspeed_capacity(16, 4, 1.0, 8).expert_capacity == 8);
  CHECK(deepspeed_capacity(16, 4, 1.0, 8).raised_to_min);
  // top2gating passes capacity_factor * 2: S = 10, E = 4, cf = 1.0 -> ceil(2.5 * 2) = 5.
  CHECK(deepspeed_capacity(10, 4, 2.0, 0).expert_capacity == 5);
  // capacity_factor 0 with min_capacity 0 gives C = 0 (refused later, where F.one_hot would raise).
  CHECK(deepspeed_capacity(10, 4, 0.0, 0).expert_capacity == 0);
}

TEST_CASE("deepspeed_top1: random token selection keeps the largest draws, slots in token order",
          "[deepspeed_top1][rts]") {
  // One expert, four tokens. C = max(ceil(4 * 0.5), 0) = 2. rts_uniform [0.1, 0.9, 0.5, 0.7]:
  // mask1_rand = mask1 * U keeps the two largest, tokens 1 and 3; locations = cumsum - 1 in token
  // order gives token 1 slot 0 and token 3 slot 1. The gate is softmax over one expert = 1.
  nlohmann::json config = top1_gating(4, 1, {0, 0, 0, 0}, {{"capacity_factor", 0.5}, {"min_capacity", 0}});
  config["inputs"]["rts_uniform"] = tensor_json({"G", "S", "E"}, {1, 4, 1}, {0.1f, 0.9f, 0.5f, 0.7f});
  const moeref::Trace trace = run_json(config);
  CHECK(trace.capacity["expert_capacity"] == 2);
  CHECK(step(trace, "top_idx").i32 == std::vector<int32_t>{0, 1, 0, 1});
  CHECK(step(trace, "routing_slot").i32 == std::vector<int32_t>{-1, 0, -1, 1});
  CHECK(step(trace, "routing_weight").f32 == std::vector<float>{0, 1, 0, 1});
  // exp_counts is counted before capacity: all four.
  CHECK(step(trace, "exp_counts").i32 == std::vector<int32_t>{4});
}

TEST_CASE("deepspeed_top1: without RTS, torch.topk's choice among equal tokens is a consistent alternative",
          "[deepspeed_top1][near_tie]") {
  // Five tokens all choosing e0 (logits [1, 0]), C = 2 (min_capacity 2, capacity_factor 0), use_rts
  // false: mask1_rand is 1 for every token. moeref keeps the lower indices {0, 1}; torch 1.13 on
  // CPU keeps {2, 4}. A backend holding torch's choice passes as a consistent alternative.
  const std::vector<float> logits = {1, 0, 1, 0, 1, 0, 1, 0, 1, 0};
  const nlohmann::json config =
      top1_gating(5, 2, logits, {{"use_rts", false}, {"capacity_factor", 0.0}, {"min_capacity", 2}});
  const moeref::Trace golden = run_json(config);
  // top_idx per expert column: e0 takes tokens 0, 1; e1 (all zeros) also takes the lowest two.
  CHECK(step(golden, "top_idx").i32 == std::vector<int32_t>{1, 1, 1, 1, 0, 0, 0, 0, 0, 0});
  CHECK(step(golden, "routing_slot").i32 == std::vector<int32_t>{0, 1, -1, -1, -1});
  // torch's choice: expert 0 keeps tokens 2 and 4 (expert 1's column, all zeros, as moeref's).
  moeref::Config forced = moeref::config_from_json(config, "test");
  moeref::Tensor choice = moeref::Tensor::int32({"G", "S", "E"}, {1, 5, 2});
  choice.i32 = {0, 1, 0, 1, 1, 0, 0, 0, 1, 0};
  forced.decision_overrides["top_idx"] = choice;
  const moeref::Trace candidate = moeref::run_config(forced);
  CHECK(step(candidate, "routing_slot").i32 == std::vector<int32_t>{-1, -1, 0, -1, 1});
  const moeref::CheckReport report = moeref::check_traces(golden, candidate, moeref::CheckOptions{});
  INFO(report.to_text());
  CHECK(report.pass);
  CHECK(report.consistent_alternative);
}

TEST_CASE("deepspeed_top1: l_aux is sum(me * ce) * E over the first choices before capacity",
          "[deepspeed_top1][loss]") {
  // Two tokens with logits [1, 0]: gates [0.7310586, 0.2689414] each; both choose e0 (ce = [1, 0]),
  // me = [0.7310586, 0.2689414]; l_aux = 0.7310586 * 2 = 1.4621172, whatever capacity keeps.
  const moeref::Trace trace =
      run_json(top1_gating(2, 2, {1, 0, 1, 0}, {{"min_capacity", 0}, {"capacity_factor", 0.5}}));
  CHECK(loss(trace, "l_aux") == Approx(1.4621172f).epsilon(1e-6));
  // C = ceil(1 * 0.5) = 1: the RTS draw decides which of the two keeps e0.
  CHECK(step(trace, "mask1_flat").i32[0] + step(trace, "mask1_flat").i32[1] == 1);
}

TEST_CASE("deepspeed_top1: RSample picks the argmax of logits + Gumbel, the gate stays clean",
          "[deepspeed_top1][noise]") {
  // Token logits [0, 0.1]. Gumbel from U: u = tiny + U * (1 - 2^-23 - tiny); noise = -log(-log u).
  // U = 0.99 gives +4.60 on e0, U = 0.01 gives -1.53 on e1: logits_w_noise picks e0. The gate is
  // softmax([0, 0.1])[0] = 1 / (1 + e^0.1) = 0.47502081, not the noisy probability.
  nlohmann::json config = top1_gating(1, 2, {0, 0.1f}, {{"noisy_gate_policy", "RSample"}, {"min_capacity", 1}});
  config["inputs"]["gumbel_uniform"] = tensor_json({"G", "S", "E"}, {1, 1, 2}, {0.99f, 0.01f});
  const moeref::Trace trace = run_json(config);
  CHECK(step(trace, "gumbel").f32[0] == Approx(-std::log(-std::log(0.99))).epsilon(1e-5));
  CHECK(step(trace, "indices1_s").i32 == std::vector<int32_t>{0});
  CHECK(step(trace, "routing_weight").f32[0] == Approx(0.47502081f).epsilon(1e-6));
  // In evaluation noisy_gate_policy is passed as None: no draw, e1 wins.
  config["train"] = false;
  config["inputs"].erase("gumbel_uniform");
  const moeref::Trace eval = run_json(config);
  CHECK(eval.find_input("gumbel_uniform") == nullptr);
  CHECK(step(eval, "indices1_s").i32 == std::vector<int32_t>{1});
}

TEST_CASE("deepspeed_top1: Jitter scales the router input only, the experts see the clean input",
          "[deepspeed_top1][noise]") {
  // multiplicative_jitter: Uniform(low=f32(0.99), high=f32(1.01)).rsample = low + U * (high - low) in
  // float32. With one feature x = 2 and U = 0.75 the router sees 2 * 1.005; the expert still gets 2.
  const nlohmann::json config = {{"variant", "deepspeed_top1"},
                                 {"train", true},
                                 {"dims", {{"G", 1}, {"S", 1}, {"E", 1}, {"M", 1}, {"H", 1}}},
                                 {"hparams", {{"noisy_gate_policy", "Jitter"}, {"min_capacity", 1}}},
                                 {"inputs",
                                  {{"x", tensor_json({"G", "S", "M"}, {1, 1, 1}, {2})},
                                   {"jitter_uniform", tensor_json({"G", "S", "M"}, {1, 1, 1}, {0.75f})},
                                   {"router_weights", tensor_json({"M", "E"}, {1, 1}, {1})},
                                   {"wi", tensor_json({"E", "M", "H"}, {1, 1, 1}, {1})},
                                   {"wo", tensor_json({"E", "H", "N"}, {1, 1, 1}, {1})}}}};
  const moeref::Trace trace = run_json(config);
  const float low = 0.99f, high = 1.01f;
  const float jitter = low + 0.75f * (high - low);
  CHECK(step(trace, "jitter").f32[0] == jitter);
  CHECK(step(trace, "logits").f32[0] == 2.0f * jitter);
  CHECK(step(trace, "expert_inputs").f32 == std::vector<float>{2});
  CHECK(step(trace, "outputs").f32 == std::vector<float>{2});  // gate 1 (one expert) * relu(2)
}

TEST_CASE("deepspeed_top1: used_token masks tokens out of mask1, exp_counts and l_aux",
          "[deepspeed_top1][used_token]") {
  // Three tokens on e0, used_token [1, 0, 1]: mask1_used keeps tokens 0 and 2; exp_counts [2, 0];
  // ce = [2/3, 0]; me = [0.7310586, 0.2689414]; l_aux = 0.7310586 * 2/3 * 2 = 0.9747448.
  nlohmann::json config = top1_gating(3, 2, {1, 0, 1, 0, 1, 0}, {{"min_capacity", 1}, {"capacity_factor", 2.0}});
  config["inputs"]["used_token"] = int_tensor_json({"G", "S"}, {1, 3}, {1, 0, 1});
  const moeref::Trace trace = run_json(config);
  CHECK(step(trace, "mask1_used").i32 == std::vector<int32_t>{1, 0, 0, 0, 1, 0});
  CHECK(step(trace, "exp_counts").i32 == std::vector<int32_t>{2, 0});
  CHECK(loss(trace, "l_aux") == Approx(0.9747448f).epsilon(1e-6));
  CHECK(step(trace, "routing_slot").i32 == std::vector<int32_t>{0, -1, 1});
  // A float used_token: top1gating's F.one_hot of float locations raises.
  config["inputs"]["used_token"] = tensor_json({"G", "S"}, {1, 3}, {1, 0, 1});
  CHECK_THROWS_WITH(run_json(config), Catch::Contains("inputs.used_token.dtype") && Catch::Contains("int32"));
  config["inputs"]["used_token"] = int_tensor_json({"G", "S"}, {1, 3}, {1, 2, 1});
  CHECK_THROWS_WITH(run_json(config), Catch::Contains("inputs.used_token[g=0, s=1]") && Catch::Contains("0 or 1"));
}

TEST_CASE("deepspeed_top1: drop_tokens false takes C from the data and drops nothing", "[deepspeed_top1][capacity]") {
  // Five tokens: four on e0, one on e1. C = min(max(exp_counts), S) = 4; every token keeps its expert.
  const moeref::Trace trace =
      run_json(top1_gating(5, 2, {1, 0, 1, 0, 0, 1, 1, 0, 1, 0}, {{"drop_tokens", false}, {"min_capacity", 0}}));
  CHECK(trace.capacity["expert_capacity"] == 4);
  CHECK(step(trace, "mask1_flat").i32 == std::vector<int32_t>{1, 1, 1, 1, 1});
  CHECK(step(trace, "routing_slot").i32 == std::vector<int32_t>{0, 1, 0, 2, 3});
}

TEST_CASE("deepspeed_top1: the source's errors are refused with the field named", "[deepspeed_top1][errors]") {
  const std::vector<float> logits = {1, 0, 0, 1, 1, 0};
  // assert logits.shape[0] >= min_capacity: S = 3 < 4 (MoE's default min_capacity).
  CHECK_THROWS_WITH(run_json(top1_gating(3, 2, logits, nlohmann::json::object())),
                    Catch::Contains("hparams.min_capacity") && Catch::Contains("at most S = 3"));
  // C = ceil(1.5 * 4) = 6 > S = 3: torch.topk(k=6) over three tokens raises.
  CHECK_THROWS_WITH(run_json(top1_gating(3, 2, logits, {{"capacity_factor", 4.0}, {"min_capacity", 0}})),
                    Catch::Contains("hparams.capacity_factor") && Catch::Contains("selected index k out of range"));
  // C = 0: F.one_hot(locations1_s, num_classes=0) raises.
  CHECK_THROWS_WITH(run_json(top1_gating(3, 2, logits, {{"capacity_factor", 0.0}, {"min_capacity", 0}})),
                    Catch::Contains("C = 0") && Catch::Contains("num_classes=0"));
}

TEST_CASE("deepspeed_top1: invariants on generated inputs", "[deepspeed_top1][invariants]") {
  for (uint64_t seed = 0; seed < 5; ++seed) {
    const nlohmann::json config = {{"variant", "deepspeed_top1"},
                                   {"seed", seed},
                                   {"dims", {{"B", 2}, {"L", 12}, {"E", 4}, {"M", 6}, {"H", 5}}},
                                   {"hparams", {{"use_rts", false}}}};
    const moeref::Trace trace = run_json(config);
    // Without RTS (and moeref's lower-index tie rule) the kept tokens are the first C in token order.
    check_top1_capacity_in_token_order(trace, "indices1_s", "routing_slot", trace.capacity["expert_capacity"]);
    // dispatch = combine != 0, and each kept token has one weight equal to its gate.
    const moeref::Tensor& combine = step(trace, "combine_weights");
    const moeref::Tensor& dispatch = step(trace, "dispatch_mask");
    for (size_t i = 0; i < combine.f32.size(); ++i) CHECK(dispatch.i32[i] == (combine.f32[i] != 0.0f ? 1 : 0));
  }
}
