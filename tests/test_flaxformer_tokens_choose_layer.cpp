// flaxformer_tokens_choose in scope "layer": MoeLayer.__call__ pads, groups, routes, runs the
// experts and slices the padding off (google/flaxformer, flaxformer/architectures/moe/
// moe_layers.py at 399ea3a). Invariants recomputed from the trace's own inputs.
#include <cmath>
#include <vector>

#include "test_support.hpp"

using moeref::testing::run_json;
using moeref::testing::step;

TEST_CASE("flaxformer layer: padding, groups, capacity, result sliced back to B x L x M",
          "[flaxformer_tokens_choose][layer]") {
  // B = 3, L = 5, E = 4: one padding row (20 tokens); max_group_size 8: G = max(2, 4) = 4, S = 5;
  // C = max(round(1.25 * 5 / 4) = round(1.5625) = 2, 4) = 4.
  const moeref::Trace trace = run_json({{"variant", "flaxformer_tokens_choose"},
                                        {"seed", 4},
                                        {"dims", {{"B", 3}, {"L", 5}, {"E", 4}, {"M", 3}, {"H", 4}}},
                                        {"hparams", {{"max_group_size", 8}}}});
  CHECK(trace.capacity["batch_padding"] == 1);
  CHECK(trace.capacity["seq_padding"] == 0);
  CHECK(trace.config["dims"]["G"] == 4);
  CHECK(trace.config["dims"]["S"] == 5);
  CHECK(trace.config["dims"]["C"] == 4);
  const moeref::Tensor* x = trace.find_input("x");
  REQUIRE(x != nullptr);
  const moeref::Tensor& grouped = step(trace, "grouped_inputs");
  // Tokens 0..14 are x row-major; tokens 15..19 (the padding row) are zeros.
  for (size_t i = 0; i < x->f32.size(); ++i) CHECK(grouped.f32[i] == x->f32[i]);
  for (size_t i = x->f32.size(); i < grouped.f32.size(); ++i) CHECK(grouped.f32[i] == 0.0f);
  // result = outputs[:B, :L]
  const moeref::Tensor& outputs = step(trace, "outputs");
  const moeref::Tensor& result = step(trace, "result");
  REQUIRE(result.shape == std::vector<int64_t>{3, 5, 3});
  for (size_t i = 0; i < result.f32.size(); ++i) CHECK(result.f32[i] == outputs.f32[i]);
  // No jitter without jitter_noise; the combine array holds raw probabilities.
  CHECK(trace.find_step("jitter") == nullptr);
  const moeref::Tensor& combine = step(trace, "combine_array");
  const moeref::Tensor& dispatch = step(trace, "dispatch_mask");
  const moeref::Tensor& probs = step(trace, "router_probs");
  for (size_t i = 0; i < combine.f32.size(); ++i) {
    CHECK(combine.f32[i] == (dispatch.i32[i] != 0 ? probs.f32[i / 4] : 0.0f));
  }
}

TEST_CASE("flaxformer jitter multiplies the router input only, by jax.random.uniform's formula",
          "[flaxformer_tokens_choose][layer]") {
  const moeref::Trace trace = run_json({{"variant", "flaxformer_tokens_choose"},
                                        {"seed", 5},
                                        {"dims", {{"B", 2}, {"L", 4}, {"E", 2}, {"M", 3}, {"H", 2}}},
                                        {"hparams", {{"jitter_noise", 0.1}}}});
  const moeref::Tensor* uniform = trace.find_input("jitter_uniform");
  REQUIRE(uniform != nullptr);
  const moeref::Tensor& jitter = step(trace, "jitter");
  const float minval = static_cast<float>(1.0 - 0.1), maxval = static_cast<float>(1.0 + 0.1);
  for (size_t i = 0; i < jitter.f32.size(); ++i) {
    CHECK(jitter.f32[i] == std::max(minval, uniform->f32[i] * (maxval - minval) + minval));
    CHECK(jitter.f32[i] >= 0.9f);
    CHECK(jitter.f32[i] < 1.1f);
  }
  // The experts read grouped_inputs, not the jittered copy.
  const moeref::Tensor& expert_inputs = step(trace, "expert_inputs");
  const moeref::Tensor& grouped = step(trace, "grouped_inputs");
  bool found_token_row = false;
  for (int64_t i = 0; i + 3 <= static_cast<int64_t>(expert_inputs.f32.size()); i += 3) {
    if (expert_inputs.f32[static_cast<size_t>(i)] == grouped.f32[0] &&
        expert_inputs.f32[static_cast<size_t>(i + 1)] == grouped.f32[1]) {
      found_token_row = true;
    }
  }
  CHECK(found_token_row);
  // Evaluation: no jitter at all.
  const moeref::Trace eval = run_json({{"variant", "flaxformer_tokens_choose"},
                                       {"train", false},
                                       {"dims", {{"B", 2}, {"L", 4}, {"E", 2}, {"M", 3}, {"H", 2}}},
                                       {"hparams", {{"jitter_noise", 0.1}}}});
  CHECK(eval.find_input("jitter_uniform") == nullptr);
}
