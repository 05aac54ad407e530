// Near ties and index form for the lingvo and praxis lineage (spec/trace-format.md,
// "Near ties" and "Index form"): lingvo_top2, praxis_top2, lingvo_expert_choice,
// praxis_expert_choice. Inputs are built so that ties are present on purpose: an
// exact tie (equal logits give bitwise-equal probabilities), a near tie (logits one
// float32 ulp apart) and a clear loser. A "backend" that decided the other way is
// the reference run with Config::decision_overrides, exactly the re-run the checker
// makes; a real bug is a clear loser forced the same way.
#include <cmath>
#include <filesystem>
#include <string>
#include <vector>

#include "moeref/check.hpp"
#include "moeref/config_reader.hpp"
#include "test_support.hpp"

using moeref::CheckOptions;
using moeref::CheckReport;
using moeref::Config;
using moeref::Tensor;
using moeref::Trace;
using moeref::testing::step;
using moeref::testing::tensor_json;

namespace {

// One group of 4 tokens, 3 experts, supplied logits, scope "gating", capacity 4.
nlohmann::json top2_config(const std::string& variant, const std::vector<float>& logits, nlohmann::json hparams) {
  hparams["expert_capacity_dim"] = 4;
  if (variant == "praxis_top2") hparams["capacity_factor"] = nullptr;
  return {{"variant", variant}, {"scope", "gating"},
          {"train", true},      {"dims", {{"G", 1}, {"S", 4}, {"E", 3}}},
          {"hparams", hparams}, {"inputs", {{"logits", tensor_json({"G", "S", "E"}, {1, 4, 3}, logits)}}}};
}

// One group of 6 tokens, 2 experts, supplied logits, scope "gating", C = 2.
nlohmann::json expert_choice_config(const std::string& variant, const std::vector<float>& logits) {
  nlohmann::json hparams = {{"expert_capacity_dim", 2}, {"capacity_factor", nullptr}};
  return {{"variant", variant}, {"scope", "gating"},
          {"train", true},      {"dims", {{"G", 1}, {"S", 6}, {"E", 2}}},
          {"hparams", hparams}, {"inputs", {{"logits", tensor_json({"G", "S", "E"}, {1, 6, 2}, logits)}}}};
}

// Overrides shaped like the reference's decision step: -1 everywhere (the
// reference decides) except at the given flat indices.
using Choices = std::vector<std::pair<int64_t, int32_t>>;

Tensor overrides_like(const Tensor& decision, const Choices& choices) {
  Tensor forced = Tensor::int32(decision.dims, decision.shape);
  for (int32_t& value : forced.i32) value = -1;
  for (const auto& [flat, value] : choices) forced.i32[static_cast<size_t>(flat)] = value;
  return forced;
}

// A "backend" that made other decisions: the reference run with them forced.
Trace forced_run(const nlohmann::json& config_doc, const Trace& golden,
                 const std::vector<std::pair<std::string, Choices>>& decisions) {
  Config config = moeref::config_from_json(config_doc, "test");
  for (const auto& [name, choices] : decisions) {
    config.decision_overrides[name] = overrides_like(step(golden, name), choices);
  }
  return moeref::run_config(config);
}

// The checker's verdict on such a backend.
CheckReport check_forced(const nlohmann::json& config_doc, const Trace& golden,
                         const std::vector<std::pair<std::string, Choices>>& decisions) {
  return moeref::check_traces(golden, forced_run(config_doc, golden, decisions), CheckOptions{});
}

void require_consistent_alternative(const CheckReport& report, size_t decisions) {
  INFO(report.to_text());
  CHECK(report.pass);
  CHECK(report.consistent_alternative);
  CHECK(report.near_ties.size() == decisions);
  for (const moeref::NearTieFinding& tie : report.near_ties) {
    CHECK(tie.within_tolerance);
    CHECK(tie.margin <= tie.tolerance);
  }
  CHECK_THAT(report.to_text(), Catch::Matchers::Contains("consistent alternative at a near tie"));
}

void require_real_difference(const CheckReport& report, const std::string& decision_step) {
  INFO(report.to_text());
  CHECK_FALSE(report.pass);
  CHECK_FALSE(report.consistent_alternative);
  CHECK(report.first_divergent_step == decision_step);
  bool real_difference = false;
  for (const moeref::NearTieFinding& tie : report.near_ties) {
    CHECK(tie.step == decision_step);
    real_difference = real_difference || !tie.within_tolerance;
  }
  CHECK(real_difference);
  CHECK_THAT(report.to_text(), Catch::Matchers::Contains(decision_step) && Catch::Matchers::Contains("NOT a near tie"));
}

const float kAlmostOne = std::nextafter(1.0f, 0.0f);

// Token 0: logits [1, 1 - ulp, -1]: raw_gates e=0 and e=1 about an ulp apart (near tie).
// Token 1: logits [1, 1, 0]: raw_gates e=0 and e=1 bitwise equal (exact tie), index_1 = 0.
// Token 2: logits [2, 0, 0]: e=1 and e=2 tie for the second choice; e=1 loses index_1 by ~0.67.
// Token 3: logits [0, 0, 2].
const std::vector<float> kTop2Logits = {1, kAlmostOne, -1, 1, 1, 0, 2, 0, 0, 0, 0, 2};

}  // namespace

// ---- lingvo_top2 and praxis_top2: index_1, index_2, sampled_2 -------------------------------

TEST_CASE("near ties lineage: top-2 argmax ties (exact and one ulp) decided the other way pass",
          "[check][near_tie][lingvo_top2][praxis_top2]") {
  for (const std::string variant : {"lingvo_top2", "praxis_top2"}) {
    INFO(variant);
    const nlohmann::json config = top2_config(variant, kTop2Logits, {{"second_expert_policy", "all"}});
    const Trace golden = moeref::testing::run_json(config);
    const Tensor& raw_gates = step(golden, "raw_gates");
    // argmax takes the first maximum (lingvo tf.math.argmax, praxis jnp.argmax).
    REQUIRE(step(golden, "index_1").i32 == std::vector<int32_t>{0, 0, 0, 2});
    REQUIRE(raw_gates.f32[3] == raw_gates.f32[4]);                        // token 1: exact tie
    REQUIRE(raw_gates.f32[1] == std::nextafter(raw_gates.f32[0], 0.0f));  // token 0: one ulp apart
    REQUIRE(step(golden, "index_2").i32[2] == 1);                         // token 2: gates_without_top_1 e=1 == e=2

    // index_1 of tokens 0 and 1 and index_2 of token 2 the other way: the checker forces
    // index_1, re-runs, then finds index_2 and forces it too.
    const Trace candidate = forced_run(config, golden, {{"index_1", {{0, 1}, {1, 1}}}, {"index_2", {{2, 2}}}});
    const CheckReport plain = moeref::compare_traces(golden, candidate, CheckOptions{});
    CHECK(plain.first_divergent_step == "index_1");
    const CheckReport report = moeref::check_traces(golden, candidate, CheckOptions{});
    require_consistent_alternative(report, 3);
    REQUIRE(report.near_ties.size() == 3);
    CHECK(report.near_ties[0].step == "index_1");
    CHECK(report.near_ties[0].index == "[g=0, s=0]");
    CHECK(report.near_ties[0].margin > 0.0);
    CHECK(report.near_ties[1].index == "[g=0, s=1]");
    CHECK(report.near_ties[1].margin == 0.0);
    CHECK(report.near_ties[2].step == "index_2");
    CHECK(report.near_ties[2].margin == 0.0);
    CHECK_THAT(report.near_ties[2].detail, Catch::Matchers::Contains("gates_without_top_1"));
  }
}

TEST_CASE("near ties lineage: a top-2 clear loser is a real difference at index_1",
          "[check][near_tie][lingvo_top2][praxis_top2]") {
  for (const std::string variant : {"lingvo_top2", "praxis_top2"}) {
    INFO(variant);
    const nlohmann::json config = top2_config(variant, kTop2Logits, {{"second_expert_policy", "all"}});
    const Trace golden = moeref::testing::run_json(config);
    // Token 2 routed to e=1 first: raw_gates 0.787 vs 0.107.
    const CheckReport report = check_forced(config, golden, {{"index_1", {{2, 1}}}});
    require_real_difference(report, "index_1");
  }
}

TEST_CASE("near ties lineage: under sampling index_2 is decided over logits plus Gumbel noise",
          "[check][near_tie][lingvo_top2][praxis_top2]") {
  for (const std::string variant : {"lingvo_top2", "praxis_top2"}) {
    INFO(variant);
    nlohmann::json config = top2_config(variant, kTop2Logits, {{"second_expert_policy", "sampling"}});
    // Equal draws: token 2 (logits 2, 0, 0, first choice e=0) has noised_logits e=1 == e=2
    // exactly; token 3 (logits 0, 0, 2, first choice e=2) has e=0 == e=1.
    const std::string draw = variant == "lingvo_top2" ? "noise_uniform" : "sampling_uniform";
    config["inputs"][draw] = tensor_json({"G", "S", "E"}, {1, 4, 3}, std::vector<float>(12, 0.5f));
    const Trace golden = moeref::testing::run_json(config);
    const Tensor& noised = step(golden, "noised_logits");
    REQUIRE(noised.f32[7] == noised.f32[8]);
    REQUIRE(step(golden, "index_2").i32[2] == 1);

    const CheckReport report = check_forced(config, golden, {{"index_2", {{2, 2}}}});
    require_consistent_alternative(report, 1);
    CHECK_THAT(report.near_ties.at(0).detail, Catch::Matchers::Contains("noised_logits"));

    // Token 2 drawing its own first choice e=0 (logit replaced by -0.7 * float32 max): a bug.
    const CheckReport bug = check_forced(config, golden, {{"index_2", {{2, 0}}}});
    require_real_difference(bug, "index_2");
  }
}

TEST_CASE("near ties lineage: the random policy's draw at its bound is a near tie at sampled_2",
          "[check][near_tie][lingvo_top2][praxis_top2]") {
  for (const std::string variant : {"lingvo_top2", "praxis_top2"}) {
    for (const bool legacy : {true, false}) {
      INFO(variant << " legacy_mtf_behavior=" << legacy);
      // keep iff U < gate_2 / f32(max(0.5, 1e-9)); gate_2 is gate_2_normalized when legacy.
      nlohmann::json config = top2_config(
          variant, kTop2Logits,
          {{"second_expert_policy", "random"}, {"second_expert_threshold", 0.5}, {"legacy_mtf_behavior", legacy}});
      const std::string draw = variant == "lingvo_top2" ? "second_policy_uniform" : "random_uniform";
      config["inputs"][draw] = tensor_json({"G", "S"}, {1, 4}, {0.5f, 0.5f, 0.5f, 0.5f});
      const Trace probe = moeref::testing::run_json(config);
      const float gate = step(probe, legacy ? "gate_2_normalized" : "gate_2").f32[2];
      const float bound = gate / 0.5f;
      // Token 2 draws U exactly at its bound: keeping and dropping are both admissible.
      // Token 3 draws 0.99, far above its bound: dropping it is clear.
      config["inputs"][draw] = tensor_json({"G", "S"}, {1, 4}, {0.0f, 0.0f, bound, 0.99f});
      const Trace golden = moeref::testing::run_json(config);
      REQUIRE(step(golden, "sampled_2").i32 == std::vector<int32_t>{1, 1, 0, 0});  // U < bound is false at equality

      const CheckReport report = check_forced(config, golden, {{"sampled_2", {{2, 1}}}});
      require_consistent_alternative(report, 1);
      CHECK(report.near_ties.at(0).step == "sampled_2");
      CHECK(report.near_ties.at(0).margin == 0.0);

      const CheckReport bug = check_forced(config, golden, {{"sampled_2", {{3, 1}}}});
      require_real_difference(bug, "sampled_2");
    }
  }
}

TEST_CASE("near ties lineage: lingvo top1_expert_per_example ties over the router logits",
          "[check][near_tie][lingvo_top2]") {
  // Through ComputeGating (logits from x): identical router columns for e=0 and e=1 give
  // bitwise-equal logits, so the summary argmax and index_1 tie for every token.
  nlohmann::json config = top2_config("lingvo_top2", kTop2Logits, {{"second_expert_policy", "all"}});
  config["inputs"].erase("logits");
  config["dims"]["M"] = 2;
  config["inputs"]["x"] = tensor_json({"G", "S", "M"}, {1, 4, 2}, {1, 0, 0, 1, 1, 1, -1, 0.5f});
  config["inputs"]["router_weights"] = tensor_json({"M", "E"}, {2, 3}, {1, 1, 0, 0.5f, 0.5f, -1});
  const Trace golden = moeref::testing::run_json(config);
  REQUIRE(step(golden, "top1_expert_per_example").i32[0] == 0);
  REQUIRE(step(golden, "logits").f32[0] == step(golden, "logits").f32[1]);
  const Trace candidate = forced_run(config, golden, {{"top1_expert_per_example", {{0, 1}}}, {"index_1", {{0, 1}}}});
  const CheckReport report = moeref::check_traces(golden, candidate, CheckOptions{});
  require_consistent_alternative(report, 2);
  CHECK(report.near_ties.at(0).step == "top1_expert_per_example");
  CHECK(report.near_ties.at(1).step == "index_1");
}

// ---- lingvo_top2 and praxis_top2: index form ---------------------------------------------------

TEST_CASE("near ties lineage: a top-2 candidate in index form only passes, a wrong slot fails",
          "[check][index_form][lingvo_top2][praxis_top2]") {
  for (const std::string variant : {"lingvo_top2", "praxis_top2"}) {
    for (const bool legacy : {true, false}) {
      INFO(variant << " legacy_mtf_behavior=" << legacy);
      // Capacity 2 with 4 tokens: expert 0 is first choice of three tokens, so one is dropped.
      nlohmann::json config =
          top2_config(variant, kTop2Logits, {{"second_expert_policy", "all"}, {"legacy_mtf_behavior", legacy}});
      config["hparams"]["expert_capacity_dim"] = 2;
      const Trace golden = moeref::testing::run_json(config);
      const Tensor& slots = step(golden, "routing_slot");
      REQUIRE(slots.shape == std::vector<int64_t>{1, 4, 2});
      // Tokens 0, 1, 2 choose e=0 first: slots 0 and 1, then none (position 2 >= C).
      CHECK(slots.i32[0] == 0);
      CHECK(slots.i32[2] == 1);
      CHECK(slots.i32[4] == -1);
      CHECK(step(golden, "routing_weight").f32[4] == 0.0f);

      Trace candidate;
      candidate.config = golden.config;
      for (const char* name : {"index_1", "index_2", "routing_expert", "routing_slot", "routing_weight"}) {
        candidate.add_step(name, step(golden, name));
      }
      const CheckReport good = moeref::check_traces(golden, candidate, CheckOptions{});
      INFO(good.to_text());
      CHECK(good.pass);
      bool combine_checked = false;
      for (const moeref::TensorResult& result : good.results) {
        if (result.name == "combine_tensor") combine_checked = result.status == moeref::TensorStatus::kMatch;
      }
      CHECK(combine_checked);

      // Token 3's first choice (e=2, slot 0) moved one slot further on.
      for (moeref::NamedTensor& named : candidate.steps) {
        if (named.name == "routing_slot") named.tensor.i32[3 * 2] += 1;
      }
      const CheckReport bad = moeref::check_traces(golden, candidate, CheckOptions{});
      INFO(bad.to_text());
      CHECK_FALSE(bad.pass);
      CHECK(bad.first_divergent_step == "routing_slot");
    }
  }
}

TEST_CASE("near ties lineage: the index form restates combine_tensor on every top-2 golden",
          "[check][index_form][lingvo_top2][praxis_top2]") {
  namespace fs = std::filesystem;
  for (const std::string variant : {"lingvo_top2", "praxis_top2"}) {
    const fs::path dir = fs::path(MOEREF_SOURCE_DIR) / "golden" / variant;
    for (const fs::directory_entry& entry : fs::directory_iterator(dir)) {
      const std::string name = entry.path().filename().string();
      if (name.size() < 11 || name.substr(name.size() - 11) != ".trace.json") continue;
      INFO(name);
      const Trace golden = moeref::read_trace_file(entry.path().string());
      // The golden without its dense routing: the checker derives it from routing_*.
      Trace candidate = golden;
      candidate.steps.clear();
      for (const moeref::NamedTensor& named : golden.steps) {
        if (named.name != "combine_tensor" && named.name != "dispatch_tensor") candidate.steps.push_back(named);
      }
      const CheckReport report = moeref::check_traces(golden, candidate, CheckOptions{});
      INFO(report.to_text());
      CHECK(report.pass);
    }
  }
}

// ---- lingvo_expert_choice and praxis_expert_choice: the selection at the cut -------------------

namespace {

// Two experts, six tokens, C = 2. token_scores (= gates, no paddings):
//   expert 0: t0 = s(2) = 0.88 > t1 = t2 = s(1) = 0.73 (exact tie at the cut) > ...
//   expert 1: t3 = s(1) = 0.73 > t5 > t4 = s(0.5) = 0.62 (one score ulp apart, at the cut) > ...
// with s the logistic function of the logit difference. kNearHalf is four float32 ulps
// above 0.5, the smallest logit step that moves s(0.5) (in both softmaxes) by one ulp.
const float kNearHalf = 0.500000238f;
const std::vector<float> kChoiceLogits = {2, 0, 1, 0, 1, 0, -1, 0, -0.5f, 0, -kNearHalf, 0};

// Flat index of (g = 0, e, s) in mask_ges [G, E, S] with S = 6.
int64_t at(int64_t e, int64_t s) { return e * 6 + s; }

}  // namespace

TEST_CASE("near ties lineage: expert-choice ties at the cut (exact and one ulp) taken the other way pass",
          "[check][near_tie][lingvo_expert_choice][praxis_expert_choice]") {
  for (const std::string variant : {"lingvo_expert_choice", "praxis_expert_choice"}) {
    INFO(variant);
    const nlohmann::json config = expert_choice_config(variant, kChoiceLogits);
    const Trace golden = moeref::testing::run_json(config);
    const Tensor& scores = step(golden, "token_scores");
    const Tensor& taken = step(golden, "mask_ges");
    REQUIRE(scores.f32[at(0, 1)] == scores.f32[at(0, 2)]);  // exact tie at expert 0's cut
    REQUIRE(scores.f32[at(1, 4)] != scores.f32[at(1, 5)]);  // near tie at expert 1's cut
    // tf.math.top_k takes the lower index on ties, praxis top_k the higher.
    const int64_t tie_taken = variant == "lingvo_expert_choice" ? 1 : 2;
    const int64_t tie_left = 3 - tie_taken;
    REQUIRE(taken.i32[at(0, 0)] == 1);
    REQUIRE(taken.i32[at(0, tie_taken)] == 1);
    REQUIRE(taken.i32[at(0, tie_left)] == 0);
    // Expert 1 takes t3 and the larger of t4, t5: t5, by one float32 ulp.
    REQUIRE(scores.f32[at(1, 5)] == std::nextafter(scores.f32[at(1, 4)], 1.0f));
    REQUIRE(taken.i32[at(1, 5)] == 1);
    REQUIRE(taken.i32[at(1, 4)] == 0);

    const Trace candidate = forced_run(
        config, golden, {{"mask_ges", {{at(0, tie_taken), 0}, {at(0, tie_left), 1}, {at(1, 5), 0}, {at(1, 4), 1}}}});
    REQUIRE(step(candidate, "mask_ges").i32[at(0, tie_left)] == 1);
    const CheckReport plain = moeref::compare_traces(golden, candidate, CheckOptions{});
    CHECK(plain.first_divergent_step == "mask_ges");
    const CheckReport report = moeref::check_traces(golden, candidate, CheckOptions{});
    require_consistent_alternative(report, 4);
    for (const moeref::NearTieFinding& tie : report.near_ties) {
      CHECK(tie.step == "mask_ges");
      CHECK_THAT(tie.detail, Catch::Matchers::Contains("token_scores"));
      if (tie.index == "[g=0, e=0, s=1]" || tie.index == "[g=0, e=0, s=2]") {
        CHECK(tie.margin == 0.0);
      } else {
        CHECK(tie.margin > 0.0);
      }
    }
    // token_indices lists the forced selection in the framework's order: best first for
    // tf.math.top_k, ascending for praxis top_k.
    const std::vector<int32_t> expert_0(step(candidate, "token_indices").i32.begin(),
                                        step(candidate, "token_indices").i32.begin() + 2);
    CHECK(expert_0 == (variant == "lingvo_expert_choice" ? std::vector<int32_t>{0, static_cast<int32_t>(tie_left)}
                                                         : std::vector<int32_t>{static_cast<int32_t>(tie_left), 0}));
  }
}

TEST_CASE("near ties lineage: an expert taking a clear loser is a real difference at mask_ges",
          "[check][near_tie][lingvo_expert_choice][praxis_expert_choice]") {
  for (const std::string variant : {"lingvo_expert_choice", "praxis_expert_choice"}) {
    INFO(variant);
    const nlohmann::json config = expert_choice_config(variant, kChoiceLogits);
    const Trace golden = moeref::testing::run_json(config);
    // Expert 1 takes t0 (score s(-2) = 0.12) instead of t5 (0.62).
    const CheckReport report = check_forced(config, golden, {{"mask_ges", {{at(1, 0), 1}, {at(1, 5), 0}}}});
    require_real_difference(report, "mask_ges");
  }
}

TEST_CASE("near ties lineage: an expert taking C + 1 tokens is no top-k result, even at a tie",
          "[check][near_tie][lingvo_expert_choice][praxis_expert_choice]") {
  for (const std::string variant : {"lingvo_expert_choice", "praxis_expert_choice"}) {
    INFO(variant);
    const nlohmann::json config = expert_choice_config(variant, kChoiceLogits);
    const Trace golden = moeref::testing::run_json(config);
    // Expert 0 also takes the token it left out at the exact tie: three tokens, C = 2.
    const int64_t tie_left = variant == "lingvo_expert_choice" ? 2 : 1;
    Trace candidate = golden;
    for (moeref::NamedTensor& named : candidate.steps) {
      if (named.name == "mask_ges") named.tensor.i32[static_cast<size_t>(at(0, tie_left))] = 1;
    }
    const CheckReport report = moeref::check_traces(golden, candidate, CheckOptions{});
    INFO(report.to_text());
    CHECK_FALSE(report.pass);
    CHECK_FALSE(report.consistent_alternative);
    CHECK(report.first_divergent_step == "mask_ges");
    REQUIRE(report.near_ties.size() == 1);
    CHECK_THAT(report.near_ties[0].detail, Catch::Matchers::Contains("cannot take this choice"));
  }
}
