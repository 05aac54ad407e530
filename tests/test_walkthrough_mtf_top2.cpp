// The walkthrough spec/walkthroughs/mtf_top2_small.md, as a test.
//
// The walkthrough routes six tokens (t0..t5) to three experts (e0, e1, e2) with
// Mesh TensorFlow's top-2 gating (tensorflow/mesh, mesh_tensorflow/transformer/moe.py,
// _top_2_gating) and prints every intermediate. This test runs the same config and
// checks each decision and gate that the page states, so that a change to moeref
// or to the config that alters a number on the page fails here first.
//
// Reading guide: each block below matches one step of the walkthrough, in the same
// order. Integer tensors (indices, masks, positions) are compared exactly; float
// gates within 1e-6 of the value the page prints. The comments derive the values by
// hand where that is feasible.
#include <cmath>
#include <string>
#include <vector>

#include "test_support.hpp"

using moeref::testing::loss;
using moeref::testing::step;

namespace {

// Flat row-major offsets into the walkthrough's tensors: G = 1, S = 6, E = 3, C = 2.
constexpr int kE = 3;
constexpr int kC = 2;
size_t se(int s, int e) { return static_cast<size_t>(s * kE + e); }
size_t sec(int s, int e, int c) { return static_cast<size_t>((s * kE + e) * kC + c); }

// A float32 value printed on the walkthrough page, checked to 1e-6.
void check_near(float actual, double printed, const std::string& what) {
  INFO(what << ": actual " << actual << ", walkthrough prints " << printed);
  CHECK(std::fabs(static_cast<double>(actual) - printed) <= 1e-6);
}

void check_all_near(const moeref::Tensor& tensor, const std::vector<double>& printed, const std::string& what) {
  REQUIRE(tensor.f32.size() == printed.size());
  for (size_t i = 0; i < printed.size(); ++i)
    check_near(tensor.f32[i], printed[i], what + tensor.named_index(static_cast<int64_t>(i)));
}

}  // namespace

TEST_CASE("walkthrough mtf_top2_small: six tokens routed to three experts with two slots each",
          "[walkthrough][mtf_top2]") {
  const std::string path = std::string(MOEREF_SOURCE_DIR) + "/spec/walkthroughs/mtf_top2_small.config.json";
  moeref::Config config = moeref::load_config_file(path);
  REQUIRE(config.train);
  const moeref::Trace trace = moeref::run_config(config);

  // ---- Step 0: capacity ----------------------------------------------------------
  // C = max(min(S, int(S * capacity_factor_train / E)), min_expert_capacity)
  //   = max(min(6, int(6 * 1.0 / 3)), 1) = max(2, 1) = 2 slots per expert.
  CHECK(trace.capacity.at("expert_capacity").get<int64_t>() == 2);
  CHECK(step(trace, "combine_tensor").shape == std::vector<int64_t>{1, 6, kE, kC});

  // ---- Step 2: raw_gates ---------------------------------------------------------
  // Each logit is ln(p) for the probability p we want, and each row of p sums to 1,
  // so the softmax returns p (to float32 rounding).
  check_all_near(step(trace, "raw_gates"),
                 {0.6, 0.3, 0.1,    // t0
                  0.25, 0.7, 0.05,  // t1
                  0.8, 0.05, 0.15,  // t2
                  0.2, 0.5, 0.3,    // t3 (padding)
                  0.85, 0.05, 0.1,  // t4
                  0.1, 0.2, 0.7},   // t5
                 "raw_gates");

  // ---- Step 3: first choice ------------------------------------------------------
  // The largest probability in each row. t0, t2 and t4 all pick e0, which has only
  // two slots: the overflow is decided in step 9.
  CHECK(step(trace, "index_1").i32 == std::vector<int32_t>{0, 1, 0, 1, 0, 2});
  check_all_near(step(trace, "gate_1"), {0.6, 0.7, 0.8, 0.5, 0.85, 0.7}, "gate_1");

  // ---- Step 4: importance --------------------------------------------------------
  // Only importance == 1 keeps a first choice: t3 (importance 0) loses its mask row,
  // its first gate, and its share of the balancing proxy.
  const moeref::Tensor& mask_1_important = step(trace, "mask_1_important");
  for (int e = 0; e < kE; ++e) CHECK(mask_1_important.i32[se(3, e)] == 0);
  CHECK(mask_1_important.i32[se(0, 0)] == 1);
  CHECK(step(trace, "gate_1_important").f32[3] == 0.0f);

  // ---- Step 5: second choice -----------------------------------------------------
  // The best expert after removing the first one. t3's first choice was masked, so
  // its "second" is its favourite, e1 (gate_2 = 0.5); then mask_2 is zeroed for
  // importance <= 0, so padding gets no second choice either.
  CHECK(step(trace, "index_2").i32 == std::vector<int32_t>{1, 0, 2, 1, 2, 1});
  check_all_near(step(trace, "gate_2"), {0.3, 0.25, 0.15, 0.5, 0.1, 0.2}, "gate_2");
  const moeref::Tensor& mask_2_important = step(trace, "mask_2_important");
  for (int e = 0; e < kE; ++e) CHECK(mask_2_important.i32[se(3, e)] == 0);

  // ---- Step 6: renormalisation ---------------------------------------------------
  // g1 / (g1 + g2), g2 / (g1 + g2) (the 1e-9 is invisible at float32 precision):
  //   t0: 0.6/0.9 = 2/3,    0.3/0.9 = 1/3
  //   t1: 0.7/0.95 = 14/19, 0.25/0.95 = 5/19
  //   t2: 0.8/0.95 = 16/19, 0.15/0.95 = 3/19
  //   t3: 0/0.5 = 0,        0.5/0.5 = 1      (padding: gate_1 was masked to 0)
  //   t4: 0.85/0.95 = 17/19, 0.1/0.95 = 2/19
  //   t5: 0.7/0.9 = 7/9,    0.2/0.9 = 2/9
  // The page prints the float32 results; 0.66666675 rather than 0.6666667 because mtf
  // multiplies by the reciprocal of denom instead of dividing.
  const std::vector<double> gate_1_normalized = {0.66666675, 0.7368421, 0.8421053, 0.0, 0.8947368, 0.7777778};
  const std::vector<double> gate_2_normalized = {0.33333334, 0.2631579, 0.15789473, 1.0, 0.10526316, 0.22222222};
  check_all_near(step(trace, "gate_1_normalized"), gate_1_normalized, "gate_1_normalized");
  check_all_near(step(trace, "gate_2_normalized"), gate_2_normalized, "gate_2_normalized");
  const std::vector<double> by_hand_1 = {2.0 / 3, 14.0 / 19, 16.0 / 19, 0.0, 17.0 / 19, 7.0 / 9};
  const std::vector<double> by_hand_2 = {1.0 / 3, 5.0 / 19, 3.0 / 19, 1.0, 2.0 / 19, 2.0 / 9};
  for (size_t s = 0; s < 6; ++s) {
    // The hand fractions agree with the printed float32 values to a few ulps.
    CHECK(std::fabs(gate_1_normalized[s] - by_hand_1[s]) <= 1e-6);
    CHECK(std::fabs(gate_2_normalized[s] - by_hand_2[s]) <= 1e-6);
  }

  // ---- Step 7: balancing loss ----------------------------------------------------
  // density_1: first choices per expert before capacity, over all 6 positions:
  //   e0: t0, t2, t4 -> 3/6; e1: t1 -> 1/6; e2: t5 -> 1/6 (t3 is padding).
  check_all_near(step(trace, "density_1"), {0.5, 1.0 / 6, 1.0 / 6}, "density_1");
  // density_1_proxy: mean router probability per expert, padding row zeroed:
  //   e0: (0.6 + 0.25 + 0.8 + 0 + 0.85 + 0.1) / 6 = 2.6 / 6
  //   e1: (0.3 + 0.7 + 0.05 + 0 + 0.05 + 0.2) / 6 = 1.3 / 6
  //   e2: (0.1 + 0.05 + 0.15 + 0 + 0.1 + 0.7) / 6 = 1.1 / 6
  check_all_near(step(trace, "density_1_proxy"), {2.6 / 6, 1.3 / 6, 1.1 / 6}, "density_1_proxy");
  // loss = mean_e(density_1 * proxy) * E^2
  //      = (0.5 * 2.6/6 + 1/6 * 1.3/6 + 1/6 * 1.1/6) / 3 * 9 = 0.85; times loss_coef 0.01.
  check_near(loss(trace, "gating_loss"), 0.85, "gating_loss");
  check_near(loss(trace, "loss"), 0.0085, "loss");

  // ---- Step 8: random second-expert policy ---------------------------------------
  // Keep the second expert when U < gate_2_normalized / 0.2 = gate_2_normalized * 5:
  //   t0: 0.95 < 1.67 keep   t1: 0.25 < 1.32 keep   t2: 0.9 < 0.79? NO -> dropped
  //   t3: 0.6 < 5 keep (no effect: padding)   t4: 0.4 < 0.53 keep   t5: 0.7 < 1.11 keep
  CHECK(step(trace, "second_policy_keep").i32 == std::vector<int32_t>{1, 1, 0, 1, 1, 1});
  const moeref::Tensor& mask_2_policy = step(trace, "mask_2_policy");
  for (int e = 0; e < kE; ++e) {
    CHECK(mask_2_policy.i32[se(2, e)] == 0);  // t2: dropped by its draw
    CHECK(mask_2_policy.i32[se(3, e)] == 0);  // t3: padding
  }
  CHECK(mask_2_policy.i32[se(4, 2)] == 1);  // t4 keeps e2 with only a 53 % chance

  // ---- Step 9: positions and capacity, first choices -----------------------------
  // Position = how many earlier tokens chose the same expert first. e0 receives
  // t0 (0), t2 (1), t4 (2); position 2 is not below C = 2, so t4's first choice is
  // dropped. The flat position keeps the pre-drop 2 for t4.
  CHECK(step(trace, "position_in_expert_1_flat").i32 == std::vector<int32_t>{0, 0, 1, 0, 2, 0});
  CHECK(step(trace, "mask_1_flat").i32 == std::vector<int32_t>{1, 1, 1, 0, 0, 1});
  CHECK(step(trace, "mask_1_count").i32 == std::vector<int32_t>{2, 1, 1});  // kept first choices per expert
  check_all_near(step(trace, "gate_1_capacity"), {0.66666675, 0.7368421, 0.8421053, 0.0, 0.0, 0.7777778},
                 "gate_1_capacity");

  // ---- Step 9: positions and capacity, second choices ----------------------------
  // Position = mask_1_count of the expert + earlier kept second choices to it:
  //   t0 -> e1: 1 + 0 = 1, fits (behind t1's FIRST choice, although t0 comes first)
  //   t1 -> e0: 2 + 0 = 2, dropped: e0 is full with t0 and t2
  //   t4 -> e2: 1 + 0 = 1, fits (the slot t2 would have taken had its draw kept it)
  //   t5 -> e1: 1 + 1 = 2, dropped: e1 holds t1 (first) and t0 (second)
  CHECK(step(trace, "position_in_expert_2_flat").i32 == std::vector<int32_t>{1, 2, 0, 0, 1, 2});
  CHECK(step(trace, "mask_2_flat").i32 == std::vector<int32_t>{1, 0, 0, 0, 1, 0});
  const moeref::Tensor& gate_1_capacity = step(trace, "gate_1_capacity");
  const moeref::Tensor& gate_2_capacity = step(trace, "gate_2_capacity");
  check_all_near(gate_2_capacity, {0.33333334, 0.0, 0.0, 0.0, 0.10526316, 0.0}, "gate_2_capacity");
  // Gates are not renormalised after a drop: a token that lost its second expert
  // keeps a first gate below 1 (t1, t2, t5).
  for (size_t s : {size_t{1}, size_t{2}, size_t{5}}) {
    CHECK(gate_2_capacity.f32[s] == 0.0f);
    CHECK(gate_1_capacity.f32[s] < 1.0f);
  }

  // ---- Step 10: combine and dispatch ---------------------------------------------
  // Who sits where:  e0: t0 (first), t2 (first)   e1: t1 (first), t0 (second)
  //                  e2: t5 (first), t4 (second)
  struct Seat {
    int token, expert, slot;
    double weight;
  };
  const std::vector<Seat> seats = {{0, 0, 0, 0.66666675}, {2, 0, 1, 0.8421053}, {1, 1, 0, 0.7368421},
                                   {0, 1, 1, 0.33333334}, {5, 2, 0, 0.7777778}, {4, 2, 1, 0.10526316}};
  std::vector<int32_t> expected_dispatch(static_cast<size_t>(6 * kE * kC), 0);
  std::vector<double> expected_combine(expected_dispatch.size(), 0.0);
  for (const Seat& seat : seats) {
    expected_dispatch[sec(seat.token, seat.expert, seat.slot)] = 1;
    expected_combine[sec(seat.token, seat.expert, seat.slot)] = seat.weight;
  }
  CHECK(step(trace, "dispatch_tensor").i32 == expected_dispatch);
  check_all_near(step(trace, "combine_tensor"), expected_combine, "combine_tensor");

  // ---- What changes in eval ------------------------------------------------------
  // train = false reads capacity_factor_eval = 2.0: C = int(6 * 2.0 / 3) = 4. With the
  // same draws, every first choice fits (t4 at position 2), t1's and t5's second
  // choices fit too, and only t2's second choice is lost (to its draw). The loss is
  // computed before capacity and policy, so it does not change.
  moeref::Config eval_config = config;
  eval_config.train = false;
  const moeref::Trace eval_trace = moeref::run_config(eval_config);
  CHECK(eval_trace.capacity.at("expert_capacity").get<int64_t>() == 4);
  CHECK(step(eval_trace, "mask_1_flat").i32 == std::vector<int32_t>{1, 1, 1, 0, 1, 1});
  CHECK(step(eval_trace, "position_in_expert_2_flat").i32 == std::vector<int32_t>{1, 3, 0, 0, 1, 2});
  CHECK(step(eval_trace, "mask_2_flat").i32 == std::vector<int32_t>{1, 1, 0, 0, 1, 1});
  check_near(step(eval_trace, "gate_1_capacity").f32[4], 0.8947368, "eval gate_1_capacity[t4]");
  check_near(loss(eval_trace, "gating_loss"), 0.85, "eval gating_loss");

  // second_policy_eval = "threshold": keep when gate_2_normalized > 0.2, no draw (the
  // unused draw must be removed from the inputs). t2 (0.158) and t4 (0.105) lose
  // their second expert; t0, t1 and t5 keep it.
  moeref::Config threshold_config = eval_config;
  threshold_config.hparams["second_policy_eval"] = "threshold";
  threshold_config.inputs.erase("second_policy_uniform");
  const moeref::Trace threshold_trace = moeref::run_config(threshold_config);
  CHECK(step(threshold_trace, "mask_2_flat").i32 == std::vector<int32_t>{1, 1, 0, 0, 0, 1});
}
