// Helpers shared by the tests of mtf's switch-family variants (mtf_switch,
// mtf_switch_max, mtf_ntlb, mtf_expert_selection) and of their differences:
// gating-scope configs with supplied logits and importance, f32 rounding for
// hand-derived values, and whole-tensor invariants of a routing.
#pragma once

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "mtf_top2_test_helpers.hpp"
#include "test_support.hpp"

namespace moeref::testing::mtf {

// f32(x): the double rounded to float32 (spec/notation.md §2), for hand-derived values.
inline float f32(double x) { return static_cast<float>(x); }

// A gating-scope config of `variant` with supplied logits [G, S, E] and, when not
// empty, importance [G, S].
inline json variant_config(const std::string& variant, int64_t G, int64_t S, int64_t E,
                           const std::vector<float>& logits, const json& hparams, bool train,
                           const std::vector<float>& importance = {}) {
  json config = gating_config(G, S, E, logits, hparams, train);
  config["variant"] = variant;
  if (!importance.empty()) config["inputs"]["importance"] = tensor_json({"G", "S"}, {G, S}, importance);
  return config;
}

// Ones for every token: importance without padding.
inline std::vector<float> ones(size_t n) { return std::vector<float>(n, 1.0f); }

// The float32 data of a step.
inline std::vector<float> floats(const Trace& trace, const std::string& name) {
  const auto& values = step(trace, name).f32;
  return {values.begin(), values.end()};
}

// Invariants of any routing [G, S, E, C]: dispatch is 1 exactly where combine is
// non-zero, and no slot (g, e, c) holds more than one dispatched token.
inline void check_routing_invariants(const Trace& trace) {
  const Tensor& combine = step(trace, "combine_tensor");
  const Tensor& dispatch = step(trace, "dispatch_tensor");
  REQUIRE(combine.shape == dispatch.shape);
  const int64_t G = combine.shape[0], S = combine.shape[1], E = combine.shape[2], C = combine.shape[3];
  for (int64_t g = 0; g < G; ++g) {
    for (int64_t e = 0; e < E; ++e) {
      for (int64_t c = 0; c < C; ++c) {
        int tokens = 0;
        for (int64_t s = 0; s < S; ++s) tokens += i_at(dispatch, {g, s, e, c});
        INFO("slot [g=" << g << ", e=" << e << ", c=" << c << "]");
        CHECK(tokens <= 1);
      }
    }
  }
}

// Checks dispatch == (combine != 0) element by element (mtf's dispatch from combine).
inline void check_dispatch_from_combine(const Trace& trace) {
  const Tensor& combine = step(trace, "combine_tensor");
  const Tensor& dispatch = step(trace, "dispatch_tensor");
  for (size_t k = 0; k < combine.f32.size(); ++k) {
    INFO("element " << combine.named_index(static_cast<int64_t>(k)));
    CHECK(dispatch.i32[k] == (combine.f32[k] != 0.0f ? 1 : 0));
  }
}

}  // namespace moeref::testing::mtf
