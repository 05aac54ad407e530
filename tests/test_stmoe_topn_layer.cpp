// stmoe_topn in scope "layer": MoE.forward and SparseMoEBlock.forward around TopNGating
// (lucidrains/st-moe-pytorch, st_moe_pytorch/st_moe_pytorch.py at d94e65d). Invariants that the
// layer must keep, each recomputed here from the trace's own inputs by the source's formula.
#include <cmath>
#include <string>
#include <vector>

#include "test_support.hpp"

using moeref::testing::loss;
using moeref::testing::run_json;
using moeref::testing::step;

namespace {

nlohmann::json layer(nlohmann::json dims, nlohmann::json hparams, bool train = true) {
  return {{"variant", "stmoe_topn"},
          {"train", train},
          {"seed", 21},
          {"dims", std::move(dims)},
          {"hparams", std::move(hparams)}};
}

const moeref::Tensor& input(const moeref::Trace& trace, const std::string& name) {
  const moeref::Tensor* found = trace.find_input(name);
  INFO("input " << name);
  REQUIRE(found != nullptr);
  return *found;
}

}  // namespace

TEST_CASE("stmoe layer: dims G = B, S = L, H and F by int(M * mult * 2 / 3)", "[stmoe_topn][layer]") {
  const moeref::Trace moe = run_json(layer({{"B", 2}, {"L", 5}, {"E", 3}, {"M", 6}}, nlohmann::json::object()));
  const nlohmann::json& dims = moe.config["dims"];
  CHECK(dims["G"] == 2);
  CHECK(dims["S"] == 5);
  CHECK(dims["H"] == 16);  // int(6 * 4 * 2 / 3) = 16
  CHECK(dims["K"] == 2);
  CHECK_FALSE(dims.contains("F"));
  const moeref::Trace block = run_json(
      layer({{"G", 2}, {"S", 5}, {"E", 3}, {"M", 7}}, {{"module", "SparseMoEBlock"}, {"expert_hidden_mult", 1.5}}));
  CHECK(block.config["dims"]["H"] == 7);   // int(7 * 1.5 * 2 / 3) = int(7.0) = 7
  CHECK(block.config["dims"]["F"] == 18);  // int(7 * 4 * 2 / 3) = int(18.67) = 18
  // A given derived dim must agree.
  CHECK_THROWS_WITH(run_json(layer({{"G", 1}, {"S", 4}, {"E", 2}, {"M", 6}, {"H", 5}}, nlohmann::json::object())),
                    Catch::Contains("dims.H"));
}

TEST_CASE("stmoe MoE: expert inputs, combine and total_aux_loss by the source's formulas", "[stmoe_topn][layer]") {
  const moeref::Trace trace = run_json(layer({{"G", 2}, {"S", 8}, {"E", 4}, {"M", 5}}, {{"top_n", 3}}));
  const int64_t G = 2, S = 8, E = 4, M = 5, C = trace.config["dims"]["C"].get<int64_t>();
  CHECK(C == 4);  // max(min(8, int(8 * 1.25 / 4)), 4) = max(2, 4)
  const moeref::Tensor& x = input(trace, "x");
  const moeref::Tensor& straight = step(trace, "dispatch_tensor_straight_through");
  const moeref::Tensor& combine = step(trace, "combine_tensor");
  const moeref::Tensor& expert_inputs = step(trace, "expert_inputs");  // [G, E, C, M]
  const moeref::Tensor& expert_outputs = step(trace, "expert_outputs");
  const moeref::Tensor& output = step(trace, "output");
  for (int64_t g = 0; g < G; ++g) {
    for (int64_t e = 0; e < E; ++e) {
      for (int64_t c = 0; c < C; ++c) {
        for (int64_t m = 0; m < M; ++m) {
          // einsum('b n d, b n e c -> b e c d'): one token per slot, times its (1 + w) - w.
          double expected = 0.0;
          for (int64_t s = 0; s < S; ++s) {
            expected += static_cast<double>(x.f32[(g * S + s) * M + m]) * straight.f32[((g * S + s) * E + e) * C + c];
          }
          CHECK(expert_inputs.f32[((g * E + e) * C + c) * M + m] == static_cast<float>(expected));
        }
      }
    }
    for (int64_t s = 0; s < S; ++s) {
      for (int64_t m = 0; m < M; ++m) {
        // einsum('b e c d, b n e c -> b n d')
        double expected = 0.0;
        for (int64_t k = 0; k < E * C; ++k) {
          expected +=
              static_cast<double>(combine.f32[(g * S + s) * E * C + k]) * expert_outputs.f32[(g * E * C + k) * M + m];
        }
        CHECK(output.f32[(g * S + s) * M + m] == Approx(expected).margin(1e-6));
      }
    }
  }
  // total_aux_loss = balance_loss * f32(1e-2) + router_z_loss * f32(1e-3)
  CHECK(loss(trace, "total_aux_loss") == loss(trace, "balance_loss") * static_cast<float>(1e-2) +
                                             loss(trace, "router_z_loss") * static_cast<float>(1e-3));
  // Every token keeps at most top_n slots and rank 0 is always routed.
  const moeref::Tensor& route = step(trace, "should_route");
  for (int64_t t = 0; t < G * S; ++t) CHECK(route.i32[static_cast<size_t>(t)] == 1);
}

TEST_CASE("stmoe SparseMoEBlock: RMSNorm prenorm, residual, no ff_after when off", "[stmoe_topn][layer]") {
  const moeref::Trace trace = run_json(
      layer({{"G", 1}, {"S", 6}, {"E", 2}, {"M", 4}}, {{"module", "SparseMoEBlock"}, {"add_ff_after", false}}, false));
  const moeref::Tensor& x = input(trace, "x");
  const moeref::Tensor& gamma = input(trace, "moe_prenorm_gamma");
  const moeref::Tensor& prenorm = step(trace, "moe_prenorm");
  for (int64_t s = 0; s < 6; ++s) {
    double squares = 0.0;
    for (int64_t m = 0; m < 4; ++m) squares += static_cast<double>(x.f32[s * 4 + m]) * x.f32[s * 4 + m];
    for (int64_t m = 0; m < 4; ++m) {
      // F.normalize(x) * gamma * dim ** 0.5
      const double expected = x.f32[s * 4 + m] / std::sqrt(squares) * gamma.f32[m] * 2.0;
      CHECK(prenorm.f32[s * 4 + m] == Approx(expected).epsilon(1e-6));
    }
  }
  const moeref::Tensor& output = step(trace, "output");
  const moeref::Tensor& x_moe = step(trace, "x_moe");
  for (size_t i = 0; i < x_moe.f32.size(); ++i) CHECK(x_moe.f32[i] == output.f32[i] + x.f32[i]);
  CHECK(trace.find_step("ff_after_prenorm") == nullptr);
  CHECK(trace.find_step("ff_before_prenorm") == nullptr);
  CHECK(trace.find_input("ff_after_w2") == nullptr);
  // Evaluation: C = max(min(6, int(6 * 2.0 / 2)), 4) = 6; both losses are self.zero.
  CHECK(trace.config["dims"]["C"] == 6);
  CHECK(loss(trace, "total_aux_loss") == 0.0f);
}

TEST_CASE("stmoe SparseMoEBlock: ff_before and ff_after are residual GEGLU feed-forwards", "[stmoe_topn][layer]") {
  const moeref::Trace trace = run_json(
      layer({{"G", 1}, {"S", 3}, {"E", 2}, {"M", 3}}, {{"module", "SparseMoEBlock"}, {"add_ff_before", true}}));
  const moeref::Tensor& x = input(trace, "x");
  const moeref::Tensor& out = step(trace, "ff_before_output");
  const moeref::Tensor& with_residual = step(trace, "x_ff_before");
  for (size_t i = 0; i < x.f32.size(); ++i) CHECK(with_residual.f32[i] == out.f32[i] + x.f32[i]);
  // GEGLU: gelu(gate) * x * mult_bias, erf GELU.
  const moeref::Tensor& hx = step(trace, "ff_after_hidden_x");
  const moeref::Tensor& hg = step(trace, "ff_after_hidden_gate");
  const moeref::Tensor& geglu = step(trace, "ff_after_geglu");
  const moeref::Tensor& mult_bias = input(trace, "ff_after_mult_bias");
  const int64_t F = trace.config["dims"]["F"].get<int64_t>();
  CHECK(F == 8);  // int(3 * 4 * 2 / 3) = int(24 / 3) = 8
  for (int64_t s = 0; s < 3; ++s) {
    for (int64_t h = 0; h < F; ++h) {
      const double gate = hg.f32[s * F + h];
      const double gelu = 0.5 * gate * (1.0 + std::erf(gate / std::sqrt(2.0)));
      CHECK(geglu.f32[s * F + h] == Approx(gelu * hx.f32[s * F + h] * mult_bias.f32[h]).margin(1e-7));
    }
  }
}
