// mtf_ntlb: hand-derived cases of _ntlb_gating (tensorflow/mesh,
// mesh_tensorflow/transformer/moe.py at da90793) inside transformer_moe_layer_v1:
// rank-by-rank placement, K > E, the loss over all K ranks, jitter as the only
// perturbation, and the names from before tensorflow/mesh b1b5364.
//
// Dims: G groups, S group size, E experts, C expert capacity, K ranks.
#include <cstdint>
#include <string>
#include <vector>

#include "moeref/config_reader.hpp"
#include "moeref/error.hpp"
#include "mtf_switch_test_helpers.hpp"
#include "test_support.hpp"

using namespace moeref::testing::mtf;

namespace {

json ntlb_hparams(int64_t K, int64_t C) {
  return {{"switch_policy_eval", "argmax"}, {"ntlb_top_k", K}, {"expert_capacity", C}};
}

// t0 (0.9, 0.1), t1 (0.8, 0.2), t2 (0.7, 0.3), t3 (0.4, 0.6).
const std::vector<std::vector<double>> kProbs = {{0.9, 0.1}, {0.8, 0.2}, {0.7, 0.3}, {0.4, 0.6}};

}  // namespace

TEST_CASE("mtf_ntlb: a token whose first expert is full lands in its second, behind the first choices",
          "[mtf_ntlb][routing]") {
  // K = 2, C = 2. Rank 0: expert 0 takes t0 (cumulative 1), t1 (2); t2 has cumulative 3 > 2;
  // expert 1 takes t3 (1). Rank 1: only t2 is left; its second expert is 1, where cum_tokens is 1,
  // so cumulative 2 <= 2: slot 1, weight 0.3 (the raw probability of expert 1).
  const Trace trace = run_json(variant_config("mtf_ntlb", 1, 4, 2, log_probs(kProbs), ntlb_hparams(2, 2), false));
  CHECK(ints(trace, "expert_index") == std::vector<int32_t>{0, 1, 0, 1, 0, 1, 1, 0});
  CHECK(ints(trace, "output_0_tokens_flat") == std::vector<int32_t>{1, 1, 0, 1});
  CHECK(ints(trace, "cum_tokens_0") == std::vector<int32_t>{2, 1});
  CHECK(ints(trace, "tokens_left_to_route_0") == std::vector<int32_t>{0, 0, 1, 0});
  CHECK(ints(trace, "top_1_mask") == std::vector<int32_t>{0, 0, 0, 0, 0, 1, 0, 0});
  CHECK(i_at(step(trace, "cumulative_tokens_in_expert_1"), {0, 2, 1}) == 2);
  CHECK(ints(trace, "tokens_left_to_route_1") == std::vector<int32_t>{0, 0, 0, 0});
  check_token_slots(trace, 0, 0, {{0, 0, 0.9}});
  check_token_slots(trace, 0, 1, {{0, 1, 0.8}});
  check_token_slots(trace, 0, 2, {{1, 1, 0.3}});
  check_token_slots(trace, 0, 3, {{1, 0, 0.6}});
  // The weight is the raw probability of the landing expert, bit for bit.
  CHECK(f_at(step(trace, "combine_tensor"), {0, 2, 1, 1}) == f_at(step(trace, "raw_gates"), {0, 2, 1}));
  check_routing_invariants(trace);
}

TEST_CASE("mtf_ntlb: tokens that fail every rank are dropped, K = 1 is top-1 in token order", "[mtf_ntlb][routing]") {
  SECTION("K = 2, C = 1: t1 and t2 fail expert 0, then expert 1 (full after t3)") {
    const Trace trace = run_json(variant_config("mtf_ntlb", 1, 4, 2, log_probs(kProbs), ntlb_hparams(2, 1), false));
    CHECK(ints(trace, "tokens_left_to_route_1") == std::vector<int32_t>{0, 1, 1, 0});
    check_token_slots(trace, 0, 1, {});
    check_token_slots(trace, 0, 2, {});
  }
  SECTION("K = 1: t2 is dropped as mtf_switch would drop it") {
    const Trace trace = run_json(variant_config("mtf_ntlb", 1, 4, 2, log_probs(kProbs), ntlb_hparams(1, 2), false));
    check_token_slots(trace, 0, 2, {});
    CHECK(trace.find_step("top_1_mask") == nullptr);
  }
}

TEST_CASE("mtf_ntlb K > E: repeated experts at -1e9 that never place a token, but count in the loss",
          "[mtf_ntlb][edges]") {
  // E = 2, K = 3 (iterative top-k): rank 2 re-picks expert 0 with f32(p - 1e9) = -1e9.
  const Trace k3 = run_json(variant_config("mtf_ntlb", 1, 4, 2, log_probs(kProbs), ntlb_hparams(3, 2), false));
  const Trace k2 = run_json(variant_config("mtf_ntlb", 1, 4, 2, log_probs(kProbs), ntlb_hparams(2, 2), false));
  CHECK(i_at(step(k3, "expert_index"), {0, 0, 2}) == 0);
  CHECK(f_at(step(k3, "expert_gate"), {0, 0, 2}) == -1e9f);
  CHECK(ints(k3, "output_2_tokens_flat") == std::vector<int32_t>{0, 0, 0, 0});
  CHECK(floats(k3, "combine_tensor") == floats(k2, "combine_tensor"));
  CHECK(step(k3, "density_1").shape == std::vector<int64_t>{1, 3, 2});
  // The loss is the mean over (K, E) of P * f: the third rank (all expert 0 for t0..t2 and
  // expert 0 for t3 too) changes it.
  CHECK(loss(k3, "gating_loss") != loss(k2, "gating_loss"));
  SECTION("K = 5 > E = 2: TopKOperation raises ValueError; refused naming ntlb_top_k") {
    CHECK_THROWS_WITH(run_json(variant_config("mtf_ntlb", 1, 4, 2, log_probs(kProbs), ntlb_hparams(5, 2), false)),
                      Catch::Contains("hparams.ntlb_top_k") && Catch::Contains("ValueError"));
  }
}

TEST_CASE("mtf_ntlb loss: every rank's density, the proxy broadcast over S with importance", "[mtf_ntlb][loss]") {
  // S = 2, E = 2, K = 2: p t0 (0.75, 0.25), t1 (0.25, 0.75). density_1: rank 0 (0.5, 0.5), rank 1
  // (0.5, 0.5); proxy (0.5, 0.5). No importance: 4 * mean_{k,e}(0.25) = 1.
  // Importance (1, 0): 4 * (1 / (E * S * K)) * sum_{e,s,k} P_e a_s f_ke = 4 * (1/8) * (4 * 0.25) = 0.5.
  const std::vector<float> logits = log_probs({{0.75, 0.25}, {0.25, 0.75}});
  const Trace plain = run_json(variant_config("mtf_ntlb", 1, 2, 2, logits, ntlb_hparams(2, 2), false));
  CHECK(loss(plain, "gating_loss") == Approx(1.0).epsilon(1e-6));
  const Trace padded = run_json(variant_config("mtf_ntlb", 1, 2, 2, logits, ntlb_hparams(2, 2), false, {1, 0}));
  CHECK(step(padded, "density_1_proxy_important").shape == std::vector<int64_t>{1, 2, 2});
  CHECK(loss(padded, "gating_loss") == Approx(0.5).epsilon(1e-6));
  // The padded token is never placed, at any rank.
  check_token_slots(padded, 0, 1, {});
  CHECK(ints(padded, "tokens_left_to_route_1") == std::vector<int32_t>{0, 1});
}

TEST_CASE("mtf_ntlb: only input_jitter perturbs the router, summaries count all ranks", "[mtf_ntlb][policy]") {
  const std::vector<float> logits = log_probs(kProbs);
  SECTION("input_dropout and sample are ignored: nothing drawn") {
    for (const std::string policy : {"input_dropout", "sample", "argmax"}) {
      json config = variant_config("mtf_ntlb", 1, 4, 2, logits, {{"switch_policy_train", policy}}, true);
      config["scope"] = "layer";
      config["dims"]["M"] = 3;
      config["dims"]["H"] = 2;
      config["inputs"].erase("logits");
      const Trace trace = run_json(config);
      CHECK(trace.find_input("input_dropout_uniform") == nullptr);
      CHECK(trace.find_input("sample_uniform") == nullptr);
      CHECK(trace.find_step("gate_inputs") == nullptr);
    }
  }
  SECTION("input_jitter in training draws and perturbs the router inputs") {
    json config =
        variant_config("mtf_ntlb", 1, 4, 2, logits, {{"switch_policy_train", "input_jitter"}, {"ntlb_top_k", 2}}, true);
    config["scope"] = "layer";
    config["dims"]["M"] = 3;
    config["dims"]["H"] = 2;
    config["inputs"].erase("logits");
    const Trace trace = run_json(config);
    CHECK(trace.find_input("input_jitter_uniform") != nullptr);
    CHECK(step(trace, "logits").shape == std::vector<int64_t>{1, 4, 2});
    // mask_count_experts counts every rank: 4 tokens x K = 2 (no importance: none masked).
    int32_t total = 0;
    for (int32_t count : ints(trace, "mask_count_experts")) total += count;
    CHECK(total == 8);
  }
}

TEST_CASE("mtf_ntlb E = 1 and C = 0", "[mtf_ntlb][edges]") {
  SECTION("E = 1 with the default K = 4: every rank is expert 0; the first C tokens are placed") {
    const Trace trace = run_json(variant_config("mtf_ntlb", 1, 3, 1, {0.5f, -1.0f, 2.0f},
                                                {{"switch_policy_eval", "argmax"}, {"expert_capacity", 2}}, false));
    CHECK(ints(trace, "expert_index") == std::vector<int32_t>(12, 0));
    check_token_slots(trace, 0, 0, {{0, 0, 1.0}});
    check_token_slots(trace, 0, 1, {{0, 1, 1.0}});
    check_token_slots(trace, 0, 2, {});
  }
  SECTION("C = 0: nothing is placed") {
    const Trace trace = run_json(variant_config("mtf_ntlb", 1, 4, 2, log_probs(kProbs), ntlb_hparams(2, 0), false));
    CHECK(ints(trace, "tokens_left_to_route_1") == std::vector<int32_t>{1, 1, 1, 1});
    CHECK(step(trace, "combine_tensor").shape == std::vector<int64_t>{1, 4, 2, 0});
  }
}

TEST_CASE("mtf_ntlb names: switch_top_k is the old ntlb_top_k, moe_gating \"switch\" is refused",
          "[mtf_ntlb][hparams]") {
  json config = variant_config("mtf_ntlb", 1, 4, 2, log_probs(kProbs),
                               {{"switch_policy_eval", "argmax"}, {"switch_top_k", 2}, {"expert_capacity", 2}}, false);
  const moeref::Config parsed = moeref::config_from_json(config, "test config");
  REQUIRE(parsed.warnings.size() == 1);
  CHECK(parsed.warnings[0].find("ntlb_top_k") != std::string::npos);
  CHECK(parsed.warnings[0].find("b1b5364") != std::string::npos);
  const Trace trace = run_json(config);
  CHECK(trace.config["hparams"]["ntlb_top_k"] == 2);
  CHECK(step(trace, "expert_index").shape == std::vector<int64_t>{1, 4, 2});
  // An old NTLB config also said moe_gating="switch": refused, with the rename explained.
  config["hparams"]["moe_gating"] = "switch";
  CHECK_THROWS_WITH(run_json(config),
                    Catch::Contains("moe_gating") && Catch::Contains("_ntlb_gating") && Catch::Contains("b1b5364"));
}

TEST_CASE("mtf_ntlb invariants: a token holds at most one slot, at its best expert with room",
          "[mtf_ntlb][invariants]") {
  for (int seed : {1, 2, 3}) {
    for (bool train : {true, false}) {
      INFO("seed " << seed << ", train " << train);
      json config = {{"variant", "mtf_ntlb"},
                     {"scope", "layer"},
                     {"train", train},
                     {"seed", seed},
                     {"dims", {{"G", 2}, {"S", 12}, {"E", 4}, {"M", 5}, {"H", 4}}},
                     {"hparams", {{"min_expert_capacity", 0}, {"ntlb_top_k", 3}, {"capacity_factor_train", 0.75}}}};
      const Trace trace = run_json(config);
      check_routing_invariants(trace);
      check_dispatch_from_combine(trace);
      const Tensor& combine = step(trace, "combine_tensor");
      const Tensor& raw_gates = step(trace, "raw_gates");
      const Tensor& index = step(trace, "expert_index");
      const int64_t G = combine.shape[0], S = combine.shape[1], E = combine.shape[2], C = combine.shape[3];
      const int64_t K = index.shape[2];
      std::vector<int64_t> load(static_cast<size_t>(G * E), 0);
      for (int64_t g = 0; g < G; ++g) {
        for (int64_t s = 0; s < S; ++s) {
          int slots = 0;
          int64_t landed = -1;
          for (int64_t e = 0; e < E; ++e) {
            for (int64_t c = 0; c < C; ++c) {
              if (f_at(combine, {g, s, e, c}) == 0.0f) continue;
              ++slots;
              landed = e;
              CHECK(f_at(combine, {g, s, e, c}) == f_at(raw_gates, {g, s, e}));
              ++load[static_cast<size_t>(g * E + e)];
            }
          }
          CHECK(slots <= 1);
          // The landing expert is one of the token's K ranked experts.
          if (landed >= 0) {
            bool ranked = false;
            for (int64_t k = 0; k < K; ++k) ranked = ranked || i_at(index, {g, s, k}) == landed;
            CHECK(ranked);
          }
        }
      }
      for (int64_t load_e : load) CHECK(load_e <= C);
    }
  }
}

TEST_CASE("mtf_ntlb all padded, C > S, ties", "[mtf_ntlb][edges]") {
  SECTION("importance all 0: no token placed at any rank, loss 0, every token still left to route") {
    const Trace trace =
        run_json(variant_config("mtf_ntlb", 1, 4, 2, log_probs(kProbs), ntlb_hparams(2, 2), false, {0, 0, 0, 0}));
    CHECK(ints(trace, "tokens_left_to_route_1") == std::vector<int32_t>{1, 1, 1, 1});
    for (float w : floats(trace, "combine_tensor")) CHECK(w == 0.0f);
    CHECK(loss(trace, "gating_loss") == 0.0f);
  }
  SECTION("C = 4 > S = 2 (min_expert_capacity): every token placed at its first choice") {
    const Trace trace = run_json(variant_config("mtf_ntlb", 1, 2, 2, log_probs({{0.7, 0.3}, {0.6, 0.4}}),
                                                {{"switch_policy_eval", "argmax"}, {"ntlb_top_k", 2}}, false));
    REQUIRE(trace.config["dims"]["C"] == 4);
    check_token_slots(trace, 0, 0, {{0, 0, 0.7}});
    check_token_slots(trace, 0, 1, {{0, 1, 0.6}});
  }
  SECTION("equal probabilities: ranks by lower expert index") {
    const Trace trace = run_json(variant_config("mtf_ntlb", 1, 1, 3, {0.25f, 0.25f, 0.25f},
                                                {{"switch_policy_eval", "argmax"}, {"ntlb_top_k", 3}}, false));
    CHECK(ints(trace, "expert_index") == std::vector<int32_t>{0, 1, 2});
  }
}
