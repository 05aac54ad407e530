// mtf_moe2d: hand-derived cases of transformer_moe_layer_v2 with MoE2D's
// hyperparameters (tensorflow/mesh, mesh_tensorflow/transformer/moe.py at
// da90793): both groupings and capacities, the inner importance from the outer
// combine weights, one inner router per outer expert, the outputs through both
// combines (recomputed independently), the losses, and the missing
// moe_min_expert_capacity.
//
// Dims: G, S outer groups and size; X outer experts, C outer capacity; I, T inner
// groups and size; Y inner experts, D inner capacity; M model dim, H hidden dim.
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "moeref/check.hpp"
#include "moeref/config_reader.hpp"
#include "moeref/error.hpp"
#include "mtf_switch_test_helpers.hpp"
#include "test_support.hpp"

using namespace moeref::testing::mtf;

namespace {

// B = 1, L = 2 tokens, M = X = Y = 2, identity outer router: outer logits = x.
json identity_config(const std::vector<float>& x, const json& hparams, bool train = false,
                     const char* scope = "gating") {
  json hp = hparams;
  hp["group_size"] = 2;
  hp["expert_x"] = 2;
  hp["expert_y"] = 2;
  json config = {{"variant", "mtf_moe2d"}, {"scope", scope},
                 {"train", train},         {"seed", 4},
                 {"hparams", hp},          {"dims", {{"B", 1}, {"L", 2}, {"M", 2}}}};
  if (std::string(scope) == "layer") config["dims"]["H"] = 3;
  config["inputs"]["x"] = tensor_json({"B", "L", "M"}, {1, 2, 2}, x);
  config["inputs"]["outer_router_weights"] = tensor_json({"M", "X"}, {2, 2}, {1, 0, 0, 1});
  return config;
}

const json kAllEval = {{"second_policy_eval", "all"}};

}  // namespace

TEST_CASE("mtf_moe2d grouping and capacities of both levels, min_expert_capacity defaults to 4",
          "[mtf_moe2d][capacity]") {
  // B * L = 16, group_size 4: G = 4, S = 4. X = 2, eval cf 2.0: int(4 * 2 / 2) = 4, C = 4.
  // Inner: _split_into_groups(G * C = 16, 4, 1) = (I = 4, T = 4); Y = 2, cf 1.0: int(4 / 2) = 2,
  // raised to the minimum 4: D = 4.
  json config = {{"variant", "mtf_moe2d"},
                 {"scope", "gating"},
                 {"train", false},
                 {"seed", 2},
                 {"dims", {{"B", 2}, {"L", 8}, {"M", 3}}},
                 {"hparams", {{"group_size", 4}, {"expert_x", 2}, {"expert_y", 2}}}};
  const Trace trace = run_json(config);
  CHECK(trace.config["hparams"]["min_expert_capacity"] == 4);
  CHECK(trace.config["dims"]["G"] == 4);
  CHECK(trace.config["dims"]["C"] == 4);
  CHECK(trace.capacity["inner"]["num_groups"] == 4);
  CHECK(trace.capacity["inner"]["group_size"] == 4);
  CHECK(trace.capacity["inner"]["expert_capacity"] == 4);
  CHECK(step(trace, "inputs_y").shape == std::vector<int64_t>{2, 4, 4, 3});
  CHECK(step(trace, "inner_dispatch_tensor").shape == std::vector<int64_t>{2, 4, 4, 2, 4});
  SECTION("min_expert_capacity 1 lets the rule speak: C = 4, D = int(T * 1.0 / 2)") {
    config["hparams"]["min_expert_capacity"] = 1;
    const Trace small = run_json(config);
    CHECK(small.capacity["inner"]["expert_capacity"] == 2);
  }
  SECTION("dims.E is refused: the experts are expert_x and expert_y") {
    config["dims"]["E"] = 4;
    CHECK_THROWS_WITH(run_json(config), Catch::Contains("dims.E") && Catch::Contains("expert_x"));
  }
}

TEST_CASE("mtf_moe2d inner importance: 1 for a first choice, 0.5 for a second, 0 for an empty slot",
          "[mtf_moe2d][importance]") {
  // t0 x = (1, 0): outer gates (0.731, 0.269); t1 x = (0, 1): (0.269, 0.731). Policy all, C = 4.
  // Outer expert 0: t0 first (slot 0), t1 second (slot 1); expert 1: t1 first, t0 second.
  const Trace trace = run_json(identity_config({1, 0, 0, 1}, kAllEval));
  REQUIRE(trace.config["dims"]["C"] == 4);
  CHECK(floats(trace, "slot_importance") == std::vector<float>{1, 0.5f, 0, 0, 1, 0.5f, 0, 0});
  // The slots regrouped: G * C = 4 slots per outer expert, (I, T) = _split_into_groups(4, 2, 1) = (2, 2).
  const Tensor& inputs_y = step(trace, "inputs_y");
  CHECK(inputs_y.shape == std::vector<int64_t>{2, 2, 2, 2});
  CHECK(f_at(inputs_y, {0, 0, 0, 0}) == 1.0f);  // expert 0, slot 0: t0
  CHECK(f_at(inputs_y, {0, 0, 1, 1}) == 1.0f);  // expert 0, slot 1: t1
  CHECK(f_at(inputs_y, {1, 0, 0, 1}) == 1.0f);  // expert 1, slot 0: t1
  CHECK(f_at(inputs_y, {1, 1, 0, 0}) == 0.0f);  // expert 1, slot 2: empty
  CHECK(floats(trace, "importance_y") == std::vector<float>{1, 0.5f, 0, 0, 1, 0.5f, 0, 0});
  // The inner gating: an importance-0.5 slot has no first choice but a second one; an empty
  // slot neither.
  const Tensor& mask_1 = step(trace, "inner_mask_1_important");
  const Tensor& mask_2 = step(trace, "inner_mask_2_important");
  CHECK(i_at(mask_1, {0, 0, 1, 0}) + i_at(mask_1, {0, 0, 1, 1}) == 0);
  CHECK(i_at(mask_2, {0, 0, 1, 0}) + i_at(mask_2, {0, 0, 1, 1}) == 1);
  CHECK(i_at(mask_2, {0, 1, 0, 0}) + i_at(mask_2, {0, 1, 0, 1}) == 0);
  SECTION("an exact outer tie: the normalised first gate is 0.5, not above it, so importance 0.5") {
    // t0 x = (0, 0): g1 = g2 = 0.5; 0.5 * reciprocal(f32(1 + 1e-9) = 1) = 0.5.
    const Trace tie = run_json(identity_config({0, 0, 0, 1}, kAllEval));
    CHECK(f_at(step(tie, "outer_gate_1_normalized"), {0, 0}) == 0.5f);
    CHECK(f_at(step(tie, "slot_importance"), {0, 0, 0}) == 0.5f);
  }
}

TEST_CASE("mtf_moe2d: one inner router per outer expert", "[mtf_moe2d][router]") {
  // Inner routers: expert 0's is the identity, expert 1's swaps the two inner experts.
  json config = identity_config({1, 0, 0, 1}, kAllEval);
  config["inputs"]["inner_router_weights"] = tensor_json({"X", "M", "Y"}, {2, 2, 2}, {1, 0, 0, 1, 0, 1, 1, 0});
  const Trace trace = run_json(config);
  const Tensor& logits = step(trace, "inner_logits");
  // Expert 0, slot 0 holds t0 = (1, 0): logits (1, 0). Expert 1, slot 0 holds t1 = (0, 1): swapped, (1, 0).
  CHECK(f_at(logits, {0, 0, 0, 0}) == 1.0f);
  CHECK(f_at(logits, {0, 0, 0, 1}) == 0.0f);
  CHECK(f_at(logits, {1, 0, 0, 0}) == 1.0f);
  CHECK(f_at(logits, {1, 0, 0, 1}) == 0.0f);
  CHECK(i_at(step(trace, "inner_index_1"), {0, 0, 0}) == 0);
  CHECK(i_at(step(trace, "inner_index_1"), {1, 0, 0}) == 0);
}

TEST_CASE("mtf_moe2d losses: (outer + inner) * loss_coef, the inner one over all X * I groups", "[mtf_moe2d][loss]") {
  json config = identity_config({1, 0, 0, 1}, kAllEval);
  config["hparams"]["loss_coef"] = 0.5;
  const Trace trace = run_json(config);
  const float outer = loss(trace, "loss_outer"), inner = loss(trace, "loss_inner");
  CHECK(outer == step(trace, "outer_gating_loss").f32[0]);
  CHECK(inner == step(trace, "inner_gating_loss").f32[0]);
  CHECK(loss(trace, "loss") == (outer + inner) * 0.5f);
  // inner loss_1 = mean over [X, I, Y] of density_1_proxy * density_1, times Y^2.
  const Tensor& density = step(trace, "inner_density_1");
  const Tensor& proxy = step(trace, "inner_density_1_proxy");
  CHECK(density.shape == std::vector<int64_t>{2, 2, 2});
  double sum = 0.0;
  for (size_t k = 0; k < density.f32.size(); ++k) sum += static_cast<double>(proxy.f32[k] * density.f32[k]);
  CHECK(inner == Approx(sum / 8.0 * 4.0).epsilon(1e-6));
}

TEST_CASE("mtf_moe2d outputs: gate_x * gate_y * relu FFN (y, x), recomputed through both combines",
          "[mtf_moe2d][layer]") {
  for (bool train : {true, false}) {
    INFO("train " << train);
    json config = {{"variant", "mtf_moe2d"},
                   {"scope", "layer"},
                   {"train", train},
                   {"seed", 9},
                   {"dims", {{"B", 2}, {"L", 6}, {"M", 4}, {"H", 5}}},
                   {"hparams",
                    {{"group_size", 6},
                     {"expert_x", 3},
                     {"expert_y", 2},
                     {"second_policy_train", "all"},
                     {"second_policy_eval", "all"},
                     {"min_expert_capacity", 1}}}};
    const Trace trace = run_json(config);
    const Tensor& x = step(trace, "inputs");
    const Tensor& combine_x = step(trace, "outer_combine_tensor");
    const Tensor& combine_y = step(trace, "inner_combine_tensor");
    const Tensor& wi = *trace.find_input("wi");
    const Tensor& wo = *trace.find_input("wo");
    const Tensor& outputs = step(trace, "outputs");
    const int64_t G = x.shape[0], S = x.shape[1], M = x.shape[2], X = combine_x.shape[2], C = combine_x.shape[3];
    const int64_t T = combine_y.shape[2], Y = combine_y.shape[3], D = combine_y.shape[4];
    const int64_t H = wi.shape[3];
    // An independent restatement in double: the token in outer slot (x, g, c), the slot in
    // inner slot (y, d) of group (x, i), and the weights of both combines.
    auto slot_token = [&](int64_t ox, int64_t g, int64_t c) {
      std::vector<double> v(static_cast<size_t>(M), 0.0);
      for (int64_t s = 0; s < S; ++s) {
        if (f_at(combine_x, {g, s, ox, c}) == 0.0f) continue;
        for (int64_t m = 0; m < M; ++m) v[static_cast<size_t>(m)] = f_at(x, {g, s, m});
      }
      return v;
    };
    for (int64_t g = 0; g < G; ++g) {
      for (int64_t s = 0; s < S; ++s) {
        std::vector<double> want(static_cast<size_t>(M), 0.0);
        double scale = 1e-6;
        for (int64_t ox = 0; ox < X; ++ox) {
          for (int64_t c = 0; c < C; ++c) {
            const double weight_x = f_at(combine_x, {g, s, ox, c});
            if (weight_x == 0.0) continue;
            const int64_t i = (g * C + c) / T, t = (g * C + c) % T;  // the slot as an inner token
            for (int64_t y = 0; y < Y; ++y) {
              for (int64_t d = 0; d < D; ++d) {
                const double weight_y = f_at(combine_y, {ox, i, t, y, d});
                if (weight_y == 0.0) continue;
                const std::vector<double> in = slot_token(ox, g, c);
                for (int64_t n = 0; n < M; ++n) {
                  double out = 0.0;
                  for (int64_t h = 0; h < H; ++h) {
                    double pre = 0.0;
                    for (int64_t m = 0; m < M; ++m) pre += in[static_cast<size_t>(m)] * f_at(wi, {y, ox, m, h});
                    out += std::max(pre, 0.0) * f_at(wo, {y, ox, h, n});
                  }
                  want[static_cast<size_t>(n)] += weight_x * weight_y * out;
                  scale += std::fabs(weight_x * weight_y * out);
                }
              }
            }
          }
        }
        for (int64_t n = 0; n < M; ++n) {
          INFO("outputs[g=" << g << ", s=" << s << ", n=" << n << "]");
          CHECK(std::fabs(f_at(outputs, {g, s, n}) - want[static_cast<size_t>(n)]) <= 1e-5 * scale + 1e-6);
        }
      }
    }
  }
}

TEST_CASE("mtf_moe2d near ties: an exact tie of the outer first choice decided the other way",
          "[mtf_moe2d][near_tie][check]") {
  // t0 x = (0, 0): outer raw gates tie; the reference takes outer expert 0.
  const json config = identity_config({0, 0, 0, 1}, kAllEval);
  const Trace golden = run_json(config);
  REQUIRE(ints(golden, "outer_index_1")[0] == 0);
  moeref::Config forced = moeref::config_from_json(config, "test");
  Tensor choice = Tensor::int32({"G", "S"}, {1, 2});
  choice.i32 = {1, -1};
  forced.decision_overrides["outer_index_1"] = choice;
  const Trace candidate = moeref::run_config(forced);
  const moeref::CheckReport report = moeref::check_traces(golden, candidate, moeref::CheckOptions{});
  INFO(report.to_text());
  CHECK(report.pass);
  CHECK(report.consistent_alternative);
  REQUIRE_FALSE(report.near_ties.empty());
  CHECK(report.near_ties[0].step == "outer_index_1");
}

TEST_CASE("mtf_moe2d edges: all padding, one outer expert", "[mtf_moe2d][edges]") {
  SECTION("importance all 0: no outer routing, every slot empty, nothing routed inside, outputs 0") {
    json config = identity_config({1, 0, 0, 1}, kAllEval, false, "layer");
    config["inputs"]["importance"] = tensor_json({"B", "L"}, {1, 2}, {0, 0});
    const Trace trace = run_json(config);
    for (float v : floats(trace, "slot_importance")) CHECK(v == 0.0f);
    for (int32_t d : ints(trace, "inner_dispatch_tensor")) CHECK(d == 0);
    for (float v : floats(trace, "outputs")) CHECK(v == 0.0f);
    CHECK(loss(trace, "loss_outer") == 0.0f);
  }
  SECTION("expert_x 1: the outer gate is 1, the second choice has weight 0 and is never dispatched") {
    json config = identity_config({1, 0, 0, 1}, kAllEval);
    config["hparams"]["expert_x"] = 1;
    config["inputs"]["outer_router_weights"] = tensor_json({"M", "X"}, {2, 1}, {1, 1});
    const Trace trace = run_json(config);
    CHECK(floats(trace, "outer_gate_1_normalized") == std::vector<float>{1, 1});
    // Slots 0, 1: the first choices (importance 1); slots 2, 3: zero-weight second choices (0).
    CHECK(floats(trace, "slot_importance") == std::vector<float>{1, 1, 0, 0});
  }
}
