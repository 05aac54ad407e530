// Tiny example configs, one per variant (tiny_examples.hpp). Each routes one group
// of a handful of tokens (t0, t1, ...) to four experts as the gating function
// alone, with router inputs generated from seed 0, and lowers the capacity so
// that the expert slots run out: the walkthrough then has drops to explain.
// deepspeed_topk's shows its drop policy's quirk on given negative logits instead.

#include "moeref/teach/tiny_examples.hpp"

#include <cstdint>

namespace moeref {

namespace {

// importance [G=1, S=8]: t7 is padding (mtf's nonpadding).
nlohmann::json mtf_importance() {
  return {{"dims", {"G", "S"}},
          {"shape", {1, 8}},
          {"dtype", "float32"},
          {"data", {1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.0}}};
}

nlohmann::json gating(const std::string& variant, nlohmann::json dims, nlohmann::json hparams) {
  return {{"variant", variant}, {"scope", "gating"},       {"train", true},
          {"seed", 0},          {"dims", std::move(dims)}, {"hparams", std::move(hparams)}};
}

// A seed whose generated router and draws show every rule of the example.
nlohmann::json with_seed(nlohmann::json config, uint64_t seed) {
  config["seed"] = seed;
  return config;
}

nlohmann::json with_importance(nlohmann::json config) {
  config["inputs"] = {{"importance", mtf_importance()}};
  return config;
}

const nlohmann::json kEightTokens = {{"G", 1}, {"S", 8}, {"E", 4}, {"M", 4}};

// deepspeed_topk on the spec page's four tokens and three experts, every logit negative.
nlohmann::json deepspeed_topk_negative_logits() {
  nlohmann::json config = gating("deepspeed_topk", {{"G", 1}, {"S", 4}, {"E", 3}},
                                 {{"k", 2}, {"min_capacity", 1}, {"drop_policy", "probs"}});
  config["inputs"] = {{"logits",
                       {{"dims", {"G", "S", "E"}},
                        {"shape", {1, 4, 3}},
                        {"dtype", "float32"},
                        {"data", {-1.0, -2.0, -3.0, -5.0, -0.5, -6.0, -4.0, -0.2, -0.1, -3.5, -0.3, -0.4}}}}};
  return config;
}

std::vector<TinyExample> make_examples() {
  const nlohmann::json mtf_capacity = {{"capacity_factor_train", 1.0}, {"min_expert_capacity", 1}};
  return {
      {"mtf_top2",
       "C = 2 slots for up to 16 choices: first choices overflow, second choices queue behind them, the random "
       "policy drops a second choice by its draw (seed 6), and t7 is padding.",
       with_seed(with_importance(gating("mtf_top2", kEightTokens, mtf_capacity)), 6)},
      {"lingvo_top2",
       "expert_capacity_dim 2 with no capacity factor gives C = 2; the random policy with threshold 0.5 keeps "
       "second choices by draws.",
       gating("lingvo_top2", kEightTokens,
              {{"expert_capacity_dim", 2}, {"second_expert_policy", "random"}, {"second_expert_threshold", 0.5}})},
      {"praxis_top2",
       "capacity_factor null leaves C = expert_capacity_dim = 2; the greedy policy (all) keeps every second choice "
       "that fits.",
       gating("praxis_top2", kEightTokens, {{"expert_capacity_dim", 2}, {"capacity_factor", nullptr}})},
      {"lingvo_expert_choice", "Each expert takes its 2 best tokens: some tokens get two experts, some none.",
       gating("lingvo_expert_choice", kEightTokens, {{"expert_capacity_dim", 2}})},
      {"praxis_expert_choice", "Each expert takes its 2 best tokens (ties go to the higher token index).",
       gating("praxis_expert_choice", kEightTokens, {{"expert_capacity_dim", 2}, {"capacity_factor", nullptr}})},
      {"lingvo_hash", "Generated hash ids send tokens to experts; C = 2 drops the third token sent to an expert.",
       gating("lingvo_hash", kEightTokens, {{"expert_capacity_dim", 2}})},
      {"mtf_switch",
       "Top-1 with C = 2: the router input is jittered by recorded draws, overflowing tokens are dropped, t7 is "
       "padding.",
       with_importance(gating("mtf_switch", kEightTokens, mtf_capacity))},
      {"mtf_switch_max", "Top-1 with C = 2, but each expert keeps its 2 most confident tokens instead of the first 2.",
       with_importance(gating("mtf_switch_max", kEightTokens, mtf_capacity))},
      {"mtf_expert_selection", "Each expert selects its 2 best tokens by a softmax over the tokens.",
       with_importance(gating("mtf_expert_selection", kEightTokens, mtf_capacity))},
      {"mtf_ntlb", "No token left behind with K = 2: a token whose first expert is full tries its second.",
       with_importance(gating("mtf_ntlb", kEightTokens,
                              {{"capacity_factor_train", 1.0}, {"min_expert_capacity", 1}, {"ntlb_top_k", 2}}))},
      {"mtf_moe2d", "Two levels: 2 outer expert groups, each with 2 inner experts.",
       gating("mtf_moe2d", {{"G", 1}, {"S", 8}, {"M", 4}},
              {{"expert_x", 2}, {"expert_y", 2}, {"capacity_factor_train", 1.0}, {"min_expert_capacity", 1}})},
      {"stmoe_topn",
       "Twelve tokens, top-2 with C = max(int(12 * 1.25 / 4), 4) = 4; second choices are kept by draws "
       "(threshold 0.5).",
       gating("stmoe_topn", {{"G", 1}, {"S", 12}, {"E", 4}, {"M", 4}}, {{"threshold_train", 0.5}})},
      {"flaxformer_tokens_choose",
       "C = round(1.25 * 8 / 4) = round(2.5) = 2 (half to even); top-2 with batch-prioritized routing.",
       gating("flaxformer_tokens_choose", kEightTokens, {{"min_expert_capacity", 1}})},
      {"flaxformer_experts_choose", "Each expert takes its C = round(1.0 * 8 / 4) = 2 best tokens.",
       gating("flaxformer_experts_choose", kEightTokens, {{"min_expert_capacity", 1}})},
      {"hf_switch_top1",
       "expert_capacity 2: each expert takes the first 2 tokens that chose it, in token order; a dropped token "
       "keeps its router probability but gets no expert output.",
       gating("hf_switch_top1", kEightTokens, {{"expert_capacity", 2}})},
      {"deepspeed_top1",
       "C = ceil(8 / 4 * 1.0) = 2; random token selection (use_rts) keeps the 2 tokens with the largest draws.",
       gating("deepspeed_top1", kEightTokens, {{"capacity_factor", 1.0}, {"min_capacity", 0}})},
      {"deepspeed_top2",
       "C = ceil(8 / 4 * 2 * 0.5) = 2; the second expert is sampled with Gumbel noise, second choices queue "
       "behind every first choice, and the gates are renormalised after the drops.",
       gating("deepspeed_top2", kEightTokens, {{"capacity_factor", 0.5}, {"min_capacity", 0}})},
      {"deepspeed_topk",
       "The drop policy's quirk on negative logits (spec/variants/deepspeed_topk.md): k = 2, C = ceil(4 / 3 * 2) "
       "= 3 for four tokens and three experts. 'probs' ranks each expert's column by logit with the tokens that "
       "did not choose it at 0, so expert e0, chosen by t0 and t1 with room for three, keeps t0 and drops t1.",
       deepspeed_topk_negative_logits()},
      {"hf_nllb_top2", "expert_capacity 2; the random policy keeps a second choice when 2 * p2 is above its draw.",
       gating("hf_nllb_top2", kEightTokens, {{"expert_capacity", 2}, {"second_expert_policy", "random"}})},
      {"fairseq_top2",
       "C = 2 * ceil(8 / 4) = 4 in training; the random policy keeps a second choice when 2 * gate2 is above its "
       "draw.",
       gating("fairseq_top2", kEightTokens, {{"second_expert_policy", "random"}})},
      {"tutel_topk", "k = 2 with C = 2 * int(0.5 * ceil(8 / 4)) = 2: first choices claim slots before second choices.",
       gating("tutel_topk", kEightTokens, {{"k", 2}, {"capacity_factor", 0.5}})},
      {"megablocks_dropless", "Top-2 with nothing dropped: each expert's bin grows to the tokens it receives.",
       gating("megablocks_dropless", kEightTokens, {{"moe_top_k", 2}})},
      {"praxis_topk", "k = 2 with C = expert_capacity_dim = 2 (capacity_factor null).",
       gating("praxis_topk", kEightTokens, {{"k", 2}, {"expert_capacity_dim", 2}, {"capacity_factor", nullptr}})},
  };
}

}  // namespace

const std::vector<TinyExample>& tiny_examples() {
  static const std::vector<TinyExample> examples = make_examples();
  return examples;
}

nlohmann::json tiny_example_config(const std::string& variant_id) {
  for (const TinyExample& example : tiny_examples()) {
    if (example.variant == variant_id) return example.config;
  }
  return gating(variant_id, kEightTokens, nlohmann::json::object());
}

}  // namespace moeref
