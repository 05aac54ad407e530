// mtf_top2 auxiliary (load-balancing) loss against an independent double computation.
//
// Source: tensorflow/mesh, mesh_tensorflow/transformer/moe.py, `_top_2_gating`
// ("BALANCING LOSSES") and `transformer_moe_layer_v1` (`loss * hparams.moe_loss_coef`).
// Dims: G groups, S group size, E experts.
//
// The reference below recomputes the losses in double from the supplied logits:
// its own softmax (exp(x - max) / sum), its own argmax, plain means. Tolerance:
// relative 1e-5, far above float32 accumulation over a few dozen terms (~1e-6)
// and far below any change of a routing decision.
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "mtf_top2_test_helpers.hpp"
#include "portable_random.hpp"

// run_json, step, loss, gating_config.
using namespace moeref::testing::mtf;
using moeref::testing::splitmix64;
using moeref::testing::uniform_float;

namespace {

struct Problem {
  int64_t G = 2, S = 8, E = 4;
  std::vector<float> logits;      // [G, S, E]
  std::vector<float> importance;  // [G, S], empty for none
};

Problem make_problem(uint64_t seed, int64_t G, int64_t S, int64_t E, bool with_importance) {
  Problem problem;
  problem.G = G;
  problem.S = S;
  problem.E = E;
  uint64_t state = seed;
  problem.logits.resize(static_cast<size_t>(G * S * E));
  for (float& v : problem.logits) v = uniform_float(state, -2.0, 2.0);
  if (with_importance) {
    problem.importance.resize(static_cast<size_t>(G * S));
    const float levels[3] = {0.0f, 0.5f, 1.0f};
    for (float& v : problem.importance) v = levels[splitmix64(state) % 3];
  }
  return problem;
}

json config_of(const Problem& problem, const json& hparams) {
  json config = gating_config(problem.G, problem.S, problem.E, problem.logits, hparams);
  if (!problem.importance.empty()) {
    config["inputs"]["importance"] = tensor_json({"G", "S"}, {problem.G, problem.S}, problem.importance);
  }
  return config;
}

struct ReferenceLosses {
  double loss_1 = 0.0;
  double loss_2 = 0.0;
};

// _top_2_gating's balancing losses, restated in double:
//   a = 1[importance == 1] (1 without importance), b = 1[importance > 0]
//   density_1[g,e]       = mean_S a * 1[index_1 == e]
//   density_1_proxy[g,e] = mean_S a * p
//   loss_1 = mean_{G,E}(density_1_proxy * density_1) * E^2
//   gw = p * (1 - a * one_hot(index_1));  index_2 = argmax gw
//   density_2[g,e]       = mean_S b * 1[index_2 == e]          (before the policy)
//   density_2_proxy[g,e] = mean_S gw / (sum_E gw + 1e-9)         (not importance-masked)
//   loss_2 = mean_{G,E}(density_2_proxy * density_2) * E^2
ReferenceLosses reference_losses(const Problem& problem) {
  const int64_t G = problem.G, S = problem.S, E = problem.E;
  const size_t GE = static_cast<size_t>(G * E);
  std::vector<double> density_1(GE, 0.0), proxy_1(GE, 0.0), density_2(GE, 0.0), proxy_2(GE, 0.0);
  for (int64_t g = 0; g < G; ++g) {
    for (int64_t s = 0; s < S; ++s) {
      const float* row = problem.logits.data() + (g * S + s) * E;
      double max_logit = static_cast<double>(row[0]);
      for (int64_t e = 1; e < E; ++e) max_logit = std::max(max_logit, static_cast<double>(row[e]));
      std::vector<double> p(static_cast<size_t>(E));
      double sum = 0.0;
      for (int64_t e = 0; e < E; ++e) {
        p[static_cast<size_t>(e)] = std::exp(static_cast<double>(row[e]) - max_logit);
        sum += p[static_cast<size_t>(e)];
      }
      for (double& v : p) v /= sum;
      const float imp = problem.importance.empty() ? 1.0f : problem.importance[static_cast<size_t>(g * S + s)];
      const double a = imp == 1.0f ? 1.0 : 0.0;
      const double b = imp > 0.0f ? 1.0 : 0.0;
      size_t index_1 = 0;
      for (size_t e = 1; e < p.size(); ++e) {
        if (p[e] > p[index_1]) index_1 = e;
      }
      std::vector<double> gw = p;
      if (a == 1.0) gw[index_1] = 0.0;
      size_t index_2 = 0;
      double gw_sum = 0.0;
      for (size_t e = 0; e < gw.size(); ++e) {
        if (gw[e] > gw[index_2]) index_2 = e;
        gw_sum += gw[e];
      }
      const size_t base = static_cast<size_t>(g * E);
      density_1[base + index_1] += a / static_cast<double>(S);
      density_2[base + index_2] += b / static_cast<double>(S);
      for (size_t e = 0; e < p.size(); ++e) {
        proxy_1[base + e] += a * p[e] / static_cast<double>(S);
        proxy_2[base + e] += gw[e] / (gw_sum + 1e-9) / static_cast<double>(S);
      }
    }
  }
  ReferenceLosses out;
  for (size_t k = 0; k < GE; ++k) {
    out.loss_1 += proxy_1[k] * density_1[k];
    out.loss_2 += proxy_2[k] * density_2[k];
  }
  const double scale = static_cast<double>(E * E) / static_cast<double>(G * E);
  out.loss_1 *= scale;
  out.loss_2 *= scale;
  return out;
}

double scalar(const Trace& trace, const std::string& name) { return static_cast<double>(step(trace, name).f32.at(0)); }

}  // namespace

TEST_CASE("mtf_top2 loss_1 matches a double computation", "[mtf_top2][loss]") {
  // loss = reduce_mean(density_1_proxy * density_1) * float(E * E)   (_top_2_gating)
  for (uint64_t seed : {1u, 2u, 3u}) {
    for (bool with_importance : {false, true}) {
      const Problem problem = make_problem(seed, 2, 8, 4, with_importance);
      const Trace trace = run_json(config_of(problem, {{"second_policy_train", "all"}}));
      const ReferenceLosses want = reference_losses(problem);
      INFO("seed " << seed << (with_importance ? " with importance" : ""));
      CHECK(scalar(trace, "loss_1") == Approx(want.loss_1).epsilon(1e-5));
      CHECK(static_cast<double>(loss(trace, "gating_loss")) == Approx(want.loss_1).epsilon(1e-5));
      CHECK(trace.find_step("loss_2") == nullptr);
      CHECK(trace.find_step("density_2") == nullptr);
    }
  }
}

TEST_CASE("mtf_top2 density_1 is a mean over S of the masked first choices", "[mtf_top2][loss]") {
  // density_1 = reduce_mean(mask_1, group) = count * f32(1/S): with S = 8 every value is
  // count/8 exactly. Counted from index_1 (and importance == 1) here, before capacity:
  // a tiny capacity must not change it.
  const Problem problem = make_problem(7, 2, 8, 4, true);
  const Trace trace = run_json(config_of(problem, {{"second_policy_train", "all"}, {"expert_capacity", 1}}));
  const auto& index_1 = step(trace, "index_1").i32;
  std::vector<float> want(8, 0.0f);
  for (size_t t = 0; t < 16; ++t) {
    if (problem.importance[t] == 1.0f) want[(t / 8) * 4 + static_cast<size_t>(index_1[t])] += 0.125f;
  }
  CHECK(step(trace, "density_1").f32 == want);
}

TEST_CASE("mtf_top2 use_second_place_loss adds half of loss_2, computed before the policy", "[mtf_top2][loss]") {
  // if moe_use_second_place_loss: density_2 = reduce_mean(mask_2) (mask_2 after importance,
  // before the policy); normalized = gates_without_top_1 / (reduce_sum(., experts) + 1e-9);
  // loss_2 = reduce_mean(density_2_proxy * density_2) * E^2; loss += loss_2 * 0.5.
  // Policy none clears mask_2 afterwards, yet loss_2 is the same as under all.
  for (bool with_importance : {false, true}) {
    const Problem problem = make_problem(21, 2, 8, 4, with_importance);
    const ReferenceLosses want = reference_losses(problem);
    INFO((with_importance ? "with importance" : "without importance"));
    const Trace none = run_json(config_of(problem, {{"second_policy_train", "none"}, {"use_second_place_loss", true}}));
    const Trace all = run_json(config_of(problem, {{"second_policy_train", "all"}, {"use_second_place_loss", true}}));
    CHECK(scalar(none, "loss_1") == Approx(want.loss_1).epsilon(1e-5));
    CHECK(scalar(none, "loss_2") == Approx(want.loss_2).epsilon(1e-5));
    CHECK(static_cast<double>(loss(none, "gating_loss")) == Approx(want.loss_1 + 0.5 * want.loss_2).epsilon(1e-5));
    CHECK(loss(none, "gating_loss") == loss(all, "gating_loss"));
    CHECK(want.loss_2 > 0.0);
  }
}

TEST_CASE("mtf_top2 num_microbatches divides the gating loss", "[mtf_top2][loss]") {
  // if num_microbatches and num_microbatches > 1: loss /= num_microbatches
  // (a Python scalar divide: loss * f32(1/n); for n = 4 that is an exact * 0.25).
  const Problem problem = make_problem(5, 2, 8, 4, false);
  const json base_hp = {{"second_policy_train", "all"}, {"use_second_place_loss", true}};
  const float base = loss(run_json(config_of(problem, base_hp)), "gating_loss");
  json hp = base_hp;
  hp["num_microbatches"] = 4;
  CHECK(loss(run_json(config_of(problem, hp)), "gating_loss") == base * 0.25f);
  hp["num_microbatches"] = 1;
  CHECK(loss(run_json(config_of(problem, hp)), "gating_loss") == base);
  hp["num_microbatches"] = 3;
  CHECK(static_cast<double>(loss(run_json(config_of(problem, hp)), "gating_loss")) ==
        Approx(static_cast<double>(base) / 3.0).epsilon(1e-6));
}

TEST_CASE("mtf_top2 layer loss is gating_loss times loss_coef", "[mtf_top2][loss]") {
  // transformer_moe_layer_v1 returns `loss * hparams.moe_loss_coef`.
  const Problem problem = make_problem(9, 2, 8, 4, false);
  json hp = {{"second_policy_train", "all"}, {"loss_coef", 0.5}};
  const Trace half = run_json(config_of(problem, hp));
  CHECK(loss(half, "loss") == loss(half, "gating_loss") * 0.5f);
  hp.erase("loss_coef");  // default 1e-2
  const Trace deflt = run_json(config_of(problem, hp));
  CHECK(static_cast<double>(loss(deflt, "loss")) ==
        Approx(static_cast<double>(loss(deflt, "gating_loss")) * 0.01).epsilon(1e-6));
  CHECK(deflt.losses.size() == 2);
  CHECK(deflt.losses[0].first == "gating_loss");
  CHECK(deflt.losses[1].first == "loss");
}

TEST_CASE("mtf_top2 loss averages over groups", "[mtf_top2][loss][groups]") {
  // reduce_mean(density_1_proxy * density_1) runs over G and E: the loss of two groups is
  // the mean of the losses of each group routed alone.
  const Problem both = make_problem(13, 2, 8, 4, false);
  Problem first = both, second = both;
  first.G = second.G = 1;
  first.logits.assign(both.logits.begin(), both.logits.begin() + 32);
  second.logits.assign(both.logits.begin() + 32, both.logits.end());
  const json hp = {{"second_policy_train", "all"}};
  const double l_both = static_cast<double>(loss(run_json(config_of(both, hp)), "gating_loss"));
  const double l_first = static_cast<double>(loss(run_json(config_of(first, hp)), "gating_loss"));
  const double l_second = static_cast<double>(loss(run_json(config_of(second, hp)), "gating_loss"));
  CHECK(l_both == Approx((l_first + l_second) / 2.0).epsilon(1e-6));
}
