// The glossary (spec/glossary.md) is generated from the registry: it must match
// what the declarations give today, every hyperparameter must have a topic, and
// every name a reader of tensorflow/mesh issue #276 asks about must be found.
#include <algorithm>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "moeref/registry.hpp"
#include "moeref/teach/glossary.hpp"
#include "moeref/teach/hparam_topics.hpp"
#include "test_support.hpp"

using moeref::testing::read_text;
using moeref::testing::run_cli;

namespace {

const char* const kRegenerate =
    "spec/glossary.md is stale: regenerate it with tools/regen_glossary.sh "
    "(or: build/moeref variants --glossary > spec/glossary.md) and commit the result";

// "line N: checked in <...>, generated <...>" for the first line that differs.
std::string first_difference(const std::string& checked_in, const std::string& generated) {
  std::istringstream a(checked_in), b(generated);
  std::string line_a, line_b;
  for (int number = 1;; ++number) {
    const bool more_a = static_cast<bool>(std::getline(a, line_a));
    const bool more_b = static_cast<bool>(std::getline(b, line_b));
    if (!more_a && !more_b) return "no line differs (trailing bytes do)";
    if (!more_a || !more_b || line_a != line_b) {
      return "line " + std::to_string(number) + ":\n  checked in: " + (more_a ? line_a : "<end of file>") +
             "\n  generated:  " + (more_b ? line_b : "<end of file>");
    }
  }
}

}  // namespace

TEST_CASE("glossary: spec/glossary.md is what the registry generates", "[glossary]") {
  const std::string checked_in = read_text(std::string(MOEREF_SOURCE_DIR) + "/spec/glossary.md");
  const std::string generated = moeref::glossary_markdown() + "\n";
  INFO(kRegenerate << "\nfirst difference, " << first_difference(checked_in, generated));
  CHECK(checked_in == generated);
}

TEST_CASE("glossary: every hyperparameter of every variant declares a known topic and has a row", "[glossary]") {
  const std::string page = moeref::glossary_markdown();
  for (const moeref::VariantSpec& variant : moeref::all_variants()) {
    for (const moeref::HparamSpec& spec : variant.hparams) {
      INFO(variant.id << "." << spec.name << " declares .about(\"" << spec.topic
                      << "\"); every hparam needs .about(KEY) with a KEY of src/teach/hparam_topics.cpp");
      REQUIRE(moeref::find_hparam_topic(spec.topic) != nullptr);
      // Its row names it and the variant (rows shared by identical declarations list every variant).
      CHECK(page.find("| `" + spec.name + "` | ") != std::string::npos);
      CHECK(page.find("`" + variant.id + "`") != std::string::npos);
    }
  }
  // Topic keys are unique, and each topic's implementation names are known ones.
  std::set<std::string> keys;
  for (const moeref::HparamTopic& topic : moeref::hparam_topics()) {
    INFO("topic " << topic.key);
    CHECK(keys.insert(topic.key).second);
    const auto& themes = moeref::glossary_themes();
    CHECK(std::find(themes.begin(), themes.end(), topic.theme) != themes.end());
    for (const moeref::TopicNames& names : topic.elsewhere) {
      const auto& known = moeref::glossary_implementations();
      CHECK(std::find(known.begin(), known.end(), names.implementation) != known.end());
    }
  }
}

TEST_CASE("glossary: the variant ids' origins name their implementations", "[glossary]") {
  CHECK(moeref::implementation_of_variant("mtf_top2") == "mtf");
  CHECK(moeref::implementation_of_variant("stmoe_topn") == "st-moe-pytorch");
  CHECK(moeref::implementation_of_variant("flaxformer_experts_choose") == "flaxformer");
  CHECK(moeref::implementation_of_variant("hf_nllb_top2") == "Hugging Face");
  CHECK(moeref::implementation_of_variant("deepspeed_top2") == "DeepSpeed");
  CHECK(moeref::implementation_of_variant("newlib_top1") == "newlib");
}

// tensorflow/mesh issue #276 quotes MoE1D's and MoE2D's constructor arguments (with
// the names from before commit b1b5364) and asks what each means. Each must lead
// to a topic whose entry names it, and the glossary must list it.
TEST_CASE("glossary: every argument quoted in tensorflow/mesh issue #276 is found by its own name", "[glossary]") {
  const std::vector<std::string> quoted = {
      "num_experts", "loss_coef", "hidden_size", "group_size", "capacity_factor_train", "capacity_factor_eval",
      "use_second_place_loss", "second_policy_train", "second_policy_eval", "second_threshold_train",
      "second_threshold_eval", "dropout_rate", "activation", "moe_gating", "min_expert_capacity", "rand_1_policy_train",
      "rand_1_policy_eval", "rand_1_dropout", "rand_1_temperature", "rand_1_jitter", "switch_top_k", "output_dim",
      "use_experts_attention", "expert_x", "expert_y", "capacity_factor_second_level",
      // and the hparams MoE1D stores them as
      "moe_num_experts", "moe_rand_1_jitter", "moe_second_policy_train", "moe_switch_top_k"};
  const std::string page = moeref::glossary_markdown();
  for (const std::string& name : quoted) {
    INFO(name);
    const std::string found = moeref::glossary_search(name);
    CHECK(found.find(name) != std::string::npos);
    CHECK(page.find("| `" + name + "` | ") != std::string::npos);
  }
  // The old name leads to its new one.
  CHECK(moeref::glossary_search("rand_1_jitter").find("switch_jitter") != std::string::npos);
  CHECK(moeref::glossary_search("switch_top_k").find("ntlb_top_k") != std::string::npos);
}

TEST_CASE("glossary: one idea is found by every implementation's name for it", "[glossary]") {
  struct Case {
    std::string word, topic_anchor, also_shows;
  };
  const std::vector<Case> cases = {
      {"moe_second_policy_train", "#second_expert_policy", "second_expert_policy"},  // mtf hparam -> lingvo's name
      {"second_expert_policy", "#second_expert_policy", "second_policy_train"},      // lingvo -> mtf
      {"capacity_factor_eval", "#capacity_factor", "eval_capacity_factor"},          // mtf -> DeepSpeed, flaxformer
      {"router_z_loss_coef", "#z_loss_coef", "router_z_loss_factor"},                // st-moe, HF -> t5x
      {"--moe-gate-loss-wt", "#balance_loss_coef", "loss_coef"},                     // a fairseq flag -> mtf
      {"NUM_SELECTED_EXPERTS", "#top_k", "num_selected_experts"},                    // t5x gin, any case
  };
  for (const Case& c : cases) {
    INFO(c.word);
    const std::string found = moeref::glossary_search(c.word);
    CHECK(found.find(c.topic_anchor) != std::string::npos);
    CHECK(found.find(c.also_shows) != std::string::npos);
  }
  CHECK(moeref::glossary_search("no_such_setting_anywhere").empty());
}

TEST_CASE("cli: variants --glossary prints the page and --search finds names", "[glossary][cli]") {
  const auto glossary = run_cli("variants --glossary");
  CHECK(glossary.exit_code == 0);
  CHECK(glossary.output == moeref::glossary_markdown() + "\n");

  const auto found = run_cli("variants --search rand_1_jitter");
  CHECK(found.exit_code == 0);
  CHECK(found.output.find("switch_jitter") != std::string::npos);
  CHECK(found.output.find("router_jitter_noise") != std::string::npos);  // Hugging Face's name

  const auto missing = run_cli("variants --search no_such_setting_anywhere");
  CHECK(missing.exit_code == 1);
  CHECK(missing.output.find("no hyperparameter") != std::string::npos);

  const auto both = run_cli("variants mtf_top2 --glossary");
  CHECK(both.exit_code == 2);
  CHECK(both.output.find("one of them at a time") != std::string::npos);
}
