// The rows 14 to 20 of spec/variants/top2_differences.md: where the PyTorch routers (hf_switch_top1,
// deepspeed_top1/top2/topk, fairseq_top2, hf_nllb_top2, tutel_topk, megablocks_dropless) and
// praxis_topk answer differently from each other and from the GShard lineage on the same input.
// Each test is named "differences row NN" and tagged [differences]; every expected value is derived
// by hand in the comments (the variant pages give the rules).
#include <string>
#include <vector>

#include "torch_test_helpers.hpp"

using namespace moeref::testing;

namespace {

// `variant` in scope "gating" on supplied logits [1, S, E].
moeref::Trace route(const std::string& variant, int64_t S, int64_t E, const std::vector<float>& logits,
                    nlohmann::json hparams, bool train = true, nlohmann::json extra_inputs = nlohmann::json::object()) {
  nlohmann::json config = {{"variant", variant},
                           {"scope", "gating"},
                           {"train", train},
                           {"dims", {{"G", 1}, {"S", S}, {"E", E}}},
                           {"hparams", std::move(hparams)},
                           {"inputs", {{"logits", tensor_json({"G", "S", "E"}, {1, S, E}, logits)}}}};
  for (auto& [name, tensor] : extra_inputs.items()) config["inputs"][name] = tensor;
  return run_json(config);
}

int64_t capacity(const moeref::Trace& trace) { return trace.capacity["expert_capacity"]; }

}  // namespace

TEST_CASE("differences row 14: capacity formulas on S = 25, E = 2, capacity factor 1.2", "[differences]") {
  const std::vector<float> logits(50, 0.0f);
  // mtf: max(min(25, int(25 * 1.2 / 2)), 4) = int(15.0) = 15 (25 * 1.2 is 30.0 in doubles).
  CHECK(capacity(route("mtf_top2", 25, 2, logits, {{"capacity_factor_train", 1.2}, {"second_policy_train", "all"}})) ==
        15);
  // praxis top2 / topk: auto = 15 > C0 = 0: rounded up to a multiple of 4: 16.
  CHECK(capacity(route("praxis_top2", 25, 2, logits, {{"capacity_factor", 1.2}})) == 16);
  CHECK(capacity(route("praxis_topk", 25, 2, logits, {{"capacity_factor", 1.2}})) == 16);
  // DeepSpeed top-1: ceil(f32(12.5) * f32(1.2)) = ceil(15.000001) = 16; top-2: factor f32(2.4):
  // 12.5 * 2.4000001 = 30.000002 -> 31 (doubles would give 30).
  CHECK(capacity(route("deepspeed_top1", 25, 2, logits, {{"capacity_factor", 1.2}, {"min_capacity", 0}})) == 16);
  CHECK(capacity(route("deepspeed_top2", 25, 2, logits, {{"capacity_factor", 1.2}, {"min_capacity", 0}})) == 31);
  // fairseq and NLLB (expert_capacity None): 2 * ceil(25 / 2) = 26, no factor at all.
  CHECK(capacity(route("fairseq_top2", 25, 2, logits, {{"second_expert_policy", "all"}})) == 26);
  CHECK(capacity(route("hf_nllb_top2", 25, 2, logits, {{"expert_capacity", nullptr}})) == 26);
  // Tutel, k = 2: k * int(1.2 * ceil(25 / 2)) = 2 * int(15.6) = 30.
  CHECK(capacity(route("tutel_topk", 25, 2, logits, {{"k", 2}, {"capacity_factor", 1.2}})) == 30);
  // Hugging Face Switch: the fixed expert_capacity (64), whatever S and E.
  CHECK(capacity(route("hf_switch_top1", 25, 2, logits, nlohmann::json::object())) == 64);
}

TEST_CASE("differences row 15: which tokens an over-full expert keeps", "[differences]") {
  // Four tokens all choosing e0, logits t0 1, t1 3, t2 2, t3 4 (e1 at 0); two slots.
  const std::vector<float> logits = {1, 0, 3, 0, 2, 0, 4, 0};
  // Token order (Switch, Tutel without BPR): t0 and t1.
  CHECK(step(route("hf_switch_top1", 4, 2, logits, {{"expert_capacity", 2}}), "routing_slot").i32 ==
        std::vector<int32_t>{0, 1, -1, -1});
  CHECK(step(route("tutel_topk", 4, 2, logits, {{"capacity_factor", 1.0}}), "routing_slot").i32 ==
        std::vector<int32_t>{0, 1, -1, -1});
  // DeepSpeed top-1 with random token selection: the largest draws (t1 0.9, t3 0.7), slots in token order.
  const nlohmann::json draws = {
      {"rts_uniform", tensor_json({"G", "S", "E"}, {1, 4, 2}, {0.1f, 0.1f, 0.9f, 0.9f, 0.5f, 0.5f, 0.7f, 0.7f})}};
  CHECK(step(route("deepspeed_top1", 4, 2, logits, {{"capacity_factor", 1.0}, {"min_capacity", 0}}, true, draws),
             "routing_slot")
            .i32 == std::vector<int32_t>{-1, 0, -1, 1});
  // DeepSpeed top-k 'probs': the largest logits (t3 4, t1 3), slots in token order.
  CHECK(step(route("deepspeed_topk", 4, 2, logits, {{"k", 1}, {"capacity_factor", 1.0}, {"min_capacity", 0}}),
             "routing_slot")
            .i32 == std::vector<int32_t>{-1, 0, -1, 1});
  // Tutel with batch-prioritized routing: the most confident first, slots in that order (t3 0, t1 1).
  CHECK(step(route("tutel_topk", 4, 2, logits, {{"capacity_factor", 1.0}, {"batch_prioritized_routing", true}}),
             "routing_slot")
            .i32 == std::vector<int32_t>{-1, 1, -1, 0});
  // MegaBlocks: dropless, every token keeps its expert.
  CHECK(step(route("megablocks_dropless", 4, 2, logits, nlohmann::json::object()), "routing_slot").i32 ==
        std::vector<int32_t>{0, 1, 2, 3});
}

TEST_CASE("differences row 16: renormalisation before the drop, after it, or never", "[differences]") {
  // t0, t1 [1, 0]; t2, t3 [0, 1]; two slots per expert. The first choices fill both experts and every
  // second choice is dropped. What weight does t0's surviving first choice carry?
  const std::vector<float> logits = {1, 0, 1, 0, 0, 1, 0, 1};
  auto first_weight = [](const moeref::Trace& trace) { return step(trace, "routing_weight").f32[0]; };
  // After the drop (fairseq's default, NLLB's default, DeepSpeed top-2, lingvo non-legacy): 1.
  CHECK(first_weight(route("fairseq_top2", 4, 2, logits,
                           {{"second_expert_policy", "all"}, {"moe_eval_capacity_token_fraction", 0.5}}, false)) ==
        1.0f);
  CHECK(first_weight(route("hf_nllb_top2", 4, 2, logits, {{"expert_capacity", 2}})) == 1.0f);
  CHECK(first_weight(route("deepspeed_top2", 4, 2, logits,
                           {{"capacity_factor", 0.5}, {"min_capacity", 0}, {"top2_2nd_expert_sampling", false}})) ==
        1.0f);
  CHECK(first_weight(
            route("lingvo_top2", 4, 2, logits, {{"expert_capacity_dim", 2}, {"legacy_mtf_behavior", false}})) == 1.0f);
  // Before the drop (Tutel normalize_gate, praxis_topk, mtf): p0 / (p0 + p1) = 0.7310586, never revisited.
  CHECK(first_weight(route("tutel_topk", 4, 2, logits, {{"k", 2}, {"capacity_factor", 0.5}})) ==
        Approx(0.7310586f).epsilon(1e-6));
  CHECK(first_weight(route("praxis_topk", 4, 2, logits, {{"capacity_factor", nullptr}, {"expert_capacity_dim", 2}})) ==
        Approx(0.7310586f).epsilon(1e-6));
  CHECK(first_weight(route("mtf_top2", 4, 2, logits, {{"expert_capacity", 2}, {"second_policy_train", "all"}})) ==
        Approx(0.7310586f).epsilon(1e-6));
  // Never (MegaBlocks without moe_normalize_expert_weights): the raw probability, and nothing is dropped.
  const moeref::Trace megablocks = route("megablocks_dropless", 4, 2, logits, {{"moe_top_k", 2}});
  CHECK(step(megablocks, "routing_weight").f32[1] == Approx(0.26894143f).epsilon(1e-6));
}

TEST_CASE("differences row 17: rank-major slots against ranks merged in token order", "[differences]") {
  // t0 [2, 1] -> e0 then e1; t1 [1, 2] -> e1 then e0; one slot per expert (C = ceil(1 * 1.0) = 1).
  // DeepSpeed top-2 (rank-major): the first choices take both slots, both second choices are dropped.
  const moeref::Trace top2 =
      route("deepspeed_top2", 2, 2, {2, 1, 1, 2},
            {{"capacity_factor", 0.5}, {"min_capacity", 0}, {"top2_2nd_expert_sampling", false}});
  CHECK(step(top2, "routing_slot").i32 == std::vector<int32_t>{0, -1, 0, -1});
  // DeepSpeed top-k 'position' (k = 2): the locations run over the merged mask in token order, so t0
  // takes e0 AND e1 (its second choice before t1's first), and t1 gets nothing.
  const moeref::Trace topk =
      route("deepspeed_topk", 2, 2, {2, 1, 1, 2},
            {{"k", 2}, {"capacity_factor", 0.5}, {"min_capacity", 0}, {"drop_policy", "position"}});
  CHECK(step(topk, "routing_slot").i32 == std::vector<int32_t>{0, 0, -1, -1});
}

TEST_CASE("differences row 18: the mask the balance loss counts: after capacity (dropped = expert 0) or before",
          "[differences]") {
  // t0 [0, 1] -> e1, t1 [0, 2] -> e1 (dropped: one slot), t2 [0, 0] -> e0. Switch counts t1 as expert 0:
  // fractions [2/3, 1/3], loss 0.8640321 (tests/test_hf_switch_top1_router.cpp). DeepSpeed top-1 counts
  // the choices before capacity, [1/3, 2/3]: sum(me * ce) * E = 2 * (0.2960481 / 3 + 0.7039519 * 2 / 3)
  // = 1.1359679. Both drop t1.
  const std::vector<float> logits = {0, 1, 0, 2, 0, 0};
  const moeref::Trace hf = route("hf_switch_top1", 3, 2, logits, {{"expert_capacity", 1}});
  const moeref::Trace ds =
      route("deepspeed_top1", 3, 2, logits, {{"capacity_factor", 0.5}, {"min_capacity", 0}, {"use_rts", false}});
  CHECK(step(hf, "routing_slot").i32 == step(ds, "routing_slot").i32);
  CHECK(loss(hf, "encoder_aux_loss") == Approx(0.8640321f).epsilon(1e-6));
  CHECK(loss(ds, "l_aux") == Approx(1.1359679f).epsilon(1e-6));
}

TEST_CASE("differences row 19: the balance loss with k = 2: first choices only, or all k divided by k",
          "[differences]") {
  // Two tokens [1, 0]: me = [0.7310586, 0.2689414]. First choices only (DeepSpeed top-2, fairseq, Tutel,
  // praxis_topk): f = [1, 0], E^2 * mean(f * me) = 4 * 0.3655293 = 1.4621172. All choices / k (DeepSpeed
  // top-k, MegaBlocks with weight 1): f = [1, 1], 4 * mean(me) / 2 = 1.
  const std::vector<float> logits = {1, 0, 1, 0};
  CHECK(loss(route("deepspeed_top2", 2, 2, logits, {{"min_capacity", 0}, {"top2_2nd_expert_sampling", false}}),
             "l_aux") == Approx(1.4621172f).epsilon(1e-6));
  CHECK(loss(route("fairseq_top2", 2, 2, logits, {{"second_expert_policy", "all"}}), "moe_gate_loss") ==
        Approx(1.4621172f).epsilon(1e-6));
  CHECK(loss(route("tutel_topk", 2, 2, logits, {{"k", 2}}), "l_aux") == Approx(1.4621172f).epsilon(1e-6));
  CHECK(loss(route("praxis_topk", 2, 2, logits, {{"capacity_factor", nullptr}, {"expert_capacity_dim", 2}}),
             "aux_loss") == Approx(1.4621172f).epsilon(1e-6));
  CHECK(loss(route("deepspeed_topk", 2, 2, logits, {{"k", 2}, {"min_capacity", 0}, {"drop_policy", "position"}}),
             "l_aux") == Approx(1.0f).epsilon(1e-6));
  CHECK(loss(route("megablocks_dropless", 2, 2, logits, {{"moe_top_k", 2}, {"moe_loss_weight", 1.0}}),
             "load_balancing_loss") == Approx(1.0f).epsilon(1e-6));
}

TEST_CASE("differences row 20: capacity per sequence or over every token of the call", "[differences]") {
  // Two sequences of two tokens, all choosing e0, one slot. Switch counts per sequence: each
  // sequence's first token keeps e0. DeepSpeed routes the four tokens as one group: only token 0.
  const std::vector<float> x = {1, 0, 1, 0, 1, 0, 1, 0};
  auto config = [&](const std::string& variant, nlohmann::json hparams) {
    return nlohmann::json{{"variant", variant},
                          {"scope", "gating"},
                          {"dims", {{"B", 2}, {"L", 2}, {"E", 2}, {"M", 2}}},
                          {"hparams", std::move(hparams)},
                          {"inputs",
                           {{"x", tensor_json({"B", "L", "M"}, {2, 2, 2}, x)},
                            {"router_weights", tensor_json({"M", "E"}, {2, 2}, {1, 0, 0, 1})}}}};
  };
  const moeref::Trace hf = run_json(config("hf_switch_top1", {{"expert_capacity", 1}, {"router_jitter_noise", 0.0}}));
  CHECK(step(hf, "routing_slot").i32 == std::vector<int32_t>{0, -1, 0, -1});
  const moeref::Trace ds =
      run_json(config("deepspeed_top1", {{"capacity_factor", 0.5}, {"min_capacity", 0}, {"use_rts", false}}));
  CHECK(step(ds, "routing_slot").i32 == std::vector<int32_t>{0, -1, -1, -1});
}
