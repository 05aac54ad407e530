// mtf_switch invariants on generated layers, for every policy in training and
// evaluation: each token holds at most one slot, no expert takes more than C
// tokens, slots fill in token order, the weight is the chosen expert's raw
// probability, dispatch is exactly where combine is non-zero, and the index form
// says the same as the dense tensors (tensorflow/mesh,
// mesh_tensorflow/transformer/moe.py at da90793, _switch_gating).
#include <cstdint>
#include <string>
#include <vector>

#include "mtf_switch_test_helpers.hpp"
#include "test_support.hpp"

using namespace moeref::testing::mtf;

namespace {

// G = 2 groups of S = 12 tokens, E = 3, C = int(12 * 1.25 / 3) = 5 in training: some
// tokens overflow. Importance marks every fifth token as padding.
json generated_layer(const std::string& policy, bool train, int seed) {
  json config = {{"variant", "mtf_switch"},
                 {"scope", "layer"},
                 {"train", train},
                 {"seed", seed},
                 {"dims", {{"B", 2}, {"L", 12}, {"E", 3}, {"M", 6}, {"H", 4}}},
                 {"hparams",
                  {{"group_size", 12},
                   {"switch_policy_train", policy},
                   {"switch_policy_eval", policy},
                   {"switch_dropout", 0.3},
                   {"min_expert_capacity", 0},
                   {"z_loss", 1e-3}}}};
  std::vector<float> importance(24, 1.0f);
  for (size_t t = 0; t < importance.size(); t += 5) importance[t] = 0.0f;
  config["inputs"]["importance"] = tensor_json({"B", "L"}, {2, 12}, importance);
  return config;
}

}  // namespace

TEST_CASE("mtf_switch invariants for every policy, train and eval", "[mtf_switch][invariants]") {
  for (const std::string policy : {"argmax", "input_dropout", "input_jitter", "sample"}) {
    for (bool train : {true, false}) {
      for (int seed : {1, 2, 3}) {
        INFO("policy " << policy << ", train " << train << ", seed " << seed);
        const Trace trace = run_json(generated_layer(policy, train, seed));
        check_routing_invariants(trace);
        check_dispatch_from_combine(trace);
        const Tensor& combine = step(trace, "combine_tensor");
        const Tensor& raw_gates = step(trace, "raw_gates");
        const Tensor& expert_index = step(trace, "expert_index");
        const Tensor& importance = step(trace, "importance");
        const int64_t G = combine.shape[0], S = combine.shape[1], E = combine.shape[2], C = combine.shape[3];
        for (int64_t g = 0; g < G; ++g) {
          std::vector<int64_t> next_slot(static_cast<size_t>(E), 0);
          for (int64_t s = 0; s < S; ++s) {
            int slots = 0;
            for (int64_t e = 0; e < E; ++e) {
              for (int64_t c = 0; c < C; ++c) {
                const float w = f_at(combine, {g, s, e, c});
                if (w == 0.0f) continue;
                ++slots;
                // The chosen expert, the next free slot in token order, the raw probability.
                CHECK(e == i_at(expert_index, {g, s}));
                CHECK(c == next_slot[static_cast<size_t>(e)]);
                CHECK(w == f_at(raw_gates, {g, s, e}));
                ++next_slot[static_cast<size_t>(e)];
              }
            }
            CHECK(slots <= 1);
            // Padding is never routed.
            if (f_at(importance, {g, s}) != 1.0f) CHECK(slots == 0);
          }
        }
        // The index form agrees with the dense tensors.
        const Tensor& slot = step(trace, "routing_slot");
        const Tensor& weight = step(trace, "routing_weight");
        for (int64_t t = 0; t < G * S; ++t) {
          const int64_t g = t / S, s = t % S;
          const int32_t c = slot.i32[static_cast<size_t>(t)];
          if (c < 0) continue;
          CHECK(weight.f32[static_cast<size_t>(t)] == f_at(combine, {g, s, i_at(expert_index, {g, s}), c}));
        }
        // z-loss only when training.
        CHECK((trace.find_step("z_loss") != nullptr) == train);
      }
    }
  }
}
