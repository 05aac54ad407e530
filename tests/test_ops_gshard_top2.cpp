// The ops of GShard top-2 gating that lingvo_top2 and praxis_top2 share
// (src/ops/gshard_*): the queue into an expert's capacity, the over-capacity
// summary, the random policy, the combine tensor, and the per-token scaling the
// sources write as x *= expand_dims(cast(f, x.dtype), -1). Expected values are
// derived by hand in the comments.
#include <catch2/catch.hpp>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "moeref/frame/forced_choice.hpp"
#include "moeref/ops/dispatch_tensor.hpp"
#include "moeref/ops/elementwise.hpp"
#include "moeref/ops/gshard_balance_loss.hpp"
#include "moeref/ops/gshard_combine.hpp"
#include "moeref/ops/gshard_over_capacity.hpp"
#include "moeref/ops/gshard_position_in_expert.hpp"
#include "moeref/ops/gshard_random_policy.hpp"
#include "moeref/ops/gshard_sampling.hpp"
#include "moeref/ops/one_hot.hpp"

namespace ops = moeref::ops;
using moeref::Tensor;

namespace {

Tensor ints(std::vector<std::string> dims, std::vector<int64_t> shape, std::vector<int32_t> values) {
  Tensor t = Tensor::int32(std::move(dims), std::move(shape));
  t.i32.assign(values.begin(), values.end());
  return t;
}

Tensor floats(std::vector<std::string> dims, std::vector<int64_t> shape, std::vector<float> values) {
  Tensor t = Tensor::float32(std::move(dims), std::move(shape));
  t.f32.assign(values.begin(), values.end());
  return t;
}

}  // namespace

TEST_CASE("gshard positions: the exclusive cumsum is not multiplied by the mask, a dropped choice sits at 0",
          "[ops][gshard][top2]") {
  // One group of four tokens over two experts; first choices e0, e0, e1, e0.
  const Tensor index = ints({"G", "S"}, {1, 4}, {0, 0, 1, 0});
  const Tensor mask = ops::one_hot(index, 2, "E");
  // cumsum(mask, exclusive=True, axis=-2): e0 column 0, 1, 2, 2; e1 column 0, 0, 0, 1.
  // Token 2 chose e1 but holds e0's running count 2: lingvo and praxis do not mask it (mtf does).
  const Tensor position = ops::gshard_position_in_expert(mask, nullptr);
  CHECK(position.i32 == std::vector<int32_t>{0, 0, 1, 0, 2, 0, 2, 1});
  // With C = 2 the fourth token (e0, position 2) is dropped; its flat position is then 0.
  const Tensor kept = ops::gshard_within_capacity(mask, position, 2);
  CHECK(kept.i32 == std::vector<int32_t>{1, 0, 1, 0, 0, 1, 0, 0});
  CHECK(ops::gshard_flat_position(position, kept).i32 == std::vector<int32_t>{0, 1, 0, 0});
  const Tensor count = ops::gshard_expert_count(kept);  // e0 kept 2, e1 kept 1
  CHECK(count.i32 == std::vector<int32_t>{2, 1});
  // Second choices queue behind the kept first choices: + expand_dims(mask_1_count, -2).
  CHECK(ops::gshard_position_in_expert(mask, &count).i32 == std::vector<int32_t>{2, 1, 3, 1, 4, 1, 4, 2});
}

TEST_CASE("gshard over capacity: entries with mask * position >= C, over the mask's sum", "[ops][gshard][top2]") {
  const Tensor mask = ints({"G", "S", "E"}, {1, 4, 2}, {1, 0, 1, 0, 0, 1, 1, 0});
  const Tensor position = ints({"G", "S", "E"}, {1, 4, 2}, {0, 0, 1, 0, 2, 0, 2, 1});
  // C = 2: only token 3's (e0, position 2) entry counts; 1 / max(1, 4).
  const ops::GshardOverCapacity over = ops::gshard_over_capacity(mask, position, 2);
  CHECK(over.count == 1);
  CHECK(over.ratio == 0.25f);
  // C = 0: 0 >= 0 holds at every (g, s, e), masked or not: 8 / 4, a "ratio" of E.
  const ops::GshardOverCapacity zero = ops::gshard_over_capacity(mask, position, 0);
  CHECK(zero.count == 8);
  CHECK(zero.ratio == 2.0f);
}

TEST_CASE("scale_by casts the factor to the values' dtype: int32 truncates, float32 keeps the fraction",
          "[ops][gshard][top2]") {
  // mask_1 *= nonpaddings.astype(int32), density_1_proxy *= nonpaddings, with nonpaddings = 1 - paddings.
  const Tensor nonpaddings = ops::one_minus(floats({"G", "S"}, {1, 2}, {0.0f, 0.5f}));
  CHECK(nonpaddings.f32 == std::vector<float>{1.0f, 0.5f});
  const Tensor mask = ints({"G", "S", "E"}, {1, 2, 2}, {1, 0, 0, 1});
  CHECK(ops::scale_by(mask, nonpaddings).i32 == std::vector<int32_t>{1, 0, 0, 0});
  const Tensor gates = floats({"G", "S", "E"}, {1, 2, 2}, {0.75f, 0.25f, 0.5f, 0.5f});
  CHECK(ops::scale_by(gates, nonpaddings).f32 == std::vector<float>{0.75f, 0.25f, 0.25f, 0.25f});
  // A 0/1 int32 factor of the same shape: gate_1 *= mask_1_flat.
  const Tensor gate = floats({"G", "S"}, {1, 2}, {0.75f, 0.5f});
  CHECK(ops::scale_by(gate, ints({"G", "S"}, {1, 2}, {1, 0})).f32 == std::vector<float>{0.75f, 0.0f});
}

TEST_CASE("gshard random policy: U < gate_2 / f32(max(t, 1e-9)) is strict", "[ops][gshard][top2]") {
  const Tensor gate_2 = floats({"G", "S"}, {1, 3}, {0.25f, 0.25f, 0.0f});
  // t = 0.5: the bound is 0.5; U = 0.5 is not below it. t = 0 divides by f32(1e-9); gate 0 is never kept.
  const Tensor uniform = floats({"G", "S"}, {1, 3}, {0.49f, 0.5f, 0.0f});
  CHECK(ops::gshard_sampled_2(uniform, gate_2, 0.5).i32 == std::vector<int32_t>{1, 0, 0});
  CHECK(ops::gshard_sampled_2(uniform, gate_2, 0.0).i32 == std::vector<int32_t>{1, 1, 0});
  CHECK(ops::gshard_random_divisor(0.0) == 1e-9f);
  // The checker's forced keep (-1: as the reference) applies where the source decides.
  const Tensor forced = ints({"G", "S"}, {1, 3}, {0, -1, 1});
  CHECK(moeref::with_forced_keep(ops::gshard_sampled_2(uniform, gate_2, 0.5), &forced).i32 ==
        std::vector<int32_t>{0, 0, 1});
}

TEST_CASE("gshard combine: a dropped choice adds 0 to slot 0, a kept zero weight is not dispatched",
          "[ops][gshard][top2]") {
  // Two tokens, E = 2, C = 2. Token 0: e0 at slot 1 with 0.75, second choice e1 dropped
  // (mask_2_flat 0, position 0). Token 1: e1 at slot 0 with 1, second choice e0 at slot 0 with weight 0.
  const Tensor gate_1 = floats({"G", "S"}, {1, 2}, {0.75f, 1.0f});
  const Tensor gate_2 = floats({"G", "S"}, {1, 2}, {0.25f, 0.0f});
  const Tensor flat_1 = ints({"G", "S"}, {1, 2}, {1, 1}), flat_2 = ints({"G", "S"}, {1, 2}, {0, 1});
  const Tensor index_1 = ints({"G", "S"}, {1, 2}, {0, 1}), index_2 = ints({"G", "S"}, {1, 2}, {1, 0});
  const Tensor position_1 = ints({"G", "S"}, {1, 2}, {1, 0}), position_2 = ints({"G", "S"}, {1, 2}, {0, 0});
  const Tensor combine =
      ops::gshard_combine_tensor({gate_1, flat_1, index_1, position_1}, {gate_2, flat_2, index_2, position_2}, 2, 2);
  // [s][e][c]
  CHECK(combine.f32 == std::vector<float>{0.0f, 0.75f, 0.0f, 0.0f, 0.0f, 0.0f, 1.0f, 0.0f});
  CHECK(ops::dispatch_from_combine(combine).i32 == std::vector<int32_t>{0, 1, 0, 0, 0, 0, 1, 0});
}

TEST_CASE("gshard densities: reduce_mean over S, divided by density_denom when not legacy", "[ops][gshard][top2]") {
  const Tensor mask = ints({"G", "S", "E"}, {1, 4, 2}, {1, 0, 1, 0, 0, 1, 0, 0});  // token 3 padded
  const Tensor importance = floats({"G", "S"}, {1, 4}, {1.0f, 1.0f, 1.0f, 0.0f});
  const Tensor denom = ops::gshard_density_denom(importance);  // 3 / 4 + f32(1e-6)
  CHECK(denom.f32[0] == 0.75f + 1e-6f);
  CHECK(ops::gshard_density(mask, nullptr).f32 == std::vector<float>{0.5f, 0.25f});
  CHECK(ops::gshard_density(mask, &denom).f32 == std::vector<float>{0.5f / denom.f32[0], 0.25f / denom.f32[0]});
  // aux_loss = mean(proxy * density) * E * E = ((0.5 * 0.5 + 0.25 * 0.25) / 2) * 4.
  const Tensor density = floats({"G", "E"}, {1, 2}, {0.5f, 0.25f});
  CHECK(ops::gshard_aux_loss(density, density) == 0.625f);
}

TEST_CASE("gshard sampling: the first choice's logit becomes -0.7 * float32 max", "[ops][gshard][top2]") {
  CHECK(ops::gshard_very_negative_logit() == std::numeric_limits<float>::max() * -0.7f);
  CHECK(ops::gshard_very_negative_logit() == -2.3819763e38f);
  const Tensor logits = floats({"G", "S", "E"}, {1, 1, 3}, {2.0f, 1.0f, 0.0f});
  const Tensor mask_1 = ints({"G", "S", "E"}, {1, 1, 3}, {1, 0, 0});
  CHECK(ops::gshard_updated_logits(logits, mask_1).f32 ==
        std::vector<float>{ops::gshard_very_negative_logit(), 1.0f, 0.0f});
}
