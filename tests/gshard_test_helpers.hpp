// Helpers for the lingvo/praxis expert-choice and hash gating tests: one-group
// configs, read [G, S, E, C] elements, and check the invariants the sources
// guarantee.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <string>
#include <vector>

#include "test_support.hpp"

namespace moeref::testing {

// Scope "gating" for one group (G = 1) of S tokens and E experts, with the given inputs.
inline nlohmann::json one_group_config(const std::string& variant, int64_t S, int64_t E, const nlohmann::json& hparams,
                                       const nlohmann::json& inputs) {
  return {{"variant", variant},
          {"scope", "gating"},
          {"dims", {{"G", 1}, {"S", S}, {"E", E}}},
          {"hparams", hparams},
          {"inputs", inputs}};
}

// one_group_config with supplied logits [G = 1, S, E].
inline nlohmann::json one_group_logits_config(const std::string& variant, int64_t S, int64_t E,
                                              const std::vector<float>& logits, const nlohmann::json& hparams) {
  return one_group_config(variant, S, E, hparams, {{"logits", tensor_json({"G", "S", "E"}, {1, S, E}, logits)}});
}

// lingvo_expert_choice and praxis_expert_choice on supplied logits [G = 1, S, E].
inline nlohmann::json lingvo_expert_choice_config(int64_t S, int64_t E, const std::vector<float>& logits,
                                                  const nlohmann::json& hparams) {
  return one_group_logits_config("lingvo_expert_choice", S, E, logits, hparams);
}
inline nlohmann::json praxis_expert_choice_config(int64_t S, int64_t E, const std::vector<float>& logits,
                                                  const nlohmann::json& hparams) {
  return one_group_logits_config("praxis_expert_choice", S, E, logits, hparams);
}

// A list of token indices, to compare with tokens_of_expert.
inline std::vector<int64_t> tokens(std::initializer_list<int64_t> list) { return std::vector<int64_t>(list); }

// Inputs of tensorflow/lingvo lingvo/core/gshard_gating_test.py, GatingTest.testExpertChoiceV2:
// np.random.normal(0, 1, ...).round(2) after np.random.seed(123456), inputs [B=2, L=6, M=8] (read as
// [G=2, S=6, M=8]) then w [M=8, E=4]. tools/source_tests/lingvo_gating_test_inputs.py regenerates them.
inline std::vector<float> lingvo_gating_test_x() {
  return {0.47f,  -0.28f, -1.51f, -1.14f, 1.21f,  -0.17f, 0.12f,  -1.04f, -0.86f, -2.1f,  -0.49f, 1.07f,
          0.72f,  -0.71f, -1.04f, 0.27f,  -0.42f, 0.57f,  0.28f,  -1.09f, -0.67f, 0.11f,  -1.48f, 0.52f,
          0.4f,   0.58f,  -1.72f, -1.04f, -0.37f, -1.16f, -1.34f, 0.84f,  1.08f,  -0.11f, 1.64f,  -1.47f,
          0.36f,  -0.67f, -1.78f, -0.97f, -1.29f, 0.41f,  0.28f,  -0.47f, -0.01f, -0.36f, -0.01f, -0.92f,
          0.9f,   0.81f,  -1.21f, 2.57f,  1.43f,  1.34f,  -1.17f, -0.23f, 0.41f,  0.81f,  0.13f,  -0.83f,
          -0.08f, -1.19f, 1.13f,  -1.44f, -1.41f, 1.61f,  1.02f,  0.57f,  0.88f,  -2.21f, 0.97f,  -2.01f,
          -0.41f, -0.08f, 0.55f,  -1.22f, -1.23f, 0.77f,  -1.28f, -0.73f, -0.12f, -0.1f,  0.7f,   0.34f,
          0.96f,  -1.11f, -0.62f, 0.15f,  -0.73f, 0.69f,  0.18f,  0.4f,   -0.15f, 0.3f,   -2.18f, -1.37f};
}
inline std::vector<float> lingvo_gating_test_w() {
  return {-0.95f, 1.46f,  -1.74f, -0.83f, -0.35f, 1.31f,  0.69f, 1.0f,   2.4f,   0.01f, 3.36f,
          -0.32f, -1.24f, 0.9f,   -0.49f, -0.08f, -2.18f, 0.38f, 0.08f,  0.43f,  1.52f, -0.49f,
          0.6f,   0.27f,  0.13f,  -0.02f, 2.41f,  1.45f,  0.21f, -0.25f, -2.21f, 1.06f};
}

// The inputs of testExpertChoiceV2 read as [G=2, S=6, M=8]: x, router_weights [M=8, E=4], and its
// paddings [[0,0,0,0,1,1],[0,0,0,0,0,1]].
inline nlohmann::json lingvo_gating_test_inputs() {
  return {{"x", tensor_json({"G", "S", "M"}, {2, 6, 8}, lingvo_gating_test_x())},
          {"router_weights", tensor_json({"M", "E"}, {8, 4}, lingvo_gating_test_w())},
          {"paddings", tensor_json({"G", "S"}, {2, 6}, {0, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0, 1})}};
}

// Element [i0, i1, ...] of a row-major tensor.
inline int64_t flat_index(const Tensor& t, const std::vector<int64_t>& index) {
  int64_t flat = 0;
  for (size_t d = 0; d < index.size(); ++d) flat = flat * t.shape[d] + index[d];
  return flat;
}
inline float f_at(const Tensor& t, const std::vector<int64_t>& index) {
  return t.f32[static_cast<size_t>(flat_index(t, index))];
}
inline int32_t i_at(const Tensor& t, const std::vector<int64_t>& index) {
  return t.i32[static_cast<size_t>(flat_index(t, index))];
}

// The tokens of group g that expert e took (mask_nonpadding[g, :, e] == 1), in token order.
inline std::vector<int64_t> tokens_of_expert(const Trace& trace, int64_t g, int64_t e) {
  const Tensor& mask = step(trace, "mask_nonpadding");
  std::vector<int64_t> tokens;
  for (int64_t s = 0; s < mask.shape[1]; ++s) {
    if (i_at(mask, {g, s, e}) == 1) tokens.push_back(s);
  }
  return tokens;
}

// Checks the tokens each expert takes on lingvo_gating_test_inputs() with C = 3, per group and
// expert, as an independent float64 restatement derives them
// (tools/source_tests/lingvo_gating_test_inputs.py). No cut is near a tie, so lingvo's and
// praxis's expert choice both take these.
inline void check_lingvo_gating_test_selection(const Trace& trace) {
  const std::vector<std::vector<std::vector<int64_t>>> expected = {
      {{1, 2, 3}, {0, 1, 3}, {0, 1, 2}, {0, 1, 3}},   // group 0: tokens 4 and 5 padded
      {{1, 3, 4}, {0, 1, 4}, {1, 2, 4}, {0, 1, 4}}};  // group 1: token 5 padded
  for (int64_t g = 0; g < 2; ++g) {
    for (int64_t e = 0; e < 4; ++e) {
      INFO("g=" << g << " e=" << e);
      CHECK(tokens_of_expert(trace, g, e) == expected[static_cast<size_t>(g)][static_cast<size_t>(e)]);
    }
  }
}

// Invariants shared by lingvo TokenShufflingOnlogitsV2 and praxis expert_choice_gating_on_logits_v2:
// at most C tokens per expert; padded tokens never taken; the k-th taken token (token order) sits in
// slot k with its raw probability as weight; nothing else in combine; dispatch = (combine != 0); at
// most one token per slot. Violations are collected and reported together (one CHECK per call keeps
// the suite fast).
inline void check_expert_choice_invariants(const Trace& trace) {
  const Tensor& gates = step(trace, "gates");
  const Tensor& mask = step(trace, "mask_nonpadding");
  const Tensor& nonpaddings = step(trace, "nonpaddings");
  const Tensor& combine = step(trace, "combine_tensor");
  const Tensor& dispatch = step(trace, "dispatch_tensor");
  const int64_t G = combine.shape[0], S = combine.shape[1], E = combine.shape[2], C = combine.shape[3];
  std::string violations;
  auto note = [&violations](const std::string& what, int64_t g, int64_t s, int64_t e, int64_t c) {
    if (violations.size() < 600) {
      violations += what + " at [g=" + std::to_string(g) + ", s=" + std::to_string(s) + ", e=" + std::to_string(e) +
                    ", c=" + std::to_string(c) + "]; ";
    }
  };
  for (int64_t g = 0; g < G; ++g) {
    for (int64_t e = 0; e < E; ++e) {
      const std::vector<int64_t> tokens = tokens_of_expert(trace, g, e);
      // C == 0 is the one case with more taken tokens than slots: praxis's top_k(k=0) returns every token.
      if (static_cast<int64_t>(tokens.size()) > (C == 0 ? S : C)) note("more tokens than C", g, -1, e, -1);
      std::vector<int64_t> slot_of(static_cast<size_t>(S), -1);
      for (size_t k = 0; k < tokens.size() && static_cast<int64_t>(k) < C; ++k) {
        slot_of[static_cast<size_t>(tokens[k])] = static_cast<int64_t>(k);
      }
      for (int64_t s = 0; s < S; ++s) {
        if (f_at(nonpaddings, {g, s}) < 1.0f && i_at(mask, {g, s, e}) != 0) note("padded token taken", g, s, e, -1);
        for (int64_t c = 0; c < C; ++c) {
          const float value = f_at(combine, {g, s, e, c});
          const float expected = slot_of[static_cast<size_t>(s)] == c ? f_at(gates, {g, s, e}) : 0.0f;
          if (value != expected) note("combine is not the raw probability in token-order slot", g, s, e, c);
          if (i_at(dispatch, {g, s, e, c}) != (value != 0.0f ? 1 : 0)) note("dispatch != (combine != 0)", g, s, e, c);
        }
      }
      for (int64_t c = 0; c < C; ++c) {
        int32_t tokens_in_slot = 0;
        for (int64_t s = 0; s < S; ++s) tokens_in_slot += i_at(dispatch, {g, s, e, c});
        if (tokens_in_slot > 1) note("several tokens in one slot", g, -1, e, c);
      }
    }
  }
  INFO(violations);
  CHECK(violations.empty());
}

}  // namespace moeref::testing
