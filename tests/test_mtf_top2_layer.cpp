// mtf_top2 with scope "layer": dispatch, expert FFN (dense_product + dropout + dense), combine.
//
// Source: tensorflow/mesh, mesh_tensorflow/transformer/moe.py, `transformer_moe_layer_v1`;
// mesh_tensorflow/layers.py, `dense_product`; mesh_tensorflow/ops.py, `gelu`, `dropout`.
// Dims: G groups, S group size, E experts, C expert capacity, M model dim, H hidden dim,
//       N output dim.
//
// The expert computation is recomputed here in double from the trace's recorded
// expert_inputs and weights. Tolerance for a float32 dot product of K terms, then an
// activation with slope <= ~1.13: 1e-5 x (sum of |terms|), which is ~100x the
// float32 rounding of K <= 5 terms, plus 1e-7 absolute for results near 0.
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "mtf_top2_test_helpers.hpp"

// run_json, step, tensor_json, check_outputs_combine_expert_outputs.
using namespace moeref::testing::mtf;

namespace {

constexpr int64_t kG = 2, kS = 4, kE = 3, kC = 4, kM = 4, kH = 5;

json layer_config(const json& activation, bool train, double dropout_rate) {
  return json{{"variant", "mtf_top2"},
              {"scope", "layer"},
              {"train", train},
              {"seed", 17},
              {"dims", {{"G", kG}, {"S", kS}, {"E", kE}, {"M", kM}, {"H", kH}}},
              {"hparams",
               {{"activation", activation},
                {"dropout_rate", dropout_rate},
                {"expert_capacity", kC},
                {"second_policy_train", "all"},
                {"second_policy_eval", "all"}}}};
}

const Tensor& input(const Trace& trace, const std::string& name) {
  const Tensor* found = trace.find_input(name);
  INFO("input " << name);
  REQUIRE(found != nullptr);
  return *found;
}

// mtf.gelu in double: 0.5 * x * (1 + tanh(sqrt(2/pi) * (x + 0.044715 x^3))).
double gelu(double x) { return 0.5 * x * (1.0 + std::tanh(std::sqrt(2.0 / M_PI) * (x + 0.044715 * x * x * x))); }

double activate(const std::string& name, double x) {
  if (name == "relu") return x > 0.0 ? x : 0.0;
  if (name == "gelu") return gelu(x);
  return x;  // linear
}

struct Value {
  double value;
  double scale;  // sum of |terms|, for the tolerance
};

// dense(expert_inputs[e, g, c, :], w[e, :, h]) in double.
Value dot_mh(const Tensor& expert_inputs, const Tensor& w, int64_t e, int64_t g, int64_t c, int64_t h) {
  Value out{0.0, 0.0};
  for (int64_t m = 0; m < kM; ++m) {
    const double term = static_cast<double>(expert_inputs.f32[static_cast<size_t>(((e * kG + g) * kC + c) * kM + m)]) *
                        static_cast<double>(w.f32[static_cast<size_t>((e * kM + m) * kH + h)]);
    out.value += term;
    out.scale += std::fabs(term);
  }
  return out;
}

// expert_hidden [E, G, C, H] = prod_i act_i(expert_inputs . wi_i), checked element by element.
void check_expert_hidden(const Trace& trace, const std::vector<std::string>& activations) {
  const Tensor& expert_inputs = step(trace, "expert_inputs");
  const Tensor& hidden = step(trace, "expert_hidden");
  REQUIRE(hidden.shape == std::vector<int64_t>{kE, kG, kC, kH});
  std::vector<const Tensor*> wi;
  if (activations.size() == 1) {
    wi.push_back(&input(trace, "wi"));
    CHECK(trace.find_input("wi_0") == nullptr);
  } else {
    for (size_t i = 0; i < activations.size(); ++i) wi.push_back(&input(trace, "wi_" + std::to_string(i)));
    CHECK(trace.find_input("wi") == nullptr);
  }
  for (const Tensor* w : wi) CHECK(w->shape == std::vector<int64_t>{kE, kM, kH});
  for (int64_t e = 0; e < kE; ++e) {
    for (int64_t g = 0; g < kG; ++g) {
      for (int64_t c = 0; c < kC; ++c) {
        for (int64_t h = 0; h < kH; ++h) {
          double want = 1.0, scale = 1.0;
          for (size_t i = 0; i < activations.size(); ++i) {
            const Value a = dot_mh(expert_inputs, *wi[i], e, g, c, h);
            const double f = activate(activations[i], a.value);
            // |d(prod)| <= sum_i |other factors| * |d f_i|; bound the factors by |f| + scale.
            scale *= std::fabs(f) + a.scale;
            want *= f;
          }
          const double got = static_cast<double>(hidden.f32[static_cast<size_t>(((e * kG + g) * kC + c) * kH + h)]);
          INFO("expert_hidden[e=" << e << ", g=" << g << ", c=" << c << ", h=" << h << "]");
          CHECK(std::fabs(got - want) <= 1e-5 * scale + 1e-7);
        }
      }
    }
  }
}

// expert_outputs [E, G, C, N] = h . wo, with h the dropout output when recorded.
void check_expert_outputs(const Trace& trace) {
  const Tensor* dropped = trace.find_step("expert_hidden_dropout");
  const Tensor& hidden = dropped != nullptr ? *dropped : step(trace, "expert_hidden");
  const Tensor& wo = input(trace, "wo");
  const Tensor& outputs = step(trace, "expert_outputs");
  const int64_t N = wo.shape[2];
  REQUIRE(outputs.shape == std::vector<int64_t>{kE, kG, kC, N});
  for (int64_t e = 0; e < kE; ++e) {
    for (int64_t row = 0; row < kG * kC; ++row) {
      for (int64_t n = 0; n < N; ++n) {
        double want = 0.0, scale = 0.0;
        for (int64_t h = 0; h < kH; ++h) {
          const double term = static_cast<double>(hidden.f32[static_cast<size_t>((e * kG * kC + row) * kH + h)]) *
                              static_cast<double>(wo.f32[static_cast<size_t>((e * kH + h) * N + n)]);
          want += term;
          scale += std::fabs(term);
        }
        const double got = static_cast<double>(outputs.f32[static_cast<size_t>((e * kG * kC + row) * N + n)]);
        INFO("expert_outputs[e=" << e << ", g*C+c=" << row << ", n=" << n << "]");
        CHECK(std::fabs(got - want) <= 1e-5 * scale + 1e-7);
      }
    }
  }
}

// expert_inputs[e, g, c, :] = sum_s dispatch[g, s, e, c] * inputs[g, s, :]: a copy of the
// dispatched token, or zeros for an empty slot.
void check_expert_inputs(const Trace& trace) {
  const Tensor& inputs = step(trace, "inputs");
  const Tensor& dispatch = step(trace, "dispatch_tensor");
  const Tensor& expert_inputs = step(trace, "expert_inputs");
  REQUIRE(expert_inputs.shape == std::vector<int64_t>{kE, kG, kC, kM});
  for (int64_t e = 0; e < kE; ++e) {
    for (int64_t g = 0; g < kG; ++g) {
      for (int64_t c = 0; c < kC; ++c) {
        std::vector<float> want(static_cast<size_t>(kM), 0.0f);
        for (int64_t s = 0; s < kS; ++s) {
          if (dispatch.i32[static_cast<size_t>(((g * kS + s) * kE + e) * kC + c)] == 1) {
            for (int64_t m = 0; m < kM; ++m) {
              want[static_cast<size_t>(m)] += inputs.f32[static_cast<size_t>((g * kS + s) * kM + m)];
            }
          }
        }
        const auto begin = expert_inputs.f32.begin() + ((e * kG + g) * kC + c) * kM;
        INFO("expert_inputs[e=" << e << ", g=" << g << ", c=" << c << "]");
        CHECK(std::vector<float>(begin, begin + kM) == want);
      }
    }
  }
}

}  // namespace

TEST_CASE("mtf_top2 layer: expert_hidden with activation relu, gelu and the GLU pair linear x gelu",
          "[mtf_top2][layer]") {
  // dense_product: factors_i = dense(x, wi_i, activation_i) (name "wi" for one factor,
  // "wi_<i>" for several; "linear" means no activation), h = reduce(multiply, factors).
  SECTION("relu") {
    const Trace trace = run_json(layer_config("relu", true, 0.0));
    check_expert_inputs(trace);
    check_expert_hidden(trace, {"relu"});
    for (float v : step(trace, "expert_hidden").f32) CHECK(v >= 0.0f);
    check_expert_outputs(trace);
  }
  SECTION("gelu") {
    const Trace trace = run_json(layer_config("gelu", true, 0.0));
    check_expert_inputs(trace);
    check_expert_hidden(trace, {"gelu"});
    check_expert_outputs(trace);
  }
  SECTION("[linear, gelu]: a GLU-style product with weights wi_0 and wi_1") {
    const Trace trace = run_json(layer_config(json::array({"linear", "gelu"}), true, 0.0));
    check_expert_inputs(trace);
    check_expert_hidden(trace, {"linear", "gelu"});
    check_expert_outputs(trace);
  }
  SECTION("no dropout step when dropout_rate is 0") {
    // transformer_moe_layer_v1: `if hparams.moe_dropout_rate != 0.0: h = mtf.dropout(...)`.
    const Trace trace = run_json(layer_config("relu", true, 0.0));
    CHECK(trace.find_step("expert_hidden_dropout") == nullptr);
    CHECK(trace.find_input("dropout_uniform") == nullptr);
  }
}

TEST_CASE("mtf_top2 layer: outputs combine the expert outputs with combine_tensor", "[mtf_top2][layer]") {
  // output = einsum([expert_output, combine_tensor]) over E and C, recomputed in double.
  const Trace trace = run_json(layer_config("gelu", true, 0.0));
  const Tensor& combine = step(trace, "combine_tensor");
  const Tensor& expert_outputs = step(trace, "expert_outputs");
  const Tensor& outputs = step(trace, "outputs");
  REQUIRE(outputs.shape == std::vector<int64_t>{kG, kS, kM});  // N = M when output_dim is null
  check_outputs_combine_expert_outputs(combine, expert_outputs, outputs);
}

TEST_CASE("mtf_top2 layer: output_dim sets N", "[mtf_top2][layer]") {
  json config = layer_config("relu", true, 0.0);
  config["hparams"]["output_dim"] = 2;
  const Trace trace = run_json(config);
  CHECK(input(trace, "wo").shape == std::vector<int64_t>{kE, kH, 2});
  CHECK(step(trace, "outputs").shape == std::vector<int64_t>{kG, kS, 2});
  check_expert_outputs(trace);
}

TEST_CASE("mtf_top2 layer: dropout keeps U < keep_prob and scales by 1/keep_prob when training",
          "[mtf_top2][layer][dropout]") {
  // mtf.dropout: noise = cast(less(random_uniform, keep_prob)); noise /= keep_prob; x * noise.
  SECTION("rate 0.5 with supplied draws U[k] = (k mod 4) / 4: kept where k mod 4 < 2, times 2") {
    json config = layer_config("relu", true, 0.5);
    std::vector<float> draws(static_cast<size_t>(kE * kG * kC * kH));
    for (size_t k = 0; k < draws.size(); ++k) draws[k] = static_cast<float>(k % 4) * 0.25f;
    config["inputs"]["dropout_uniform"] = tensor_json({"E", "G", "C", "H"}, {kE, kG, kC, kH}, draws);
    const Trace trace = run_json(config);
    const auto& hidden = step(trace, "expert_hidden").f32;
    const auto& dropped = step(trace, "expert_hidden_dropout").f32;
    REQUIRE(dropped.size() == draws.size());
    for (size_t k = 0; k < draws.size(); ++k) {
      INFO("element " << k);
      CHECK(dropped[k] == (k % 4 < 2 ? hidden[k] * 2.0f : 0.0f));
    }
    check_expert_outputs(trace);  // computed from the dropout output
  }
  SECTION("rate 0.25 with generated draws: recorded as dropout_uniform [E, G, C, H]") {
    const Trace trace = run_json(layer_config("gelu", true, 0.25));
    const Tensor& draws = input(trace, "dropout_uniform");
    CHECK(draws.dims == std::vector<std::string>{"E", "G", "C", "H"});
    CHECK(draws.shape == std::vector<int64_t>{kE, kG, kC, kH});
    const auto& hidden = step(trace, "expert_hidden").f32;
    const auto& dropped = step(trace, "expert_hidden_dropout").f32;
    int kept = 0;
    for (size_t k = 0; k < dropped.size(); ++k) {
      INFO("element " << k << " U=" << draws.f32[k]);
      CHECK(draws.f32[k] >= 0.0f);
      CHECK(draws.f32[k] < 1.0f);
      if (draws.f32[k] < 0.75f) {
        ++kept;
        CHECK(static_cast<double>(dropped[k]) == Approx(static_cast<double>(hidden[k]) / 0.75).epsilon(1e-6));
      } else {
        CHECK(dropped[k] == 0.0f);
      }
    }
    // 120 draws with P(keep) = 0.75: both outcomes occur (else the check above proves little).
    CHECK(kept > 0);
    CHECK(kept < static_cast<int>(dropped.size()));
    check_expert_outputs(trace);
  }
  SECTION("no dropout in evaluation") {
    // mtf.dropout: `if keep_prob == 1.0 or not is_training: return x`.
    const Trace trace = run_json(layer_config("relu", false, 0.5));
    CHECK(trace.find_step("expert_hidden_dropout") == nullptr);
    CHECK(trace.find_input("dropout_uniform") == nullptr);
    check_expert_outputs(trace);  // straight from expert_hidden
  }
}
