// Helpers shared by the mtf_top2 tests: configs with supplied logits, element
// access by multi-dimensional index, a whole-token check of combine_tensor /
// dispatch_tensor, and the layer outputs recomputed from combine_tensor. A test
// file says `using namespace moeref::testing::mtf;` and has these and the names
// below from test_support.hpp.
#pragma once

#include <cmath>
#include <cstdint>
#include <initializer_list>
#include <string>
#include <vector>

#include "test_support.hpp"

namespace moeref::testing::mtf {

using moeref::Tensor;
using moeref::Trace;
using moeref::testing::loss;
using moeref::testing::run_json;
using moeref::testing::step;
using moeref::testing::tensor_json;
using nlohmann::json;

// The int32 data of a step.
inline std::vector<int32_t> ints(const Trace& trace, const std::string& name) {
  const auto& values = step(trace, name).i32;
  return {values.begin(), values.end()};
}

// Logits [S*E] whose softmax is each row of `probs`: logits = log p.
inline std::vector<float> log_probs(const std::vector<std::vector<double>>& probs) {
  std::vector<float> out;
  for (const std::vector<double>& row : probs) {
    for (double p : row) out.push_back(static_cast<float>(std::log(p)));
  }
  return out;
}

// A gating-scope config with supplied logits [G, S, E] (no router matmul).
inline json gating_config(int64_t G, int64_t S, int64_t E, const std::vector<float>& logits, const json& hparams,
                          bool train = true) {
  json config = {{"variant", "mtf_top2"},
                 {"scope", "gating"},
                 {"train", train},
                 {"seed", 0},
                 {"dims", {{"G", G}, {"S", S}, {"E", E}}},
                 {"hparams", hparams}};
  config["inputs"]["logits"] = tensor_json({"G", "S", "E"}, {G, S, E}, logits);
  return config;
}

inline size_t offset(const Tensor& t, std::initializer_list<int64_t> index) {
  REQUIRE(index.size() == t.shape.size());
  int64_t flat = 0;
  size_t d = 0;
  for (int64_t i : index) {
    REQUIRE(i >= 0);
    REQUIRE(i < t.shape[d]);
    flat = flat * t.shape[d] + i;
    ++d;
  }
  return static_cast<size_t>(flat);
}

inline float f_at(const Tensor& t, std::initializer_list<int64_t> index) { return t.f32.at(offset(t, index)); }
inline int32_t i_at(const Tensor& t, std::initializer_list<int64_t> index) { return t.i32.at(offset(t, index)); }

// One expected non-zero of combine_tensor: expert e, slot c, weight.
struct Slot {
  int64_t e;
  int64_t c;
  double weight;
};

// Checks the whole [E, C] block of token (g, s): the listed slots hold their weight
// (relative 1e-5), every other element is exactly 0; dispatch is 1 exactly where
// combine is non-zero.
inline void check_token_slots(const Trace& trace, int64_t g, int64_t s, const std::vector<Slot>& slots) {
  const Tensor& combine = step(trace, "combine_tensor");
  const Tensor& dispatch = step(trace, "dispatch_tensor");
  const int64_t E = combine.shape[2], C = combine.shape[3];
  for (int64_t e = 0; e < E; ++e) {
    for (int64_t c = 0; c < C; ++c) {
      double want = 0.0;
      for (const Slot& slot : slots) {
        if (slot.e == e && slot.c == c) want = slot.weight;
      }
      INFO("combine_tensor[g=" << g << ", s=" << s << ", e=" << e << ", c=" << c << "]");
      const float got = f_at(combine, {g, s, e, c});
      if (want == 0.0) {
        CHECK(got == 0.0f);
      } else {
        CHECK(static_cast<double>(got) == Approx(want).epsilon(1e-5));
      }
      CHECK(i_at(dispatch, {g, s, e, c}) == (got != 0.0f ? 1 : 0));
    }
  }
}

// outputs = einsum([expert_output, combine_tensor]) over E and C (transformer_moe_layer_v1),
// recomputed in double:
//   outputs[g, s, n] = sum_{e, c} combine_tensor[g, s, e, c] * expert_outputs[e, g, c, n].
// Tolerance for a float32 sum of E * C products: 1e-5 x (sum of |terms|), plus 1e-7 absolute
// for results near 0.
// The steps combine_tensor [G, S, E, C], expert_outputs [E, G, C, N] and outputs [G, S, N].
inline void check_outputs_combine_expert_outputs(const Tensor& combine, const Tensor& expert_outputs,
                                                 const Tensor& outputs) {
  const int64_t G = combine.shape[0], S = combine.shape[1], E = combine.shape[2], C = combine.shape[3];
  const int64_t N = outputs.shape[2];
  for (int64_t g = 0; g < G; ++g) {
    for (int64_t s = 0; s < S; ++s) {
      for (int64_t n = 0; n < N; ++n) {
        double want = 0.0, scale = 0.0;
        for (int64_t e = 0; e < E; ++e) {
          for (int64_t c = 0; c < C; ++c) {
            const double term =
                static_cast<double>(combine.f32[static_cast<size_t>(((g * S + s) * E + e) * C + c)]) *
                static_cast<double>(expert_outputs.f32[static_cast<size_t>(((e * G + g) * C + c) * N + n)]);
            want += term;
            scale += std::fabs(term);
          }
        }
        INFO("outputs[g=" << g << ", s=" << s << ", n=" << n << "]");
        CHECK(std::fabs(static_cast<double>(outputs.f32[static_cast<size_t>((g * S + s) * N + n)]) - want) <=
              1e-5 * scale + 1e-7);
      }
    }
  }
}

}  // namespace moeref::testing::mtf
