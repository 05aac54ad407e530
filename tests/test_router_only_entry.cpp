// The router-only entry point (spec/trace-format.md, "Router-only entry point"): every token-choice
// variant runs with scope "gating" from router inputs and weights, or from supplied logits alone,
// gives the same routing either way, records it in index form, and runs no expert.
#include <set>
#include <string>
#include <vector>

#include "moeref/registry.hpp"
#include "torch_test_helpers.hpp"

using namespace moeref::testing;

namespace {

struct RouterCase {
  std::string variant;
  nlohmann::json hparams;
};

// Every registered variant that routes tokens to experts in ranks (index form), with the
// hparams a minimal config needs.
std::vector<RouterCase> router_cases() {
  return {{"mtf_top2", {{"second_policy_train", "all"}}},
          {"lingvo_top2", nlohmann::json::object()},
          {"praxis_top2", nlohmann::json::object()},
          {"hf_switch_top1", {{"expert_capacity", 3}}},
          {"deepspeed_top1", {{"min_capacity", 2}}},
          {"deepspeed_top2", {{"min_capacity", 2}}},
          {"deepspeed_topk", {{"k", 3}, {"min_capacity", 2}}},
          {"hf_nllb_top2", {{"second_expert_policy", "sampling"}, {"expert_capacity", 4}}},
          {"fairseq_top2", nlohmann::json::object()},
          {"tutel_topk", {{"k", 2}, {"gate_noise", 1.0}}},
          {"megablocks_dropless", {{"moe_top_k", 2}}},
          {"praxis_topk", {{"k", 3}}}};
}

}  // namespace

TEST_CASE("router-only entry: logits alone give the routing that router inputs and weights give",
          "[router_only][gating]") {
  const std::set<std::string> expert_steps = {"expert_inputs", "expert_hidden", "expert_outputs", "outputs"};
  for (const RouterCase& c : router_cases()) {
    INFO(c.variant);
    REQUIRE(moeref::find_variant(c.variant) != nullptr);
    const nlohmann::json from_router = {{"variant", c.variant},
                                        {"scope", "gating"},
                                        {"train", true},
                                        {"seed", 7},
                                        {"dims", {{"G", 1}, {"S", 12}, {"E", 4}, {"M", 6}}},
                                        {"hparams", c.hparams}};
    const moeref::Trace with_router = run_json(from_router);
    CHECK(with_router.find_input("x") != nullptr);
    CHECK(with_router.find_input("router_weights") != nullptr);
    for (const moeref::NamedTensor& named : with_router.steps) CHECK(expert_steps.count(named.name) == 0);

    // The same call on the logits the router produced: no x, no router weights, the same draws (by name
    // and seed), the same routing bit for bit.
    nlohmann::json from_logits = from_router;
    from_logits["dims"].erase("M");
    const moeref::Tensor& logits = step(with_router, "logits");
    from_logits["inputs"] = {{"logits", tensor_json({"G", "S", "E"}, {1, 12, 4}, logits.f32)}};
    const moeref::Trace with_logits = run_json(from_logits);
    CHECK(with_logits.find_input("x") == nullptr);
    CHECK(with_logits.find_input("router_weights") == nullptr);
    for (const char* name : {"routing_expert", "routing_slot"}) {
      INFO(name);
      CHECK(step(with_logits, name).i32 == step(with_router, name).i32);
    }
    CHECK(step(with_logits, "routing_weight").f32 == step(with_router, "routing_weight").f32);
  }
}
