// The shared building blocks of the lingvo and praxis expert-choice variants:
// the two top-k tie rules, the two softmax flavours and the two capacity rules.
// Expected values are derived by hand in the comments.
#include <catch2/catch.hpp>
#include <cmath>
#include <cstdint>
#include <vector>

#include "moeref/ops/gshard_capacity.hpp"
#include "moeref/ops/jax_softmax.hpp"
#include "moeref/ops/tf_softmax.hpp"
#include "moeref/ops/top_k.hpp"

namespace ops = moeref::ops;

namespace {

std::vector<int32_t> tf_top_k(const std::vector<float>& values, int64_t k) {
  std::vector<int32_t> out(static_cast<size_t>(k));
  ops::tf_top_k_indices(values.data(), static_cast<int64_t>(values.size()), k, out.data());
  return out;
}

std::vector<int32_t> praxis_top_k(const std::vector<float>& values, int64_t k) {
  const int64_t n = static_cast<int64_t>(values.size());
  std::vector<int32_t> out(static_cast<size_t>(ops::praxis_top_k_count(n, k)));
  ops::praxis_top_k_indices(values.data(), n, k, out.data());
  return out;
}

}  // namespace

TEST_CASE("tf.math.top_k selects lower indices among ties at the cut", "[ops][top_k][lingvo]") {
  // tensorflow/core/kernels/topk_op.cc, stable_comp: larger value first, then lower index.
  // values: index 1 is the maximum; indices 0, 2, 3 tie at 0.5; index 4 is smallest.
  const std::vector<float> values = {0.5f, 0.9f, 0.5f, 0.5f, 0.1f};
  CHECK(tf_top_k(values, 1) == std::vector<int32_t>{1});
  CHECK(tf_top_k(values, 2) == std::vector<int32_t>{1, 0});     // the tie at the cut goes to index 0
  CHECK(tf_top_k(values, 3) == std::vector<int32_t>{1, 0, 2});  // then index 2, not 3
  CHECK(tf_top_k(values, 5) == std::vector<int32_t>{1, 0, 2, 3, 4});
  CHECK(tf_top_k(values, 0).empty());
  // -0.0 and +0.0 compare equal, so the lower index wins.
  CHECK(tf_top_k({0.0f, -0.0f, 0.0f}, 1) == std::vector<int32_t>{0});
}

TEST_CASE("praxis top_k keeps the last k of a stable ascending sort", "[ops][top_k][praxis]") {
  // praxis/gshard_utils.py top_k: lax.sort_key_val (stable, ascending), then [..., -k:].
  // Sorted ascending with ties in index order: 0.1(4), 0.5(0), 0.5(2), 0.5(3), 0.9(1).
  const std::vector<float> values = {0.5f, 0.9f, 0.5f, 0.5f, 0.1f};
  CHECK(praxis_top_k(values, 1) == std::vector<int32_t>{1});
  CHECK(praxis_top_k(values, 2) == std::vector<int32_t>{3, 1});     // the tie at the cut goes to index 3
  CHECK(praxis_top_k(values, 3) == std::vector<int32_t>{2, 3, 1});  // ascending output: slot 0 is the smallest
  CHECK(praxis_top_k(values, 5) == std::vector<int32_t>{4, 0, 2, 3, 1});
  // Python slicing: k > n returns all n; k == 0 is [-0:] == [0:], which also returns all n.
  CHECK(ops::praxis_top_k_count(5, 7) == 5);
  CHECK(praxis_top_k(values, 7) == std::vector<int32_t>{4, 0, 2, 3, 1});
  CHECK(ops::praxis_top_k_count(5, 0) == 5);
  CHECK(praxis_top_k(values, 0) == std::vector<int32_t>{4, 0, 2, 3, 1});
  // JAX canonicalises -0.0 to +0.0 before sorting, so these tie and the highest index is last.
  CHECK(praxis_top_k({0.0f, -0.0f, 0.0f}, 1) == std::vector<int32_t>{2});
}

TEST_CASE("TF softmax multiplies by the reciprocal and JAX softmax divides", "[ops][softmax]") {
  // Row [0, -0.5, 0]: t = [1, f32(exp(-0.5)) = 0.6065306663513184, 1], Z = 2.6065306663513184
  // (exact in float32). TF (softmax_op_functor.h): inverse = f32(1 / Z) = 0.3836517333984375, and
  // p1 = f32(0.6065306663513184 * 0.3836517333984375) = 0.2326965481042862 (bits 0x3e6e4801).
  // JAX (_softmax): p1 = f32(0.6065306663513184 / 2.6065306663513184) = 0.232696533203125 (0x3e6e4800).
  const float logits[3] = {0.0f, -0.5f, 0.0f};
  float tf[3], jax[3];
  ops::tf_softmax(logits, tf, 1, 3);
  ops::jax_softmax(logits, jax, 1, 3);
  CHECK(tf[1] == 0.2326965481042862f);
  CHECK(jax[1] == 0.232696533203125f);
  CHECK(tf[0] == 0.3836517333984375f);
  CHECK(jax[0] == 0.3836517333984375f);
  // Equal logits give bitwise-equal probabilities in both flavours (the basis of the tie tests).
  const float equal[4] = {0.25f, 0.25f, 0.25f, 0.25f};
  float p[4];
  ops::tf_softmax(equal, p, 1, 4);
  CHECK((p[0] == 0.25f && p[1] == 0.25f && p[2] == 0.25f && p[3] == 0.25f));
}

TEST_CASE("lingvo capacity rule: 0 -> 4 floor and round up to 4 only when raised", "[ops][capacity][lingvo]") {
  // lingvo TokenShufflingOnlogitsV2: if capacity_factor: auto = int(S*cf/E); 0 -> 4; if C0 < auto: roundup4(auto).
  CHECK(ops::lingvo_token_shuffling_capacity(8, 4, 0, 1.0).expert_capacity == 4);           // auto 2, raised to 2 -> 4
  CHECK(ops::lingvo_token_shuffling_capacity(8, 4, 3, std::nullopt).expert_capacity == 3);  // no factor: C0
  CHECK(ops::lingvo_token_shuffling_capacity(8, 4, 3, 0.0).expert_capacity == 3);  // 0.0 is falsy: rule skipped
  CHECK_FALSE(ops::lingvo_token_shuffling_capacity(8, 4, 3, 0.0).rule_applied);
  CHECK(ops::lingvo_token_shuffling_capacity(4, 8, 0, 1.0).expert_capacity == 4);   // auto int(0.5) = 0 -> 4
  CHECK(ops::lingvo_token_shuffling_capacity(8, 2, 5, 1.0).expert_capacity == 5);   // auto 4 <= C0 5: C0, not rounded
  CHECK(ops::lingvo_token_shuffling_capacity(12, 2, 1, 1.0).expert_capacity == 8);  // auto 6 -> 8
  // Python double: 100 * 0.29 = 28.999999999999996, int() -> 28, rounded up to 28.
  CHECK(ops::lingvo_token_shuffling_capacity(100, 1, 0, 0.29).auto_expert_capacity == 28);
}

TEST_CASE("praxis expert-choice capacity rule: no floor and `is not None`", "[ops][capacity][praxis]") {
  // praxis expert_choice_gating_on_logits_v2: if capacity_factor is not None: auto = int(S*cf/E);
  // if C0 < auto: ((auto + 3) // 4) * 4.
  CHECK(ops::praxis_expert_choice_capacity(8, 4, 0, 2.0).expert_capacity == 4);  // layer defaults: auto 4
  CHECK(ops::praxis_expert_choice_capacity(4, 8, 0, 1.0).expert_capacity == 0);  // auto 0: no floor, C = 0
  CHECK(ops::praxis_expert_choice_capacity(8, 4, 3, 0.0).rule_applied);          // 0.0 is not None
  CHECK(ops::praxis_expert_choice_capacity(8, 4, 3, 0.0).expert_capacity == 3);
  CHECK(ops::praxis_expert_choice_capacity(12, 2, 1, 1.0).expert_capacity == 8);  // auto 6 -> 8
  CHECK(ops::praxis_expert_choice_capacity(8, 4, 6, std::nullopt).expert_capacity == 6);
}
