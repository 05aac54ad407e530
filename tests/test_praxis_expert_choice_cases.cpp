// praxis_expert_choice: the tie rule of praxis's sort-based top_k (against lingvo's on the same
// input), the capacity rule and its top_k edge cases, the JAX softmax, the logit cap, and
// invariants. Source: google/praxis, praxis/gshard_utils.py, expert_choice_gating_on_logits_v2, top_k.
#include <cmath>

#include "gshard_test_helpers.hpp"

// gshard_test_helpers.hpp and test_support.hpp: run_json, step, tensor_json, lingvo_expert_choice_config,
// praxis_expert_choice_config, tokens_of_expert, tokens, f_at, i_at, check_expert_choice_invariants.
using namespace moeref::testing;

TEST_CASE("praxis_expert_choice and lingvo_expert_choice take different tokens on exact ties",
          "[praxis_expert_choice][lingvo_expert_choice][ties]") {
  // Every logit 0: every probability is exactly 0.5 in both softmax flavours. C = 2 of S = 4.
  // lingvo (tf.math.top_k, stable_comp): lower indices win the tie -> tokens {0, 1}.
  // praxis (top_k: stable ascending sort, last k): higher indices win -> tokens {2, 3}.
  // praxis with capacity_factor null and C0 = 2 has the same C as lingvo with C0 = 2.
  const std::vector<float> logits(8, 0.0f);
  const moeref::Trace lingvo = run_json(lingvo_expert_choice_config(4, 2, logits, {{"expert_capacity_dim", 2}}));
  const moeref::Trace prax =
      run_json(praxis_expert_choice_config(4, 2, logits, {{"expert_capacity_dim", 2}, {"capacity_factor", nullptr}}));
  REQUIRE(lingvo.capacity["expert_capacity"] == 2);
  REQUIRE(prax.capacity["expert_capacity"] == 2);
  for (int64_t e = 0; e < 2; ++e) {
    CHECK(tokens_of_expert(lingvo, 0, e) == tokens({0, 1}));
    CHECK(tokens_of_expert(prax, 0, e) == tokens({2, 3}));
  }
  // praxis's top_k output is ascending by value, equal values in ascending index order: [2, 3].
  CHECK(step(prax, "token_indices").i32 == std::vector<int32_t>{2, 3, 2, 3});
  // Slots are token order in both: token 2 in slot 0, token 3 in slot 1 for praxis.
  CHECK(f_at(step(prax, "combine_tensor"), {0, 2, 0, 0}) == 0.5f);
  CHECK(f_at(step(prax, "combine_tensor"), {0, 3, 1, 1}) == 0.5f);
  CHECK(f_at(step(lingvo, "combine_tensor"), {0, 0, 0, 0}) == 0.5f);
  CHECK(f_at(step(lingvo, "combine_tensor"), {0, 1, 1, 1}) == 0.5f);
  moeref::testing::check_expert_choice_invariants(lingvo);
  moeref::testing::check_expert_choice_invariants(prax);
}

TEST_CASE("praxis_expert_choice and lingvo_expert_choice differ on a tie at the cut only",
          "[praxis_expert_choice][lingvo_expert_choice][ties]") {
  // E = 2. Expert 0's probabilities per token: token 0 high (logits [2, 0]), tokens 1, 2, 3 tied
  // ([0, 0] -> 0.5 each), token 4 low ([-2, 0]). C = 2: both take token 0; the second slot is a tie
  // among tokens 1, 2, 3. lingvo takes token 1, praxis takes token 3.
  const std::vector<float> logits = {2, 0, 0, 0, 0, 0, 0, 0, -2, 0};
  const moeref::Trace lingvo = run_json(lingvo_expert_choice_config(5, 2, logits, {{"expert_capacity_dim", 2}}));
  const moeref::Trace prax =
      run_json(praxis_expert_choice_config(5, 2, logits, {{"expert_capacity_dim", 2}, {"capacity_factor", nullptr}}));
  CHECK(tokens_of_expert(lingvo, 0, 0) == tokens({0, 1}));
  CHECK(tokens_of_expert(prax, 0, 0) == tokens({0, 3}));
  // Expert 1's probabilities: token 4 highest (0.881), then the tie 1, 2, 3 at 0.5.
  CHECK(tokens_of_expert(lingvo, 0, 1) == tokens({1, 4}));
  CHECK(tokens_of_expert(prax, 0, 1) == tokens({3, 4}));
  // praxis's token_indices for expert 0: ascending, so the tied token first: [3, 0].
  CHECK(i_at(step(prax, "token_indices"), {0, 0, 0}) == 3);
  CHECK(i_at(step(prax, "token_indices"), {0, 0, 1}) == 0);
  // lingvo records larger-first: [0, 1].
  CHECK(i_at(step(lingvo, "token_indices"), {0, 0, 0}) == 0);
  CHECK(i_at(step(lingvo, "token_indices"), {0, 0, 1}) == 1);
}

TEST_CASE("praxis_expert_choice: padded tokens lose ties to real zero-score tokens differently",
          "[praxis_expert_choice][paddings][ties]") {
  // Tokens 0 and 1 padded (score 0), token 2 real; C = 2. Each expert must take a padded token:
  // praxis takes token 1 (higher index), lingvo token 0. Both are removed by mask *= nonpaddings.
  const std::vector<float> logits(6, 0.0f);
  nlohmann::json prax_config =
      praxis_expert_choice_config(3, 2, logits, {{"expert_capacity_dim", 2}, {"capacity_factor", nullptr}});
  prax_config["inputs"]["paddings"] = tensor_json({"G", "S"}, {1, 3}, {1, 1, 0});
  nlohmann::json lingvo_config = lingvo_expert_choice_config(3, 2, logits, {{"expert_capacity_dim", 2}});
  lingvo_config["inputs"]["paddings"] = prax_config["inputs"]["paddings"];
  const moeref::Trace prax = run_json(prax_config);
  const moeref::Trace lingvo = run_json(lingvo_config);
  CHECK(i_at(step(prax, "mask"), {0, 1, 0}) == 1);
  CHECK(i_at(step(prax, "mask"), {0, 0, 0}) == 0);
  CHECK(i_at(step(lingvo, "mask"), {0, 0, 0}) == 1);
  CHECK(tokens_of_expert(prax, 0, 0) == tokens({2}));
  CHECK(tokens_of_expert(lingvo, 0, 0) == tokens({2}));
  moeref::testing::check_expert_choice_invariants(prax);
}

TEST_CASE("praxis_expert_choice: the layer defaults give C = roundup4(int(2 S / E))",
          "[praxis_expert_choice][capacity]") {
  // TransformerFeedForwardMoe: expert_capacity_dim 0, unadjusted_expert_capacity_factor 2.0.
  // S = 8, E = 4: auto = int(8 * 2.0 / 4) = 4 > 0, so C = 4.
  const moeref::Trace trace =
      run_json(praxis_expert_choice_config(8, 4, std::vector<float>(32, 0.0f), nlohmann::json::object()));
  CHECK(trace.capacity["expert_capacity"] == 4);
  CHECK(trace.config["hparams"]["capacity_factor"] == 2.0);
  // S = 12, E = 4, factor 2.0: auto 6 -> C = 8.
  const moeref::Trace rounded =
      run_json(praxis_expert_choice_config(12, 4, std::vector<float>(48, 0.0f), nlohmann::json::object()));
  CHECK(rounded.capacity["expert_capacity"] == 8);
}

TEST_CASE("praxis_expert_choice: C = 0 and C > S run because top_k slices (lingvo fails)",
          "[praxis_expert_choice][edge]") {
  // C = 0: S = 4, E = 8, factor 1.0: auto = int(0.5) = 0, no floor, C0 = 0 -> C = 0. The assert
  // `capacity_factor or expert_capacity_dim` passes (1.0). top_k(k=0) is sorted[..., -0:], i.e. ALL
  // S tokens: every expert "takes" every token, but one_hot(pos, 0) is empty and combine is [G,S,E,0].
  const moeref::Trace zero = run_json(praxis_expert_choice_config(
      4, 8, std::vector<float>(32, 0.0f), {{"expert_capacity_dim", 0}, {"capacity_factor", 1.0}}));
  CHECK(zero.capacity["expert_capacity"] == 0);
  CHECK(step(zero, "token_indices").shape == std::vector<int64_t>{1, 8, 4});
  CHECK(tokens_of_expert(zero, 0, 5) == tokens({0, 1, 2, 3}));
  CHECK(step(zero, "combine_tensor").shape == std::vector<int64_t>{1, 4, 8, 0});
  // C > S: S = 4, E = 2, C0 = 6, no factor. top_k(k=6) returns all 4 tokens; slots 4 and 5 stay empty.
  const moeref::Trace wide = run_json(praxis_expert_choice_config(
      4, 2, {1, 0, 2, 0, 3, 0, 4, 0}, {{"expert_capacity_dim", 6}, {"capacity_factor", nullptr}}));
  CHECK(wide.capacity["expert_capacity"] == 6);
  CHECK(step(wide, "token_indices").shape == std::vector<int64_t>{1, 2, 4});
  CHECK(tokens_of_expert(wide, 0, 0) == tokens({0, 1, 2, 3}));
  CHECK(f_at(step(wide, "combine_tensor"), {0, 3, 0, 3}) == f_at(step(wide, "gates"), {0, 3, 0}));
  moeref::testing::check_expert_choice_invariants(wide);
  // capacity_factor 0.0 "is not None": auto = 0, C = C0 = 3.
  const moeref::Trace zero_factor = run_json(praxis_expert_choice_config(
      4, 2, std::vector<float>(8, 0.0f), {{"expert_capacity_dim", 3}, {"capacity_factor", 0.0}}));
  CHECK(zero_factor.capacity["expert_capacity"] == 3);
  CHECK(zero_factor.capacity["auto_expert_capacity"] == 0);
  // The source asserts `capacity_factor or expert_capacity_dim`.
  CHECK_THROWS_WITH(run_json(praxis_expert_choice_config(4, 2, std::vector<float>(8, 0.0f),
                                                         {{"expert_capacity_dim", 0}, {"capacity_factor", 0.0}})),
                    Catch::Contains("capacity_factor or expert_capacity_dim"));
}

TEST_CASE("praxis_expert_choice: gates are jax.nn.softmax (a true division)", "[praxis_expert_choice][softmax]") {
  // Row [0, -0.5, 0] (E = 3): JAX gives 0.232696533203125 for the middle expert; lingvo's TF CPU
  // softmax gives 0.2326965481042862 (tests/test_ops_gshard.cpp derives both).
  const std::vector<float> logits = {0, -0.5f, 0};
  const moeref::Trace prax =
      run_json(praxis_expert_choice_config(1, 3, logits, {{"expert_capacity_dim", 1}, {"capacity_factor", nullptr}}));
  const moeref::Trace lingvo = run_json(lingvo_expert_choice_config(1, 3, logits, {{"expert_capacity_dim", 1}}));
  CHECK(f_at(step(prax, "gates"), {0, 0, 1}) == 0.232696533203125f);
  CHECK(f_at(step(lingvo, "gates"), {0, 0, 1}) == 0.2326965481042862f);
  CHECK(f_at(step(prax, "combine_tensor"), {0, 0, 1, 0}) == 0.232696533203125f);
}

TEST_CASE("praxis_expert_choice: gating_logit_cap applies cap * tanh(logits / cap)", "[praxis_expert_choice][cap]") {
  // cap 2: logits [4, 0] -> [2 * tanh(2), 0] = [1.9280552, 0] (2 * 0.9640275800758169).
  const moeref::Trace trace = run_json(praxis_expert_choice_config(
      1, 2, {4, 0}, {{"expert_capacity_dim", 1}, {"capacity_factor", nullptr}, {"gating_logit_cap", 2.0}}));
  CHECK(f_at(step(trace, "logits_capped"), {0, 0, 0}) == Approx(1.9280552).margin(1e-6));
  CHECK(f_at(step(trace, "logits_capped"), {0, 0, 1}) == 0.0f);
  // Without a cap the step is absent.
  const moeref::Trace plain = run_json(praxis_expert_choice_config(1, 2, {4, 0}, {{"expert_capacity_dim", 1}}));
  CHECK(plain.find_step("logits_capped") == nullptr);
}

TEST_CASE("praxis_expert_choice: lingvo's testExpertChoiceV2 configuration takes the same tokens",
          "[praxis_expert_choice][source_test]") {
  // tensorflow/lingvo lingvo/core/gshard_gating_test.py, GatingTest.testExpertChoiceV2 inputs (see
  // tests/test_lingvo_expert_choice_cases.cpp). praxis with capacity_factor 1 and C0 = 3: auto =
  // int(6 * 1 / 4) = 1 <= 3, so C = 3 as in lingvo. The input has no ties at any cut, so the tie
  // rules agree and the expected sets are lingvo's.
  const nlohmann::json config = {{"variant", "praxis_expert_choice"},
                                 {"scope", "gating"},
                                 {"dims", {{"G", 2}, {"S", 6}, {"E", 4}, {"M", 8}}},
                                 {"hparams", {{"expert_capacity_dim", 3}, {"capacity_factor", 1.0}}},
                                 {"inputs", lingvo_gating_test_inputs()}};
  const moeref::Trace trace = run_json(config);
  CHECK(trace.capacity["expert_capacity"] == 3);
  check_lingvo_gating_test_selection(trace);
  moeref::testing::check_expert_choice_invariants(trace);
}

// praxis has no test of expert_choice_gating_on_logits_v2 (praxis/gshard_utils_test.py does not
// exist at feeaff1). lingvo's gshard_gating_test.py testExpertChoiceV2 input has no ties, so praxis
// must select the same tokens as lingvo on it; with C fixed at 3 the two variants differ only in the
// softmax flavour (at most an ulp in combine).
TEST_CASE("praxis_expert_choice: agrees with lingvo on a tie-free input",
          "[praxis_expert_choice][lingvo_expert_choice]") {
  for (uint64_t seed = 0; seed < 4; ++seed) {
    INFO("seed " << seed);
    nlohmann::json lingvo_config = {{"variant", "lingvo_expert_choice"},
                                    {"scope", "gating"},
                                    {"seed", seed},
                                    {"dims", {{"G", 2}, {"S", 12}, {"E", 3}, {"M", 5}}},
                                    {"hparams", {{"expert_capacity_dim", 3}}}};
    nlohmann::json praxis_config = lingvo_config;
    praxis_config["variant"] = "praxis_expert_choice";
    praxis_config["hparams"]["capacity_factor"] = nullptr;
    const moeref::Trace lingvo = run_json(lingvo_config);
    const moeref::Trace prax = run_json(praxis_config);
    CHECK(step(lingvo, "mask_nonpadding").i32 == step(prax, "mask_nonpadding").i32);
    CHECK(step(lingvo, "dispatch_tensor").i32 == step(prax, "dispatch_tensor").i32);
    const moeref::Tensor& a = step(lingvo, "combine_tensor");
    const moeref::Tensor& b = step(prax, "combine_tensor");
    for (size_t k = 0; k < a.f32.size(); ++k) CHECK(a.f32[k] == Approx(b.f32[k]).epsilon(2e-7).margin(1e-30));
    moeref::testing::check_expert_choice_invariants(prax);
  }
}

TEST_CASE("praxis_expert_choice: invariants over generated inputs with paddings", "[praxis_expert_choice][property]") {
  for (uint64_t seed = 0; seed < 6; ++seed) {
    INFO("seed " << seed);
    std::vector<float> paddings(40, 0.0f);
    for (size_t i = seed % 4; i < paddings.size(); i += 4) paddings[i] = 1.0f;
    const nlohmann::json config = {{"variant", "praxis_expert_choice"},
                                   {"scope", seed % 2 == 0 ? "gating" : "layer"},
                                   {"seed", seed},
                                   {"dims", {{"G", 2}, {"S", 20}, {"E", 4}, {"M", 6}, {"H", 5}}},
                                   {"inputs", {{"paddings", tensor_json({"G", "S"}, {2, 20}, paddings)}}}};
    const moeref::Trace trace = run_json(config);
    CHECK(trace.capacity["expert_capacity"] == 12);  // auto = int(20 * 2.0 / 4) = 10 -> 12
    moeref::testing::check_expert_choice_invariants(trace);
  }
}

// ---- version v1: expert_choice_gating_on_logits (google/praxis, praxis/gshard_utils.py at feeaff1) ----

TEST_CASE("praxis_expert_choice v1: bucket_size = int(S // E * capacity_factor), slots in ascending score order",
          "[praxis_expert_choice][v1]") {
  // S = 4, E = 2, capacity_factor 1: bucket_size = int(4 // 2 * 1.0) = 2. Logits t0 [1, 0], t1 [-1, 0],
  // t2 [2, 0], t3 [0, 0]: expert 0's scores 0.7310586, 0.2689414, 0.8807971, 0.5 -> it takes t2 and t0;
  // expert 1's 0.2689414, 0.7310586, 0.1192029, 0.5 -> t1 and t3. praxis's top_k returns the last k of an
  // ascending sort: [t0, t2] and [t3, t1].
  nlohmann::json config = moeref::testing::one_group_logits_config(
      "praxis_expert_choice", 4, 2, {1, 0, -1, 0, 2, 0, 0, 0},
      {{"version", "v1"}, {"capacity_factor", 1.0}, {"expert_capacity_dim", 0}});
  const moeref::Trace trace = moeref::testing::run_json(config);
  CHECK(trace.capacity["expert_capacity"] == 2);
  CHECK(moeref::testing::step(trace, "indices").i32 == std::vector<int32_t>{0, 2, 3, 1});
  const auto& gate = moeref::testing::step(trace, "gate").f32;
  CHECK(gate[0] == Approx(0.7310586f).epsilon(1e-6));
  CHECK(gate[1] == Approx(0.8807971f).epsilon(1e-6));
  CHECK(gate[2] == 0.5f);
  // perm [G, E, C, S] is the one-hot of the indices; combine [G, S, E, C] holds each gate at its slot.
  CHECK(moeref::testing::step(trace, "perm").i32 ==
        std::vector<int32_t>{1, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 1, 0, 0});
  CHECK(moeref::testing::f_at(moeref::testing::step(trace, "combine_tensor"), {0, 2, 0, 1}) == gate[1]);
  CHECK(moeref::testing::loss(trace, "aux_loss") == 0.0f);
}

TEST_CASE("praxis_expert_choice v1: a bucket of 0 returns every token, the refused inputs",
          "[praxis_expert_choice][v1]") {
  // S = 3, E = 4: S // E = 0, bucket_size = 0, and top_k's sorted[..., -0:] is the whole row: every
  // expert takes all three tokens.
  nlohmann::json config = moeref::testing::one_group_logits_config(
      "praxis_expert_choice", 3, 4, std::vector<float>(12, 0.0f),
      {{"version", "v1"}, {"capacity_factor", 2.0}, {"expert_capacity_dim", 0}});
  const moeref::Trace trace = moeref::testing::run_json(config);
  CHECK(trace.capacity["bucket_size"] == 0);
  CHECK(trace.capacity["expert_capacity"] == 3);
  for (int32_t taken : moeref::testing::step(trace, "mask_ges").i32) CHECK(taken == 1);
  // No paddings, no logit cap, and a factor is required (int(S // E * None) raises).
  nlohmann::json padded = config;
  padded["inputs"]["paddings"] = moeref::testing::tensor_json({"G", "S"}, {1, 3}, {0, 0, 1});
  CHECK_THROWS_WITH(moeref::testing::run_json(padded), Catch::Contains("inputs.paddings") && Catch::Contains("v1"));
  nlohmann::json capped = config;
  capped["hparams"]["gating_logit_cap"] = 1.0;
  CHECK_THROWS_WITH(moeref::testing::run_json(capped), Catch::Contains("hparams.gating_logit_cap"));
  nlohmann::json no_factor = config;
  no_factor["hparams"]["capacity_factor"] = nullptr;
  no_factor["hparams"]["expert_capacity_dim"] = 2;
  CHECK_THROWS_WITH(moeref::testing::run_json(no_factor), Catch::Contains("hparams.capacity_factor"));
}
