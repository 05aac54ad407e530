// lingvo_expert_choice: hand-derived cases, the configuration of lingvo's own test, edge cases and
// invariants. Source: tensorflow/lingvo, lingvo/core/gshard_layers.py, TokenShufflingOnlogitsV2.
#include <cmath>

#include "gshard_test_helpers.hpp"
#include "moeref/error.hpp"

// gshard_test_helpers.hpp and test_support.hpp: run_json, step, tensor_json, lingvo_expert_choice_config,
// tokens_of_expert, tokens, f_at, i_at, check_expert_choice_invariants.
using namespace moeref::testing;

// A fully commented minimal run: one group of S=4 tokens, E=2 experts, C=2 slots each.
TEST_CASE("lingvo_expert_choice: each expert takes its C most probable tokens into slots in token order",
          "[lingvo_expert_choice][walkthrough]") {
  // logits [S=4, E=2]. tf.nn.softmax over E gives (to 7 digits)
  //   token 0: [0, 2]  -> [0.1192029, 0.8807971]
  //   token 1: [1, 0]  -> [0.7310586, 0.2689414]
  //   token 2: [-1, 0] -> [0.2689414, 0.7310586]
  //   token 3: [3, 0]  -> [0.9525741, 0.0474259]
  // No paddings, so token_scores is gates transposed to [E, S].
  // Expert 0 scores tokens [0.119, 0.731, 0.269, 0.953]: its top 2 are tokens 3 and 1.
  // Expert 1 scores tokens [0.881, 0.269, 0.731, 0.047]: its top 2 are tokens 0 and 2.
  const moeref::Trace trace =
      run_json(lingvo_expert_choice_config(4, 2, {0, 2, 1, 0, -1, 0, 3, 0}, {{"expert_capacity_dim", 2}}));

  // The capacity is C0 = 2 (no capacity_factor).
  CHECK(trace.capacity["expert_capacity"] == 2);
  const moeref::Tensor& gates = step(trace, "gates");
  CHECK(f_at(gates, {0, 0, 0}) == Approx(0.1192029).epsilon(1e-6));
  CHECK(f_at(gates, {0, 3, 0}) == Approx(0.9525741).epsilon(1e-6));

  // token_indices [G, E, C]: recorded in "larger score first, lower index on ties" order.
  const moeref::Tensor& token_indices = step(trace, "token_indices");
  CHECK(token_indices.i32 == std::vector<int32_t>{3, 1, 0, 2});

  // The slot of a token is its rank in TOKEN order among the expert's tokens, not its score rank:
  // expert 0 put token 1 in slot 0 although token 3 scores higher.
  CHECK(tokens_of_expert(trace, 0, 0) == tokens({1, 3}));
  CHECK(tokens_of_expert(trace, 0, 1) == tokens({0, 2}));
  const moeref::Tensor& position = step(trace, "position_in_expert_masked");
  CHECK(i_at(position, {0, 1, 0}) == 0);
  CHECK(i_at(position, {0, 3, 0}) == 1);
  CHECK(i_at(position, {0, 0, 1}) == 0);
  CHECK(i_at(position, {0, 2, 1}) == 1);

  // combine [G, S, E, C] holds the raw probability of each (token, expert) pair at its slot.
  const moeref::Tensor& combine = step(trace, "combine_tensor");
  CHECK(combine.dims == std::vector<std::string>{"G", "S", "E", "C"});
  CHECK(f_at(combine, {0, 1, 0, 0}) == f_at(gates, {0, 1, 0}));
  CHECK(f_at(combine, {0, 3, 0, 1}) == f_at(gates, {0, 3, 0}));
  CHECK(f_at(combine, {0, 0, 1, 0}) == f_at(gates, {0, 0, 1}));
  CHECK(f_at(combine, {0, 2, 1, 1}) == f_at(gates, {0, 2, 1}));
  moeref::testing::check_expert_choice_invariants(trace);
  CHECK(moeref::testing::loss(trace, "aux_loss") == 0.0f);
}

TEST_CASE("lingvo_expert_choice: several experts may take the same token", "[lingvo_expert_choice]") {
  // token 0: [0, 0] -> [0.5, 0.5]; token 1: [3, 0] -> [0.953, 0.047]; token 2: [0, 3] -> [0.047, 0.953].
  // C = 2. Expert 0 takes {1, 0}; expert 1 takes {2, 0}: token 0 is taken by both, in slot 0 of each.
  const moeref::Trace trace =
      run_json(lingvo_expert_choice_config(3, 2, {0, 0, 3, 0, 0, 3}, {{"expert_capacity_dim", 2}}));
  CHECK(tokens_of_expert(trace, 0, 0) == tokens({0, 1}));
  CHECK(tokens_of_expert(trace, 0, 1) == tokens({0, 2}));
  const moeref::Tensor& combine = step(trace, "combine_tensor");
  CHECK(f_at(combine, {0, 0, 0, 0}) == 0.5f);
  CHECK(f_at(combine, {0, 0, 1, 0}) == 0.5f);
  // avg_expert_per_token = sum(mask) / sum(nonpaddings) = f32(4) / f32(3).
  CHECK(step(trace, "avg_expert_per_token").f32[0] == 4.0f / 3.0f);
  moeref::testing::check_expert_choice_invariants(trace);
}

TEST_CASE("lingvo_expert_choice: ties at the cut go to the lower token index", "[lingvo_expert_choice][ties]") {
  // Equal logits give bitwise-equal probabilities (0.5 each). tf.math.top_k's stable_comp prefers the
  // lower index, so with C = 2 both experts take tokens 0 and 1 and leave 2 and 3.
  const moeref::Trace trace =
      run_json(lingvo_expert_choice_config(4, 2, std::vector<float>(8, 0.0f), {{"expert_capacity_dim", 2}}));
  CHECK(tokens_of_expert(trace, 0, 0) == tokens({0, 1}));
  CHECK(tokens_of_expert(trace, 0, 1) == tokens({0, 1}));
  // With E = 1 every probability is 1.0 whatever the logits, so all S tokens tie and C = 3 takes
  // tokens 0, 1 and 2.
  const moeref::Trace all_tie =
      run_json(lingvo_expert_choice_config(4, 1, {5, -1, 2, 0}, {{"expert_capacity_dim", 3}}));
  CHECK(tokens_of_expert(all_tie, 0, 0) == tokens({0, 1, 2}));
}

TEST_CASE("lingvo_expert_choice: padded tokens score 0 and are filtered after selection",
          "[lingvo_expert_choice][paddings]") {
  // Same logits as the walkthrough, token 1 padded: expert 0 now takes {3, 2}, expert 1 {0, 2}.
  nlohmann::json config = lingvo_expert_choice_config(4, 2, {0, 2, 1, 0, -1, 0, 3, 0}, {{"expert_capacity_dim", 2}});
  config["inputs"]["paddings"] = tensor_json({"G", "S"}, {1, 4}, {0, 1, 0, 0});
  const moeref::Trace trace = run_json(config);
  CHECK(f_at(step(trace, "token_scores"), {0, 0, 1}) == 0.0f);
  CHECK(tokens_of_expert(trace, 0, 0) == tokens({2, 3}));
  CHECK(tokens_of_expert(trace, 0, 1) == tokens({0, 2}));
  moeref::testing::check_expert_choice_invariants(trace);

  // Fewer real tokens than C: tokens 0 and 1 padded, C = 2. Each expert must take two tokens; the
  // second is a score-0 padded token, the lower index (token 0) on the tie. `mask` records it and
  // `mask *= nonpaddings` removes it, so each expert ends up with token 2 only.
  nlohmann::json short_group =
      lingvo_expert_choice_config(3, 2, std::vector<float>(6, 0.0f), {{"expert_capacity_dim", 2}});
  short_group["inputs"]["paddings"] = tensor_json({"G", "S"}, {1, 3}, {1, 1, 0});
  const moeref::Trace short_trace = run_json(short_group);
  CHECK(i_at(step(short_trace, "mask"), {0, 0, 0}) == 1);
  CHECK(i_at(step(short_trace, "mask"), {0, 1, 0}) == 0);
  CHECK(tokens_of_expert(short_trace, 0, 0) == tokens({2}));
  CHECK(tokens_of_expert(short_trace, 0, 1) == tokens({2}));
  // avg_expert_per_token = 2 selections / 1 real token.
  CHECK(step(short_trace, "avg_expert_per_token").f32[0] == 2.0f);
  moeref::testing::check_expert_choice_invariants(short_trace);
}

TEST_CASE("lingvo_expert_choice: an all-padded group routes nothing and avg_expert_per_token is 0/0",
          "[lingvo_expert_choice][paddings]") {
  nlohmann::json config = lingvo_expert_choice_config(3, 2, {0, 1, 2, 0, 1, 1}, {{"expert_capacity_dim", 2}});
  config["inputs"]["paddings"] = tensor_json({"G", "S"}, {1, 3}, {1, 1, 1});
  const moeref::Trace trace = run_json(config);
  CHECK(step(trace, "token_scores").f32 == std::vector<float>(6, 0.0f));
  CHECK(step(trace, "mask_nonpadding").i32 == std::vector<int32_t>(6, 0));
  CHECK(step(trace, "dispatch_tensor").i32 == std::vector<int32_t>(12, 0));
  CHECK(std::isnan(step(trace, "avg_expert_per_token").f32[0]));
}

TEST_CASE("lingvo_expert_choice: a fractional padding scales the score but the int mask drops the token",
          "[lingvo_expert_choice][paddings]") {
  // E = 1: every probability is 1.0. paddings [0.5, 0]: token_scores [0.5, 1.0]; with C = 2 both are
  // selected, but mask *= int32(nonpaddings) truncates 0.5 to 0, so only token 1 is dispatched, in slot 0.
  nlohmann::json config = lingvo_expert_choice_config(2, 1, {0, 0}, {{"expert_capacity_dim", 2}});
  config["inputs"]["paddings"] = tensor_json({"G", "S"}, {1, 2}, {0.5f, 0});
  const moeref::Trace trace = run_json(config);
  CHECK(step(trace, "token_scores").f32 == std::vector<float>{0.5f, 1.0f});
  CHECK(step(trace, "mask").i32 == std::vector<int32_t>{1, 1});
  CHECK(step(trace, "mask_nonpadding").i32 == std::vector<int32_t>{0, 1});
  CHECK(f_at(step(trace, "combine_tensor"), {0, 1, 0, 0}) == 1.0f);
  // avg_expert_per_token = 1 / (0.5 + 1.0).
  CHECK(step(trace, "avg_expert_per_token").f32[0] == 1.0f / 1.5f);
}

TEST_CASE("lingvo_expert_choice: a selected token with probability 0 holds a slot but is not dispatched",
          "[lingvo_expert_choice][edge]") {
  // token 0: [0, -200] -> expert 1's probability exp(-200) underflows to exactly 0 in float32.
  // token 1: [0, 0] -> [0.5, 0.5]. With C = S = 2 expert 1 takes both tokens: token 0 in slot 0 with
  // weight 0 (dispatch = combine != 0 leaves it out) and token 1 in slot 1.
  const moeref::Trace trace =
      run_json(lingvo_expert_choice_config(2, 2, {0, -200, 0, 0}, {{"expert_capacity_dim", 2}}));
  CHECK(f_at(step(trace, "gates"), {0, 0, 1}) == 0.0f);
  CHECK(tokens_of_expert(trace, 0, 1) == tokens({0, 1}));
  CHECK(i_at(step(trace, "position_in_expert_masked"), {0, 1, 1}) == 1);
  CHECK(i_at(step(trace, "dispatch_tensor"), {0, 0, 1, 0}) == 0);
  CHECK(i_at(step(trace, "dispatch_tensor"), {0, 1, 1, 1}) == 1);
  moeref::testing::check_expert_choice_invariants(trace);
}

TEST_CASE("lingvo_expert_choice: capacity rule with C = 0 and C > S", "[lingvo_expert_choice][capacity]") {
  // S = 8, E = 4, C0 = 0, capacity_factor 1.0: auto = int(8 * 1.0 / 4) = 2, raised and rounded up to 4.
  const std::vector<float> logits(32, 0.0f);
  const moeref::Trace raised =
      run_json(lingvo_expert_choice_config(8, 4, logits, {{"expert_capacity_dim", 0}, {"capacity_factor", 1.0}}));
  CHECK(raised.capacity["expert_capacity"] == 4);
  CHECK(raised.capacity["auto_expert_capacity"] == 2);
  // capacity_factor 0.0 is falsy in `if capacity_factor:`: C = C0.
  const moeref::Trace zero_factor =
      run_json(lingvo_expert_choice_config(8, 4, logits, {{"expert_capacity_dim", 3}, {"capacity_factor", 0.0}}));
  CHECK(zero_factor.capacity["expert_capacity"] == 3);
  // C = 0 (no factor): top_k(k=0) is empty, nothing is routed, combine is [G, S, E, 0].
  const moeref::Trace empty = run_json(lingvo_expert_choice_config(8, 4, logits, {{"expert_capacity_dim", 0}}));
  CHECK(step(empty, "combine_tensor").shape == std::vector<int64_t>{1, 8, 4, 0});
  CHECK(step(empty, "token_indices").shape == std::vector<int64_t>{1, 4, 0});
  // C > S: S = 2, capacity_factor 1.0, E = 4: auto int(0.5) = 0 -> 4 > S, so tf.math.top_k fails.
  CHECK_THROWS_WITH(run_json(lingvo_expert_choice_config(2, 4, std::vector<float>(8, 0.0f),
                                                         {{"expert_capacity_dim", 0}, {"capacity_factor", 1.0}})),
                    Catch::Contains("top_k") && Catch::Contains("C <= S = 2"));
  CHECK_THROWS_WITH(run_json(lingvo_expert_choice_config(2, 2, {0, 0, 0, 0}, nlohmann::json::object())),
                    Catch::Contains("hparams.expert_capacity_dim") && Catch::Contains("required"));
}

TEST_CASE("lingvo_expert_choice: a float mask_dtype is rejected as TF's OneHot rejects float indices",
          "[lingvo_expert_choice][mask_dtype]") {
  // gshard_layers.py: expert_indices has mask_dtype and feeds tf.one_hot, whose indices must be
  // uint8/int32/int64. With mask_dtype None (= fprop_dtype, float) the graph build raises TypeError.
  for (const char* dtype : {"float32", "bfloat16"}) {
    CHECK_THROWS_WITH(
        run_json(lingvo_expert_choice_config(2, 2, {0, 0, 0, 0}, {{"expert_capacity_dim", 1}, {"mask_dtype", dtype}})),
        Catch::Contains("hparams.mask_dtype") && Catch::Contains("TypeError"));
  }
}

// The configuration of lingvo's own test, tensorflow/lingvo lingvo/core/gshard_gating_test.py,
// GatingTest.testExpertChoiceV2: B=2, L=6, M=8, G=2, S=6, E=4, capacity_factor=1,
// expert_capacity_dim = C = (1 * G * S) // E = 3, mask_dtype=np.int32, paddings
// [[0,0,0,0,1,1],[0,0,0,0,0,1]]. Its inputs are np.random.normal(0, 1, ...).round(2) after
// np.random.seed(123456) (inputs [2,6,8] first, then w [8,4]); tools/source_tests/
// lingvo_gating_test_inputs.py reproduces them without numpy. The test only logs combine, so the
// expected selections (check_lingvo_gating_test_selection) were derived with an independent float64
// restatement (the same script prints them): every score at a cut is at least 2.5x the next one, so
// float32 cannot change them.
TEST_CASE("lingvo_expert_choice: lingvo gshard_gating_test.py testExpertChoiceV2 configuration",
          "[lingvo_expert_choice][source_test]") {
  const nlohmann::json config = {
      {"variant", "lingvo_expert_choice"},
      {"scope", "gating"},
      {"dims", {{"G", 2}, {"S", 6}, {"E", 4}, {"M", 8}}},
      {"hparams", {{"expert_capacity_dim", 3}, {"capacity_factor", 1.0}, {"mask_dtype", "int32"}}},
      {"inputs", lingvo_gating_test_inputs()}};
  const moeref::Trace trace = run_json(config);
  // auto = int(6 * 1 / 4) = 1 <= C0 = 3, so C = 3.
  CHECK(trace.capacity["expert_capacity"] == 3);
  // logits[g=0, s=0] = x[0] . w = [-5.6579, 0.0790, -2.9436, -0.5497] (float64, 4 decimals).
  const moeref::Tensor& logits = step(trace, "logits");
  CHECK(f_at(logits, {0, 0, 0}) == Approx(-5.6579).margin(1e-4));
  CHECK(f_at(logits, {0, 0, 1}) == Approx(0.0790).margin(1e-4));
  CHECK(f_at(logits, {1, 2, 2}) == Approx(12.2364).margin(1e-4));
  check_lingvo_gating_test_selection(trace);
  // 12 selections over 4 real tokens in group 0 and 12 over 5 in group 1: 24 / 9.
  CHECK(step(trace, "avg_expert_per_token").f32[0] == 24.0f / 9.0f);
  moeref::testing::check_expert_choice_invariants(trace);
}

TEST_CASE("lingvo_expert_choice: layer scope dispatches each taken token into its slot",
          "[lingvo_expert_choice][layer]") {
  // The "several experts" case as a layer: token 0 goes to slot 0 of both experts, so
  // outputs[0] = 0.5 * expert_outputs[e=0, c=0] + 0.5 * expert_outputs[e=1, c=0].
  const std::vector<float> x = {0.5f, -1.0f, 0.25f, 0.75f, -0.5f, 1.0f};
  const nlohmann::json config = {{"variant", "lingvo_expert_choice"},
                                 {"seed", 7},
                                 {"dims", {{"G", 1}, {"S", 3}, {"E", 2}, {"M", 2}, {"H", 3}}},
                                 {"hparams", {{"expert_capacity_dim", 2}}},
                                 {"inputs",
                                  {{"x", tensor_json({"G", "S", "M"}, {1, 3, 2}, x)},
                                   {"logits", tensor_json({"G", "S", "E"}, {1, 3, 2}, {0, 0, 3, 0, 0, 3})}}}};
  const moeref::Trace trace = run_json(config);
  const moeref::Tensor& expert_inputs = step(trace, "expert_inputs");  // [E, G, C, M]
  CHECK(f_at(expert_inputs, {0, 0, 0, 0}) == 0.5f);
  CHECK(f_at(expert_inputs, {0, 0, 0, 1}) == -1.0f);
  CHECK(f_at(expert_inputs, {1, 0, 0, 1}) == -1.0f);
  CHECK(f_at(expert_inputs, {0, 0, 1, 0}) == 0.25f);                     // token 1 in expert 0, slot 1
  CHECK(f_at(expert_inputs, {1, 0, 1, 0}) == -0.5f);                     // token 2 in expert 1, slot 1
  const moeref::Tensor& expert_outputs = step(trace, "expert_outputs");  // [E, G, C, N]
  const moeref::Tensor& outputs = step(trace, "outputs");                // [G, S, N]
  for (int64_t n = 0; n < 2; ++n) {
    const float expected = 0.5f * f_at(expert_outputs, {0, 0, 0, n}) + 0.5f * f_at(expert_outputs, {1, 0, 0, n});
    CHECK(f_at(outputs, {0, 0, n}) == Approx(expected).margin(1e-6));
  }
}

TEST_CASE("lingvo_expert_choice: invariants over generated inputs", "[lingvo_expert_choice][property]") {
  for (uint64_t seed = 0; seed < 6; ++seed) {
    INFO("seed " << seed);
    nlohmann::json config = {
        {"variant", "lingvo_expert_choice"},
        {"scope", "gating"},
        {"seed", seed},
        {"dims", {{"G", 3}, {"S", 16}, {"E", 4}, {"M", 6}}},
        {"hparams", {{"expert_capacity_dim", 2}, {"capacity_factor", 1.0 + 0.5 * static_cast<double>(seed % 3)}}}};
    if (seed % 2 == 1) {
      std::vector<float> paddings(48, 0.0f);
      for (size_t i = 0; i < paddings.size(); i += 5) paddings[i] = 1.0f;
      config["inputs"]["paddings"] = tensor_json({"G", "S"}, {3, 16}, paddings);
    }
    const moeref::Trace trace = run_json(config);
    moeref::testing::check_expert_choice_invariants(trace);
    // Without paddings every expert takes exactly C tokens.
    if (seed % 2 == 0) {
      const int64_t C = trace.capacity["expert_capacity"].get<int64_t>();
      for (int64_t g = 0; g < 3; ++g) {
        for (int64_t e = 0; e < 4; ++e) CHECK(static_cast<int64_t>(tokens_of_expert(trace, g, e).size()) == C);
      }
    }
  }
}
