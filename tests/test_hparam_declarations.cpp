// The typed hyperparameter declarations (include/moeref/hparams.hpp,
// include/moeref/frame/hparam_table.hpp): defaults obey their own rules, train/eval
// names say when they are read, and other spellings get "did you mean".

#include <catch2/catch.hpp>
#include <optional>
#include <string>
#include <vector>

#include "moeref/error.hpp"
#include "moeref/frame/hparam_table.hpp"
#include "moeref/registry.hpp"

using Catch::Matchers::Contains;

TEST_CASE("hparam declarations: every default is allowed by its own declaration", "[hparams]") {
  for (const moeref::VariantSpec& variant : moeref::all_variants()) {
    for (const moeref::HparamSpec& hparam : variant.hparams) {
      INFO(variant.id << " hparam " << hparam.name << " default " << hparam.default_value.dump());
      // A null default on a hparam that cannot be null marks one the source requires
      // (lingvo's expert_capacity_dim): the variant names it when it is missing.
      if (hparam.default_value.is_null() && !hparam.nullable) continue;
      CHECK_NOTHROW(moeref::check_hparam_value(hparam, hparam.default_value));
    }
  }
}

TEST_CASE("hparam declarations: every hparam says what it means and where the source reads it", "[hparams]") {
  for (const moeref::VariantSpec& variant : moeref::all_variants()) {
    for (const moeref::HparamSpec& hparam : variant.hparams) {
      INFO(variant.id << " hparam " << hparam.name);
      CHECK_FALSE(hparam.meaning.empty());
      CHECK_FALSE(hparam.cited_source.empty());
    }
  }
}

TEST_CASE("hparam declarations: *_train and *_eval hparams are read only in their mode", "[hparams]") {
  for (const moeref::VariantSpec& variant : moeref::all_variants()) {
    for (const moeref::HparamSpec& hparam : variant.hparams) {
      INFO(variant.id << " hparam " << hparam.name);
      const std::string& name = hparam.name;
      const bool train_name = name.size() > 6 && name.compare(name.size() - 6, 6, "_train") == 0;
      const bool eval_name = name.size() > 5 && name.compare(name.size() - 5, 5, "_eval") == 0;
      if (train_name) CHECK(hparam.mode == moeref::HparamMode::kTrainOnly);
      if (eval_name) CHECK(hparam.mode == moeref::HparamMode::kEvalOnly);
    }
  }
}

TEST_CASE("hparam declarations: a source's prefixed or other name gets did you mean", "[hparams][config]") {
  const moeref::VariantSpec* mtf = moeref::find_variant("mtf_top2");
  REQUIRE(mtf != nullptr);
  // An alias declared with known_as: mtf's transformer hparams carry a moe_ prefix.
  CHECK_THROWS_WITH(moeref::resolve_hparams(mtf->hparams, {{"moe_second_policy_train", "all"}}),
                    Contains("hparams.moe_second_policy_train") && Contains("did you mean second_policy_train?") &&
                        Contains("group_size"));
  // A prefix nobody declared still finds the name it ends with.
  CHECK_THROWS_WITH(moeref::resolve_hparams(mtf->hparams, {{"router_group_size", 8}}),
                    Contains("did you mean group_size?") && Contains("\"router_\""));
  // A name unlike any gets the plain list.
  try {
    moeref::resolve_hparams(mtf->hparams, {{"temperature", 1.0}});
    FAIL("an unknown hparam was accepted");
  } catch (const moeref::InputError& error) {
    CHECK_THAT(error.what(), Contains("unknown hyperparameter") && Contains("second_policy_eval"));
    CHECK_THAT(error.what(), !Contains("did you mean"));
  }
}

namespace {

struct Example {
  bool flag = false;
  int64_t count = 0;
  double rate = 0.0;
  std::string policy;
  std::vector<std::string> activation;
  std::optional<int64_t> capacity;
  std::optional<double> factor;
  std::optional<std::vector<int64_t>> padding;
};

}  // namespace

TEST_CASE("hparam table: declarations parse into the typed struct, null as nullopt", "[hparams]") {
  moeref::HparamTable<Example> table;
  table.flag("flag", &Example::flag).defaults_to(true).means("a flag");
  table.integer("count", &Example::count).defaults_to(3).between(0, 9).means("a count");
  table.number("rate", &Example::rate).defaults_to(0.5).at_least(0.0).means("a rate");
  table.choice("policy", &Example::policy, {"all", "none"}).defaults_to("all").train_only().means("a policy");
  table.choice_list("activation", &Example::activation, {"relu", "gelu"}).defaults_to("relu").means("an act");
  table.optional_integer("capacity", &Example::capacity).between(0, 9).means("a capacity");
  table.optional_number("factor", &Example::factor).at_least(0.0).means("a factor");
  table.optional_integer_list("padding", &Example::padding).between(-4, 3).means("experts");
  const std::vector<moeref::HparamSpec> specs = table.specs();
  REQUIRE(specs.size() == 8);
  CHECK(specs[3].mode == moeref::HparamMode::kTrainOnly);
  CHECK(specs[5].nullable);
  CHECK(moeref::describe_allowed(specs[1]) == "an integer in [0, 9]");
  CHECK(moeref::describe_allowed(specs[2]) == "a finite number >= 0");
  CHECK(moeref::describe_allowed(specs[5]) == "an integer in [0, 9], or null");

  const nlohmann::json resolved = moeref::resolve_hparams(
      specs, {{"count", 7}, {"activation", {"gelu", "relu"}}, {"factor", 1.5}, {"padding", {-1, 2}}});
  const Example parsed = table.parse(resolved);
  CHECK(parsed.flag);
  CHECK(parsed.count == 7);
  CHECK(parsed.rate == 0.5);
  CHECK(parsed.policy == "all");
  CHECK(parsed.activation == std::vector<std::string>{"gelu", "relu"});
  CHECK_FALSE(parsed.capacity.has_value());
  REQUIRE(parsed.factor.has_value());
  CHECK(*parsed.factor == 1.5);
  REQUIRE(parsed.padding.has_value());
  CHECK(*parsed.padding == std::vector<int64_t>{-1, 2});
  // A single activation name reads as a list of one.
  CHECK(table.parse(moeref::resolve_hparams(specs, nlohmann::json::object())).activation ==
        std::vector<std::string>{"relu"});
  CHECK_THROWS_WITH(moeref::resolve_hparams(specs, {{"count", 10}}),
                    Contains("hparams.count") && Contains("10") && Contains("[0, 9]"));
}

TEST_CASE("hparam table: an old name is read as the new one, with a warning", "[hparams]") {
  moeref::HparamTable<Example> table;
  table.number("rate", &Example::rate)
      .defaults_to(0.5)
      .at_least(0.0)
      .means("a rate")
      .renamed({"old_rate"}, "commit abc (old became new)");
  const std::vector<moeref::HparamSpec> specs = table.specs();
  std::vector<std::string> warnings;
  const nlohmann::json resolved = moeref::resolve_hparams(specs, {{"old_rate", 0.25}}, &warnings);
  CHECK(resolved == nlohmann::json{{"rate", 0.25}});
  REQUIRE(warnings.size() == 1);
  CHECK_THAT(warnings[0], Contains("hparams.old_rate") && Contains("rate") && Contains("commit abc"));
  // The old name's value obeys the new name's rule, and both at once are refused.
  CHECK_THROWS_WITH(moeref::resolve_hparams(specs, {{"old_rate", -1.0}}), Contains("hparams.rate") && Contains(">= 0"));
  CHECK_THROWS_WITH(moeref::resolve_hparams(specs, {{"old_rate", 0.25}, {"rate", 0.5}}),
                    Contains("hparams.old_rate") && Contains("one of the two"));
}
