// mtf_top2 invariants over many random configs, and a slot-by-slot queue model.
//
// Source: tensorflow/mesh, mesh_tensorflow/transformer/moe.py, `_top_2_gating` and
// `transformer_moe_layer_v1`.
// Dims: G groups, S group size, E experts, C expert capacity, M model dim, N output dim.
//
// Configs are drawn with a portable generator (splitmix64) over sizes, capacities,
// policies, thresholds, train/eval, importance (0 / 0.5 / 1) and logits that are
// either router products or small integers (ties on purpose).
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "mtf_top2_test_helpers.hpp"
#include "portable_random.hpp"

// run_json, step, tensor_json, check_outputs_combine_expert_outputs.
using namespace moeref::testing::mtf;
using moeref::testing::pick;
using moeref::testing::unit_interval;

namespace {

struct Drawn {
  json config;
  std::string description;
};

Drawn draw_config(uint64_t seed) {
  uint64_t state = seed * 7919 + 1;
  const int64_t G = pick(state, 1, 3), S = pick(state, 1, 12), E = pick(state, 1, 5);
  const char* policies[4] = {"all", "none", "threshold", "random"};
  const std::string policy = policies[pick(state, 0, 3)];
  const bool train = pick(state, 0, 1) == 1;
  const double threshold = 0.6 * unit_interval(state);
  json hp = {{"second_policy_train", policy},
             {"second_policy_eval", policy},
             {"second_threshold_train", threshold},
             {"second_threshold_eval", threshold},
             {"use_second_place_loss", pick(state, 0, 1) == 1},
             {"activation", "relu"}};
  const int64_t capacity_mode = pick(state, 0, 2);
  if (capacity_mode == 0) {
    hp["expert_capacity"] = pick(state, 0, S + 1);
  } else if (capacity_mode == 1) {
    hp["min_expert_capacity"] = 0;
    hp["capacity_factor_train"] = 0.5 + 2.0 * unit_interval(state);
    hp["capacity_factor_eval"] = 0.5 + 2.0 * unit_interval(state);
  }  // else: the default rule (min_expert_capacity 4)
  json config = {{"variant", "mtf_top2"},
                 {"scope", "layer"},
                 {"train", train},
                 {"seed", seed},
                 {"dims", {{"G", G}, {"S", S}, {"E", E}, {"M", 3}, {"H", 4}}},
                 {"hparams", hp}};
  const bool integer_logits = pick(state, 0, 1) == 1;
  if (integer_logits) {
    std::vector<float> logits(static_cast<size_t>(G * S * E));
    for (float& v : logits) v = static_cast<float>(pick(state, -1, 2));
    config["inputs"]["logits"] = tensor_json({"G", "S", "E"}, {G, S, E}, logits);
  }
  const bool with_importance = pick(state, 0, 1) == 1;
  if (with_importance) {
    std::vector<float> importance(static_cast<size_t>(G * S));
    const float levels[4] = {0.0f, 0.5f, 1.0f, 1.0f};
    for (float& v : importance) v = levels[pick(state, 0, 3)];
    config["inputs"]["importance"] = tensor_json({"G", "S"}, {G, S}, importance);
  }
  Drawn out;
  out.config = config;
  out.description = "seed " + std::to_string(seed) + ": G=" + std::to_string(G) + " S=" + std::to_string(S) +
                    " E=" + std::to_string(E) + " policy=" + policy + (train ? " train" : " eval") +
                    (integer_logits ? " integer-logits" : "") + (with_importance ? " importance" : "") +
                    " hparams=" + hp.dump();
  return out;
}

constexpr int kConfigs = 60;

}  // namespace

TEST_CASE("mtf_top2 invariants hold on random configs", "[mtf_top2][invariant]") {
  // Coverage: the draw must include the cases that make these invariants bite.
  int with_drops = 0, with_half_importance_routed = 0, with_zero_capacity = 0, with_one_expert = 0, two_slot_tokens = 0;
  for (int k = 0; k < kConfigs; ++k) {
    const Drawn drawn = draw_config(static_cast<uint64_t>(k));
    INFO(drawn.description);
    const Trace trace = run_json(drawn.config);
    const Tensor& combine = step(trace, "combine_tensor");
    const Tensor& dispatch = step(trace, "dispatch_tensor");
    const int64_t G = combine.shape[0], S = combine.shape[1], E = combine.shape[2], C = combine.shape[3];
    const Tensor* importance = trace.find_step("importance");
    if (C == 0) ++with_zero_capacity;
    if (E == 1) ++with_one_expert;
    {
      const auto& count = step(trace, "mask_1_count").i32;
      const Tensor* important = trace.find_step("mask_1_important");
      const auto& placed = important != nullptr ? important->i32 : step(trace, "mask_1").i32;
      int64_t total_placed = 0, total_kept = 0;
      for (int32_t v : placed) total_placed += v;
      for (int32_t v : count) total_kept += v;
      if (total_kept < total_placed) ++with_drops;
    }
    auto at = [&](int64_t g, int64_t s, int64_t e, int64_t c) {
      return static_cast<size_t>(((g * S + s) * E + e) * C + c);
    };

    for (int64_t g = 0; g < G; ++g) {
      // No expert receives more than C tokens per group; each slot holds at most one token.
      for (int64_t e = 0; e < E; ++e) {
        int64_t tokens = 0;
        for (int64_t c = 0; c < C; ++c) {
          int64_t in_slot = 0;
          for (int64_t s = 0; s < S; ++s) in_slot += dispatch.i32[at(g, s, e, c)];
          CHECK(in_slot <= 1);
          tokens += in_slot;
        }
        CHECK(tokens <= C);
      }
      for (int64_t s = 0; s < S; ++s) {
        int64_t slots = 0;
        double weight = 0.0;
        for (int64_t e = 0; e < E; ++e) {
          for (int64_t c = 0; c < C; ++c) {
            const float w = combine.f32[at(g, s, e, c)];
            // dispatch_tensor = cast(cast(combine_tensor, bool)): exactly where combine != 0.
            CHECK(dispatch.i32[at(g, s, e, c)] == (w != 0.0f ? 1 : 0));
            CHECK(w >= 0.0f);
            slots += dispatch.i32[at(g, s, e, c)];
            weight += static_cast<double>(w);
          }
        }
        // At most two experts per token; weights g1/(g1+g2+1e-9) + g2/(...) sum to <= 1.
        CHECK(slots <= 2);
        CHECK(weight <= 1.0 + 1e-6);
        if (slots == 2) ++two_slot_tokens;
        if (importance != nullptr) {
          const float imp = importance->f32[static_cast<size_t>(g * S + s)];
          if (imp == 0.0f) CHECK(slots == 0);  // padding goes nowhere
          if (imp == 0.5f) CHECK(slots <= 1);  // only a second choice
          if (imp == 0.5f && slots == 1) ++with_half_importance_routed;
        }
      }
    }

    check_outputs_combine_expert_outputs(combine, step(trace, "expert_outputs"), step(trace, "outputs"));
  }
  CHECK(with_drops > 0);
  CHECK(with_half_importance_routed > 0);
  CHECK(with_zero_capacity > 0);
  CHECK(with_one_expert > 0);
  CHECK(two_slot_tokens > 0);
}

TEST_CASE("mtf_top2 routing matches a queue model of _top_2_gating on random configs", "[mtf_top2][invariant]") {
  // The same rules as _top_2_gating, written as per-expert queues instead of cumsums:
  //   1. argmax of raw_gates (lowest index) is the first choice, kept when importance == 1;
  //   2. argmax of the remaining gates is the second choice, live when importance > 0 and
  //      the policy keeps it (all; none; threshold g2n > f32(t); random U < g2n * f32(1/max(t, 1e-9)));
  //   3. first choices take slots 0, 1, ... of their expert in token order; a position >= C
  //      is dropped but still counted;
  //   4. live second choices queue behind the KEPT first choices of their expert, counting
  //      every earlier live second choice (dropped or not);
  //   5. combine holds the normalised gate at (expert, position) when position < C.
  for (int k = 0; k < kConfigs; ++k) {
    const Drawn drawn = draw_config(static_cast<uint64_t>(k));
    INFO(drawn.description);
    const Trace trace = run_json(drawn.config);
    const json& hp = trace.config["hparams"];
    const bool train = trace.config["train"].get<bool>();
    const std::string policy = hp[train ? "second_policy_train" : "second_policy_eval"].get<std::string>();
    const double threshold = hp[train ? "second_threshold_train" : "second_threshold_eval"].get<double>();
    const Tensor& raw_gates = step(trace, "raw_gates");
    const Tensor& combine = step(trace, "combine_tensor");
    const auto& gate_1_n = step(trace, "gate_1_normalized").f32;
    const auto& gate_2_n = step(trace, "gate_2_normalized").f32;
    const Tensor* importance = trace.find_step("importance");
    const Tensor* uniform = trace.find_input("second_policy_uniform");
    const int64_t G = combine.shape[0], S = combine.shape[1], E = combine.shape[2], C = combine.shape[3];
    CHECK((policy == "random") == (uniform != nullptr));

    std::vector<float> want(combine.f32.size(), 0.0f);
    for (int64_t g = 0; g < G; ++g) {
      std::vector<int32_t> index_1(static_cast<size_t>(S)), index_2(static_cast<size_t>(S));
      std::vector<int64_t> pos_1(static_cast<size_t>(S), -1), pos_2(static_cast<size_t>(S), -1);
      std::vector<int64_t> first_seen(static_cast<size_t>(E), 0), first_kept(static_cast<size_t>(E), 0);
      for (int64_t s = 0; s < S; ++s) {
        const size_t t = static_cast<size_t>(g * S + s);
        const float imp = importance != nullptr ? importance->f32[t] : 1.0f;
        const float* p = raw_gates.f32.data() + t * static_cast<size_t>(E);
        int32_t best = 0;
        for (int32_t e = 1; e < E; ++e) {
          if (p[e] > p[best]) best = e;
        }
        index_1[static_cast<size_t>(s)] = best;
        // gates_without_top_1: the first choice is removed only when it was kept (importance 1).
        std::vector<float> rest(p, p + E);
        if (imp == 1.0f) rest[static_cast<size_t>(best)] = 0.0f;
        int32_t second = 0;
        for (int32_t e = 1; e < E; ++e) {
          if (rest[static_cast<size_t>(e)] > rest[static_cast<size_t>(second)]) second = e;
        }
        index_2[static_cast<size_t>(s)] = second;
        if (imp == 1.0f) {
          pos_1[static_cast<size_t>(s)] = first_seen[static_cast<size_t>(best)]++;
          if (pos_1[static_cast<size_t>(s)] < C) ++first_kept[static_cast<size_t>(best)];
        }
      }
      std::vector<int64_t> second_seen(static_cast<size_t>(E), 0);
      for (int64_t s = 0; s < S; ++s) {
        const size_t t = static_cast<size_t>(g * S + s);
        const float imp = importance != nullptr ? importance->f32[t] : 1.0f;
        bool keep = true;
        if (policy == "none") keep = false;
        if (policy == "threshold") keep = gate_2_n[t] > static_cast<float>(threshold);
        if (policy == "random") {
          keep = uniform->f32[t] < gate_2_n[t] * static_cast<float>(1.0 / std::max(threshold, 1e-9));
        }
        if (imp > 0.0f && keep) {
          const size_t e = static_cast<size_t>(index_2[static_cast<size_t>(s)]);
          pos_2[static_cast<size_t>(s)] = first_kept[e] + second_seen[e]++;
        }
        // Combine: first choice, then second choice (they never share an (e, c) element).
        const int64_t p1 = pos_1[static_cast<size_t>(s)], p2 = pos_2[static_cast<size_t>(s)];
        if (p1 >= 0 && p1 < C) {
          want[static_cast<size_t>(((g * S + s) * E + index_1[static_cast<size_t>(s)]) * C + p1)] = gate_1_n[t];
        }
        if (p2 >= 0 && p2 < C) {
          want[static_cast<size_t>(((g * S + s) * E + index_2[static_cast<size_t>(s)]) * C + p2)] = gate_2_n[t];
        }
      }
      for (int64_t s = 0; s < S; ++s) {
        const size_t t = static_cast<size_t>(g * S + s);
        CHECK(step(trace, "index_1").i32[t] == index_1[static_cast<size_t>(s)]);
        CHECK(step(trace, "index_2").i32[t] == index_2[static_cast<size_t>(s)]);
      }
    }
    CHECK(combine.f32 == want);
  }
}
