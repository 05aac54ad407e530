// mtf_switch policies: what each of argmax, input_dropout, input_jitter and sample
// perturbs, when, and with which recorded draw (tensorflow/mesh,
// mesh_tensorflow/transformer/moe.py at da90793, _switch_gating;
// mesh_tensorflow/layers.py, multiplicative_jitter; mesh_tensorflow/ops.py,
// dropout, sample_with_temperature). Also the hparam names from before
// tensorflow/mesh b1b5364 and the refused moe_gating.
//
// The router is the identity (router_weights = I, M = E = 2), so the logits are
// the (perturbed) router inputs and every decision can be read off by hand.
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "moeref/config_reader.hpp"
#include "moeref/error.hpp"
#include "mtf_switch_test_helpers.hpp"
#include "test_support.hpp"

using namespace moeref::testing::mtf;

namespace {

// G = 1, S = 2, M = E = 2, identity router, layer scope (H = 3) so that the experts'
// inputs can be compared with x. Token 0 is x = (1, 1.005): expert 1 unperturbed, by 0.005.
json identity_router_config(const json& hparams, bool train) {
  json config = {{"variant", "mtf_switch"},
                 {"scope", "layer"},
                 {"train", train},
                 {"seed", 7},
                 {"dims", {{"G", 1}, {"S", 2}, {"E", 2}, {"M", 2}, {"H", 3}}},
                 {"hparams", hparams}};
  config["inputs"]["x"] = tensor_json({"G", "S", "M"}, {1, 2, 2}, {1.0f, 1.005f, 2.0f, -1.0f});
  config["inputs"]["router_weights"] = tensor_json({"M", "E"}, {2, 2}, {1, 0, 0, 1});
  config["inputs"]["importance"] = tensor_json({"G", "S"}, {1, 2}, {1, 1});
  return config;
}

}  // namespace

TEST_CASE("mtf_switch input_jitter: the router sees x times uniform noise in 1 +- eps, the experts see x",
          "[mtf_switch][policy]") {
  json config = identity_router_config({{"switch_policy_train", "input_jitter"}, {"switch_jitter", 0.01}}, true);
  // Token 0's draws (0.9, 0.0) scale its features by about 1.008 and exactly f32(0.99).
  config["inputs"]["input_jitter_uniform"] = tensor_json({"G", "S", "M"}, {1, 2, 2}, {0.9f, 0.0f, 0.5f, 0.5f});
  const Trace trace = run_json(config);
  // jitter_noise = U * (f32(1.01) - f32(0.99)) + f32(0.99), one rounding per op.
  const float range = f32(1.01) - f32(0.99);
  CHECK(floats(trace, "jitter_noise") == std::vector<float>{0.9f * range + f32(0.99), 0.0f * range + f32(0.99),
                                                            0.5f * range + f32(0.99), 0.5f * range + f32(0.99)});
  const Tensor& gate_inputs = step(trace, "gate_inputs");
  CHECK(f_at(gate_inputs, {0, 0, 1}) == 1.005f * f32(0.99));
  // Perturbed logits (about 1.008, 0.995): expert 0 now wins for token 0.
  CHECK(ints(trace, "expert_index") == std::vector<int32_t>{0, 0});
  // The experts get the unperturbed token: slot 0 of expert 0 is x[0] itself.
  const Tensor& expert_inputs = step(trace, "expert_inputs");
  CHECK(f_at(expert_inputs, {0, 0, 0, 0}) == 1.0f);
  CHECK(f_at(expert_inputs, {0, 0, 0, 1}) == 1.005f);
  SECTION("eval: no draw, no gate_inputs, unperturbed argmax (expert 1)") {
    json eval = identity_router_config({{"switch_policy_eval", "input_jitter"}}, false);
    const Trace plain = run_json(eval);
    CHECK(plain.find_input("input_jitter_uniform") == nullptr);
    CHECK(plain.find_step("gate_inputs") == nullptr);
    CHECK(ints(plain, "expert_index") == std::vector<int32_t>{1, 0});
  }
  SECTION("switch_jitter 0: multiplicative_jitter returns x, nothing drawn") {
    const Trace plain = run_json(identity_router_config({{"switch_jitter", 0.0}}, true));
    CHECK(plain.find_input("input_jitter_uniform") == nullptr);
    CHECK(ints(plain, "expert_index") == std::vector<int32_t>{1, 0});
  }
}

TEST_CASE("mtf_switch input_dropout: mtf.dropout on the router inputs, training only", "[mtf_switch][policy]") {
  // keep = 1 - 0.5; noise = 1[U < 0.5] * f32(1/0.5) = 2 or 0.
  json config = identity_router_config({{"switch_policy_train", "input_dropout"}, {"switch_dropout", 0.5}}, true);
  config["inputs"]["input_dropout_uniform"] = tensor_json({"G", "S", "M"}, {1, 2, 2}, {0.2f, 0.7f, 0.9f, 0.1f});
  const Trace trace = run_json(config);
  // Token 0: (1 * 2, 1.005 * 0) = (2, 0) -> expert 0; token 1: (2 * 0, -1 * 2) = (0, -2) -> expert 0.
  CHECK(floats(trace, "gate_inputs") == std::vector<float>{2.0f, 0.0f, 0.0f, -2.0f});
  CHECK(ints(trace, "expert_index") == std::vector<int32_t>{0, 0});
  CHECK(f_at(step(trace, "expert_inputs"), {0, 0, 0, 1}) == 1.005f);
  SECTION("eval: dropout is the identity, no draw") {
    const Trace plain = run_json(identity_router_config({{"switch_policy_eval", "input_dropout"}}, false));
    CHECK(plain.find_input("input_dropout_uniform") == nullptr);
    CHECK(ints(plain, "expert_index") == std::vector<int32_t>{1, 0});
  }
  SECTION("switch_dropout 0: keep_prob 1, mtf.dropout returns x") {
    const Trace plain =
        run_json(identity_router_config({{"switch_policy_train", "input_dropout"}, {"switch_dropout", 0.0}}, true));
    CHECK(plain.find_input("input_dropout_uniform") == nullptr);
  }
}

TEST_CASE("mtf_switch sample: argmax of logits + T * Gumbel noise, in eval too", "[mtf_switch][policy]") {
  // G = 1, S = 2, E = 3; t0 logits (0, 0, 0), t1 (2, 0, 0). Draws t0 (0.1, 0.9, 0.5), t1 (0.1, 0.99, 0.5).
  // g(u) = -log(-log(u)): g(0.1) = -0.834, g(0.9) = 2.250, g(0.5) = 0.367, g(0.99) = 4.600.
  // t0: argmax (-0.834, 2.250, 0.367) = 1.  t1: (2 - 0.834, 4.600, 0.367) = 1, against raw_gates' top 0.
  const std::vector<float> logits = {0, 0, 0, 2, 0, 0};
  json config = variant_config("mtf_switch", 1, 2, 3, logits, {{"switch_policy_eval", "sample"}}, false);
  config["inputs"]["sample_uniform"] = tensor_json({"G", "S", "E"}, {1, 2, 3}, {0.1f, 0.9f, 0.5f, 0.1f, 0.99f, 0.5f});
  const Trace trace = run_json(config);
  // gumbel_uniform = U * (f32(1) - f32(1e-9)) + f32(1e-9) = f32(U + f32(1e-9)).
  CHECK(f_at(step(trace, "gumbel_uniform"), {0, 0, 1}) == 0.9f + f32(1e-9));
  CHECK(f_at(step(trace, "gumbel"), {0, 1, 1}) == Approx(-std::log(-std::log(0.99))).epsilon(1e-5));
  CHECK(ints(trace, "expert_index") == std::vector<int32_t>{1, 1});
  // expert_gate = gather(raw_gates, expert_index): t1 gets 1 / (e^2 + 2).
  CHECK(f_at(step(trace, "expert_gate"), {0, 1}) == f_at(step(trace, "raw_gates"), {0, 1, 1}));
  CHECK(f_at(step(trace, "expert_gate"), {0, 1}) == Approx(1.0 / (std::exp(2.0) + 2.0)).epsilon(1e-6));
  SECTION("temperature 0: argmax of the logits, nothing drawn") {
    json cold = variant_config("mtf_switch", 1, 2, 3, logits,
                               {{"switch_policy_eval", "sample"}, {"switch_temperature", 0.0}}, false);
    const Trace plain = run_json(cold);
    CHECK(plain.find_input("sample_uniform") == nullptr);
    CHECK(plain.find_step("sample_logits") == nullptr);
    CHECK(ints(plain, "expert_index") == std::vector<int32_t>{0, 0});
  }
  SECTION("training: no expert_gate summary under sample") {
    json train = variant_config("mtf_switch", 1, 2, 3, logits, {{"switch_policy_train", "sample"}}, true, ones(2));
    train["inputs"]["sample_uniform"] = config["inputs"]["sample_uniform"];
    const Trace sampled = run_json(train);
    CHECK(sampled.find_step("expert_gate_summary") == nullptr);
    CHECK(ints(sampled, "expert_index") == std::vector<int32_t>{1, 1});
  }
}

TEST_CASE("mtf_switch accepts the rand_1_* names from before tensorflow/mesh b1b5364", "[mtf_switch][hparams]") {
  json config = variant_config("mtf_switch", 1, 2, 2, {0, 1, 1, 0},
                               {{"rand_1_policy_eval", "argmax"},
                                {"rand_1_policy_train", "sample"},
                                {"rand_1_dropout", 0.2},
                                {"rand_1_temperature", 0.5},
                                {"rand_1_jitter", 0.02}},
                               false);
  const moeref::Config parsed = moeref::config_from_json(config, "test config");
  REQUIRE(parsed.warnings.size() == 5);
  for (const std::string& warning : parsed.warnings) CHECK(warning.find("b1b5364") != std::string::npos);
  const Trace trace = run_json(config);
  const json& resolved = trace.config["hparams"];
  CHECK(resolved["switch_policy_eval"] == "argmax");
  CHECK(resolved["switch_policy_train"] == "sample");
  CHECK(resolved["switch_dropout"] == 0.2);
  CHECK(resolved["switch_temperature"] == 0.5);
  CHECK(resolved["switch_jitter"] == 0.02);
  CHECK_FALSE(resolved.contains("rand_1_policy_eval"));
  SECTION("old and new name together are refused") {
    json both = config;
    both["hparams"]["switch_policy_eval"] = "argmax";
    CHECK_THROWS_WITH(run_json(both), Catch::Contains("rand_1_policy_eval") && Catch::Contains("one of the two"));
  }
  SECTION("the moe_ spellings point at the new name") {
    json prefixed = variant_config("mtf_switch", 1, 2, 2, {0, 1, 1, 0}, {{"moe_rand_1_jitter", 0.02}}, false);
    CHECK_THROWS_WITH(run_json(prefixed), Catch::Contains("did you mean switch_jitter"));
  }
}

TEST_CASE("moe_gating is refused with the variant it names, \"switch\" explains the b1b5364 rename",
          "[mtf_switch][hparams]") {
  json config = variant_config("mtf_switch", 1, 2, 2, {0, 1, 1, 0}, {{"moe_gating", "switch"}}, false);
  try {
    run_json(config);
    FAIL("expected an InputError");
  } catch (const moeref::InputError& error) {
    const std::string message = error.what();
    CHECK(message.find("hparams.moe_gating") != std::string::npos);
    CHECK(message.find("b1b5364") != std::string::npos);
    CHECK(message.find("mtf_ntlb") != std::string::npos);
    CHECK(message.find("mtf_switch") != std::string::npos);
  }
  config["hparams"]["moe_gating"] = "rand_1";
  CHECK_THROWS_WITH(run_json(config), Catch::Contains("moe_gating=\"rand_1\" is variant \"mtf_switch\""));
  config["hparams"]["moe_gating"] = "ntlb";
  CHECK_THROWS_WITH(run_json(config), Catch::Contains("is variant \"mtf_ntlb\""));
}
