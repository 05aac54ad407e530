// The rows of spec/variants/mtf_gating_differences.md: for each difference among
// Mesh TensorFlow's five gating functions (tensorflow/mesh,
// mesh_tensorflow/transformer/moe.py at da90793: _top_2_gating, _switch_gating,
// _switch_max_gating, _ntlb_gating, _expert_selection_gating), two variants run
// on the same input and give the different answers the row states.
//
// Dims: G groups, S group size, E experts, C expert capacity, K ranks.
// The worked input: G = 1, S = 4, E = 2, C = 2, probabilities t0 (0.6, 0.4),
// t1 (0.9, 0.1), t2 (0.7, 0.3), t3 (0.2, 0.8).
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "moeref/error.hpp"
#include "mtf_switch_test_helpers.hpp"
#include "test_support.hpp"

using namespace moeref::testing::mtf;

namespace {

const std::vector<float> kLogits = log_probs({{0.6, 0.4}, {0.9, 0.1}, {0.7, 0.3}, {0.2, 0.8}});

// Evaluation with C = 2 and each variant's deterministic policy.
json eval_hparams(const std::string& variant) {
  json hp = {{"expert_capacity", 2}};
  if (variant == "mtf_top2") {
    hp["second_policy_eval"] = "all";
  } else {
    hp["switch_policy_eval"] = "argmax";
  }
  if (variant == "mtf_ntlb") hp["ntlb_top_k"] = 2;
  return hp;
}

// Training with C = 2 and each variant's unperturbed policy.
json train_hparams(const std::string& variant) {
  json hp = {{"expert_capacity", 2}};
  if (variant == "mtf_top2") {
    hp["second_policy_train"] = "all";
  } else {
    hp["switch_policy_train"] = "argmax";
  }
  return hp;
}

// The worked input run by `variant` (importance all ones unless given).
Trace worked(const std::string& variant, const std::vector<float>& importance = ones(4)) {
  return run_json(variant_config(variant, 1, 4, 2, kLogits, eval_hparams(variant), false, importance));
}

// Dispatched slots of expert e in group 0.
int dispatched_at(const Trace& trace, int64_t e) {
  const Tensor& dispatch = step(trace, "dispatch_tensor");
  int count = 0;
  for (int64_t s = 0; s < dispatch.shape[1]; ++s) {
    for (int64_t c = 0; c < dispatch.shape[3]; ++c) count += i_at(dispatch, {0, s, e, c});
  }
  return count;
}

// Dispatched slots of token s in group 0.
int slots_of(const Trace& trace, int64_t s) {
  const Tensor& dispatch = step(trace, "dispatch_tensor");
  int count = 0;
  for (int64_t e = 0; e < dispatch.shape[2]; ++e) {
    for (int64_t c = 0; c < dispatch.shape[3]; ++c) count += i_at(dispatch, {0, s, e, c});
  }
  return count;
}

}  // namespace

TEST_CASE("mtf differences 1, who chooses: expert_selection fills every expert, switch follows the tokens",
          "[mtf_gating_differences]") {
  // switch: expert 1 gets only t3. expert_selection: expert 1 takes its 2 best tokens (t3, t0).
  CHECK(dispatched_at(worked("mtf_switch"), 1) == 1);
  CHECK(dispatched_at(worked("mtf_expert_selection"), 1) == 2);
}

TEST_CASE("mtf differences 2, experts per token: top_2 gives t0 two experts, switch one", "[mtf_gating_differences]") {
  CHECK(slots_of(worked("mtf_top2"), 0) == 2);  // e0 first choice, e1 second choice (slot 1)
  CHECK(slots_of(worked("mtf_switch"), 0) == 1);
}

TEST_CASE("mtf differences 3, softmax axis: over E for switch, over S for expert_selection",
          "[mtf_gating_differences]") {
  const Trace top1 = worked("mtf_switch");
  const Trace selection = worked("mtf_expert_selection");
  const Tensor& over_e = step(top1, "raw_gates");
  const Tensor& over_s = step(selection, "raw_gates");
  CHECK(f_at(over_e, {0, 1, 0}) + f_at(over_e, {0, 1, 1}) == Approx(1.0).epsilon(1e-6));
  double column = 0.0;
  for (int64_t s = 0; s < 4; ++s) column += f_at(over_s, {0, s, 0});
  CHECK(column == Approx(1.0).epsilon(1e-6));
  // t1 at expert 0: 0.9 over the experts, 0.9 / 2.4 = 0.375 over the tokens.
  CHECK(f_at(over_e, {0, 1, 0}) == Approx(0.9).epsilon(1e-6));
  CHECK(f_at(over_s, {0, 1, 0}) == Approx(0.375).epsilon(1e-6));
}

TEST_CASE("mtf differences 4, combine weight: top_2 renormalises over its two gates, switch does not",
          "[mtf_gating_differences]") {
  // E = 3, one token with p = (0.5, 0.3, 0.2); top_2 without a second expert keeps
  // 0.5 * reciprocal(0.5 + 0.3 + 1e-9) = 0.625; switch keeps 0.5.
  const std::vector<float> logits = log_probs({{0.5, 0.3, 0.2}});
  const Trace top2 = run_json(variant_config("mtf_top2", 1, 1, 3, logits, {{"second_policy_eval", "none"}}, false));
  const Trace top1 = run_json(variant_config("mtf_switch", 1, 1, 3, logits, {{"switch_policy_eval", "argmax"}}, false));
  check_token_slots(top2, 0, 0, {{0, 0, 0.625}});
  check_token_slots(top1, 0, 0, {{0, 0, 0.5}});
}

TEST_CASE("mtf differences 5, overflow: switch drops the last token, switch_max the least confident, ntlb moves it",
          "[mtf_gating_differences]") {
  const Trace top1 = worked("mtf_switch");
  const Trace max = worked("mtf_switch_max");
  const Trace ntlb = worked("mtf_ntlb");
  // Expert 0 is chosen by t0 (0.6), t1 (0.9), t2 (0.7) and has 2 slots.
  CHECK(slots_of(top1, 0) == 1);
  CHECK(slots_of(top1, 2) == 0);
  CHECK(slots_of(max, 0) == 0);
  CHECK(slots_of(max, 2) == 1);
  check_token_slots(ntlb, 0, 2, {{1, 1, 0.3}});
}

TEST_CASE("mtf differences 6, slot order: token order for switch, descending gate for switch_max",
          "[mtf_gating_differences]") {
  // t1 (0.9) is expert 0's second token in token order but its most confident.
  check_token_slots(worked("mtf_switch"), 0, 1, {{0, 1, 0.9}});
  check_token_slots(worked("mtf_switch_max"), 0, 1, {{0, 0, 0.9}});
}

TEST_CASE("mtf differences 7, second chance: ntlb places t2 at expert 1, top_2's second choice queues too late",
          "[mtf_gating_differences]") {
  // top_2: t2's second choice (expert 1) queues after expert 1's first choice t3 and the second
  // choices of t0 and t1: position 3 >= C. ntlb: t2's rank 1 comes after rank 0 only: slot 1.
  const Trace top2 = worked("mtf_top2");
  CHECK(i_at(step(top2, "position_in_expert_2"), {0, 2, 1}) == 3);
  CHECK(slots_of(top2, 2) == 0);
  check_token_slots(worked("mtf_ntlb"), 0, 2, {{1, 1, 0.3}});
}

TEST_CASE("mtf differences 8, dispatch: expert_selection dispatches a zero-weight pick, switch_max does not",
          "[mtf_gating_differences]") {
  // S = 3, importance (1, 1, 0), C = 3: both fill expert slots with the padded t2 at weight 0.
  const std::vector<float> logits = log_probs({{0.6, 0.4}, {0.3, 0.7}, {0.5, 0.5}});
  const json hp = {{"switch_policy_eval", "argmax"}, {"expert_capacity", 3}};
  const Trace selection = run_json(variant_config("mtf_expert_selection", 1, 3, 2, logits, hp, false, {1, 1, 0}));
  const Trace max = run_json(variant_config("mtf_switch_max", 1, 3, 2, logits, hp, false, {1, 1, 0}));
  CHECK(slots_of(selection, 2) == 2);  // both experts, weight 0
  CHECK(slots_of(max, 2) == 0);
  const Tensor& combine = step(selection, "combine_tensor");
  for (int64_t e = 0; e < 2; ++e) {
    for (int64_t c = 0; c < 3; ++c) CHECK(f_at(combine, {0, 2, e, c}) == 0.0f);
  }
}

TEST_CASE("mtf differences 9, importance in the aux loss: top_2 masks first, switch scales after",
          "[mtf_gating_differences]") {
  // Importance (1, 1, 0, 0). top_2: density_1 = (2/4, 0), proxy = ((0.6 + 0.9)/4, (0.4 + 0.1)/4):
  // 4 * (0.375 * 0.5) / 2 = 0.375. switch: f = (3/4, 1/4), P = (0.6, 0.4) with padding, scaled
  // by 2/4: 4 * (0.6 * 0.75 + 0.4 * 0.25) * 2 / 8 = 0.55.
  const std::vector<float> importance = {1, 1, 0, 0};
  CHECK(loss(worked("mtf_top2", importance), "gating_loss") == Approx(0.375).epsilon(1e-6));
  CHECK(loss(worked("mtf_switch", importance), "gating_loss") == Approx(0.55).epsilon(1e-6));
}

TEST_CASE("mtf differences 10, ranks in the aux loss: ntlb averages all K, switch only the one choice",
          "[mtf_gating_differences]") {
  // switch: 4 * (0.6 * 0.75 + 0.4 * 0.25) / 2 = 1.1. ntlb (K = 2): rank 1 has f = (0.25, 0.75):
  // 4 * (0.45 + 0.1 + 0.15 + 0.3) / 4 = 1.0.
  CHECK(loss(worked("mtf_switch"), "gating_loss") == Approx(1.1).epsilon(1e-6));
  CHECK(loss(worked("mtf_ntlb"), "gating_loss") == Approx(1.0).epsilon(1e-6));
}

TEST_CASE("mtf differences 11, expert_selection's own loss: S * mean(agg^2 * true_group_size)",
          "[mtf_gating_differences]") {
  // agg_s = mean over E of the shares over S: t0 (0.25 + 0.25)/2, t1 (0.375 + 0.0625)/2,
  // t2 (0.7/2.4 + 0.3/1.6)/2, t3 (0.2/2.4 + 0.8/1.6)/2; loss = 4 * sum agg^2.
  double want = 0.0;
  for (double agg : {0.25, (0.375 + 0.0625) / 2, (0.7 / 2.4 + 0.3 / 1.6) / 2, (0.2 / 2.4 + 0.8 / 1.6) / 2}) {
    want += 4 * agg * agg;
  }
  CHECK(loss(worked("mtf_expert_selection"), "gating_loss") == Approx(want).epsilon(1e-5));
  CHECK(loss(worked("mtf_switch"), "gating_loss") == Approx(1.1).epsilon(1e-6));
}

TEST_CASE("mtf differences 12, z-loss: switch adds it, switch_max has none", "[mtf_gating_differences]") {
  // The worked logits plus 1: the same softmax, and logsumexp = log(1) + 1 = 1 for every token,
  // so the z-loss is mean(1^2) = 1 and switch's gating loss gains 0.1 * 1.
  std::vector<float> logits = kLogits;
  for (float& logit : logits) logit += 1.0f;
  json hp = train_hparams("mtf_switch_max");
  const Trace max = run_json(variant_config("mtf_switch_max", 1, 4, 2, logits, hp, true, ones(4)));
  hp["z_loss"] = 0.1;
  const Trace top1 = run_json(variant_config("mtf_switch", 1, 4, 2, logits, hp, true, ones(4)));
  CHECK(step(top1, "load_balancing_loss").f32[0] == step(max, "load_balancing_loss").f32[0]);
  CHECK(step(top1, "z_loss").f32[0] == Approx(1.0).epsilon(1e-6));
  CHECK(loss(top1, "gating_loss") == Approx(1.1 + 0.1).epsilon(1e-6));
  CHECK(loss(max, "gating_loss") == Approx(1.1).epsilon(1e-6));
  CHECK(max.find_step("z_loss") == nullptr);
}

TEST_CASE("mtf differences 13, perturbation: input_dropout perturbs switch's router, ntlb ignores it",
          "[mtf_gating_differences]") {
  for (const std::string variant : {"mtf_switch", "mtf_ntlb"}) {
    json config = {{"variant", variant},
                   {"scope", "layer"},
                   {"train", true},
                   {"seed", 3},
                   {"dims", {{"G", 1}, {"S", 4}, {"E", 2}, {"M", 3}, {"H", 2}}},
                   {"hparams", {{"switch_policy_train", "input_dropout"}, {"switch_dropout", 0.5}}}};
    config["inputs"]["importance"] = tensor_json({"G", "S"}, {1, 4}, ones(4));
    const Trace trace = run_json(config);
    INFO(variant);
    CHECK((trace.find_input("input_dropout_uniform") != nullptr) == (variant == "mtf_switch"));
    CHECK((trace.find_step("gate_inputs") != nullptr) == (variant == "mtf_switch"));
  }
}

TEST_CASE("mtf differences 14, sample: switch samples the expert, expert_selection ignores the policy",
          "[mtf_gating_differences]") {
  const json hp = {{"switch_policy_eval", "sample"}, {"expert_capacity", 2}};
  const Trace top1 = run_json(variant_config("mtf_switch", 1, 4, 2, kLogits, hp, false, ones(4)));
  const Trace selection = run_json(variant_config("mtf_expert_selection", 1, 4, 2, kLogits, hp, false, ones(4)));
  CHECK(top1.find_input("sample_uniform") != nullptr);
  CHECK(selection.find_input("sample_uniform") == nullptr);
  CHECK(ints(selection, "expert_gate_indices") == ints(worked("mtf_expert_selection"), "expert_gate_indices"));
}

TEST_CASE("mtf differences 15, default evaluation: top_2 draws its random policy, switch draws nothing",
          "[mtf_gating_differences]") {
  const json hp = {{"expert_capacity", 2}};
  const Trace top2 = run_json(variant_config("mtf_top2", 1, 4, 2, kLogits, hp, false));
  const Trace top1 = run_json(variant_config("mtf_switch", 1, 4, 2, kLogits, hp, false));
  CHECK(top2.find_input("second_policy_uniform") != nullptr);
  CHECK(top1.inputs.size() == 1);  // only the logits
}

TEST_CASE("mtf differences 16, C > S: switch is unharmed, switch_max gets -1e9 weights", "[mtf_gating_differences]") {
  // S = 2 with the default min_expert_capacity 4: C = 4.
  const std::vector<float> logits = log_probs({{0.7, 0.3}, {0.6, 0.4}});
  const json hp = {{"switch_policy_eval", "argmax"}};
  const Trace top1 = run_json(variant_config("mtf_switch", 1, 2, 2, logits, hp, false));
  const Trace max = run_json(variant_config("mtf_switch_max", 1, 2, 2, logits, hp, false));
  REQUIRE(top1.config["dims"]["C"] == 4);
  float lowest_switch = 0.0f, lowest_max = 0.0f;
  for (float w : floats(top1, "combine_tensor")) lowest_switch = std::min(lowest_switch, w);
  for (float w : floats(max, "combine_tensor")) lowest_max = std::min(lowest_max, w);
  CHECK(lowest_switch == 0.0f);
  CHECK(lowest_max == -1e9f);
}

TEST_CASE("mtf differences 17, importance None: ntlb and top_2 run, switch refuses in training",
          "[mtf_gating_differences]") {
  for (const std::string variant : {"mtf_ntlb", "mtf_top2"}) {
    INFO(variant);
    CHECK_NOTHROW(run_json(variant_config(variant, 1, 4, 2, kLogits, train_hparams(variant), true)));
  }
  for (const std::string variant : {"mtf_switch", "mtf_switch_max"}) {
    INFO(variant);
    CHECK_THROWS_WITH(run_json(variant_config(variant, 1, 4, 2, kLogits, train_hparams(variant), true)),
                      Catch::Contains("inputs.importance"));
  }
  // expert_selection refuses in evaluation too.
  CHECK_THROWS_AS(run_json(variant_config("mtf_expert_selection", 1, 4, 2, kLogits, eval_hparams("x"), false)),
                  moeref::InputError);
}

TEST_CASE("mtf differences 18, importance 0.5: top_2 routes it as a second choice, switch never",
          "[mtf_gating_differences]") {
  // C = 4 so that nothing overflows. t3 has importance 0.5: no first choice (not == 1), but its
  // argmax, expert 1, becomes its second choice (importance > 0), queued after the second
  // choices of t0, t1, t2 at expert 1: slot 3, weight g * reciprocal(g + 1e-9), about 1.
  // switch masks the token (importance != 1): no slot at all.
  const std::vector<float> importance = {1, 1, 1, 0.5f};
  json top2_hp = {{"second_policy_eval", "all"}, {"expert_capacity", 4}};
  json switch_hp = {{"switch_policy_eval", "argmax"}, {"expert_capacity", 4}};
  const Trace top2 = run_json(variant_config("mtf_top2", 1, 4, 2, kLogits, top2_hp, false, importance));
  const Trace top1 = run_json(variant_config("mtf_switch", 1, 4, 2, kLogits, switch_hp, false, importance));
  CHECK(ints(top2, "mask_1_flat")[3] == 0);
  check_token_slots(top2, 0, 3, {{1, 3, 1.0}});
  CHECK(slots_of(top1, 3) == 0);
}

TEST_CASE("mtf differences 19, summaries: switch records fraction_routed in training, top_2 nothing",
          "[mtf_gating_differences]") {
  const Trace top2 = run_json(variant_config("mtf_top2", 1, 4, 2, kLogits, train_hparams("mtf_top2"), true, ones(4)));
  const Trace top1 =
      run_json(variant_config("mtf_switch", 1, 4, 2, kLogits, train_hparams("mtf_switch"), true, ones(4)));
  CHECK(top2.find_step("fraction_routed") == nullptr);
  CHECK(top2.find_step("batch_entropy") == nullptr);
  // Three of the four tokens fit: 3 / 4.
  CHECK(step(top1, "fraction_routed").f32[0] == 0.75f);
}
