// Config validation: every bad config is refused with an InputError whose
// message names the field, the value and what is allowed.
//
// Fields checked by config_from_json (variant, top-level fields, dims, hparams,
// tensor syntax) fail there; fields that need the variant's shape rules (which
// dims are present, input shapes, random draws, mesh_dim_size) fail when the
// variant runs, in run_config. Dims: B batch, L length, G groups, S group size,
// E experts, M model dim, H expert hidden dim.
#include <cmath>
#include <string>
#include <vector>

#include "moeref/error.hpp"
#include "moeref/registry.hpp"
#include "test_support.hpp"

using Catch::Contains;
using moeref::testing::run_json;

// Both the type and the message: REQUIRE_THROWS_WITH alone accepts any exception.
#define REQUIRE_INPUT_ERROR(expr, matcher)       \
  do {                                           \
    REQUIRE_THROWS_AS(expr, moeref::InputError); \
    REQUIRE_THROWS_WITH(expr, matcher);          \
  } while (false)

namespace {

nlohmann::json base_config() {
  return {{"variant", "mtf_top2"},
          {"seed", 3},
          {"dims", {{"B", 2}, {"L", 4}, {"E", 3}, {"M", 4}, {"H", 5}}},
          {"hparams", {{"group_size", 4}}}};
}

moeref::Config parse(const nlohmann::json& doc) { return moeref::config_from_json(doc, "test config"); }

// A float32 tensor of the given shape, every element `fill`.
nlohmann::json float_tensor(const std::vector<std::string>& dims, const std::vector<int64_t>& shape, float fill) {
  int64_t count = 1;
  for (int64_t extent : shape) count *= extent;
  return moeref::testing::tensor_json(dims, shape, std::vector<float>(static_cast<size_t>(count), fill));
}

}  // namespace

TEST_CASE("config: the base config is accepted and resolved", "[config]") {
  const moeref::Config config = parse(base_config());
  CHECK(config.variant == "mtf_top2");
  CHECK(config.spec == moeref::find_variant("mtf_top2"));
  CHECK(config.seed == 3u);
  CHECK(config.hparams["group_size"] == 4);
  // Every hparam of the variant is resolved, defaults filled in.
  for (const moeref::HparamSpec& spec : config.spec->hparams) {
    INFO("hparam " << spec.name);
    CHECK(config.hparams.contains(spec.name));
  }
  CHECK(config.hparams["second_policy_train"] == "random");
}

TEST_CASE("config: unknown variant names the value and the registered ids", "[config]") {
  nlohmann::json doc = base_config();
  doc["variant"] = "mtf_top3";
  REQUIRE_INPUT_ERROR(parse(doc), Contains("variant") && Contains("\"mtf_top3\"") && Contains("mtf_top2"));
  doc["variant"] = 2;
  REQUIRE_INPUT_ERROR(parse(doc), Contains("variant") && Contains("2") && Contains("mtf_top2"));
  doc.erase("variant");
  REQUIRE_INPUT_ERROR(parse(doc), Contains("variant") && Contains("missing") && Contains("mtf_top2"));
}

TEST_CASE("config: unknown hparam names it and lists the variant's hparams", "[config]") {
  nlohmann::json doc = base_config();
  doc["hparams"]["capacity_factor"] = 1.0;
  REQUIRE_INPUT_ERROR(parse(doc), Contains("hparams.capacity_factor:") && Contains("unknown") &&
                                      Contains("capacity_factor_train") && Contains("group_size"));
  doc = base_config();
  doc["hparams"] = {1, 2};
  REQUIRE_INPUT_ERROR(parse(doc), Contains("hparams") && Contains("[1,2]") && Contains("object"));
}

TEST_CASE("config: unknown top-level field names it and lists the known fields", "[config]") {
  nlohmann::json doc = base_config();
  doc["hparam"] = {{"group_size", 4}};
  REQUIRE_INPUT_ERROR(parse(doc), Contains("hparam:") && Contains("unknown config field") &&
                                      Contains("variant, scope, train, seed, dims, hparams, steps, fast, inputs"));
  doc = base_config();
  doc["scope"] = "model";
  REQUIRE_INPUT_ERROR(parse(doc),
                      Contains("scope") && Contains("\"model\"") && Contains("\"layer\"") && Contains("\"gating\""));
  doc = base_config();
  doc["train"] = "yes";
  REQUIRE_INPUT_ERROR(parse(doc), Contains("train") && Contains("\"yes\"") && Contains("true or false"));
  doc = base_config();
  doc["seed"] = -1;
  REQUIRE_INPUT_ERROR(parse(doc), Contains("seed") && Contains("-1") && Contains("2^64 - 1"));
  REQUIRE_INPUT_ERROR(parse(nlohmann::json::array()), Contains("test config") && Contains("a JSON object"));
}

TEST_CASE("config: dims must be known letters with sizes in range", "[config]") {
  nlohmann::json doc = base_config();
  doc["dims"]["E"] = 0;
  REQUIRE_INPUT_ERROR(parse(doc), Contains("dims.E") && Contains("got 0") && Contains("[1, 16777216]"));
  doc["dims"]["E"] = 16777217;
  REQUIRE_INPUT_ERROR(parse(doc), Contains("dims.E") && Contains("16777217") && Contains("[1, 16777216]"));
  doc["dims"]["E"] = 2.5;
  REQUIRE_INPUT_ERROR(parse(doc), Contains("dims.E") && Contains("2.5") && Contains("an integer"));
  doc = base_config();
  doc["dims"]["X"] = 2;
  REQUIRE_INPUT_ERROR(parse(doc),
                      Contains("dims.X") && Contains("unknown dim") && Contains("B, L, G, S, E, C, M, H, N"));
  // C is the one dim that may be 0.
  doc = base_config();
  doc["dims"]["C"] = 0;
  doc["hparams"]["expert_capacity"] = 0;
  REQUIRE_NOTHROW(parse(doc));
  doc["dims"]["C"] = -1;
  REQUIRE_INPUT_ERROR(parse(doc), Contains("dims.C") && Contains("-1") && Contains("[0, 16777216]"));
}

TEST_CASE("config: a negative capacity factor is refused", "[config]") {
  nlohmann::json doc = base_config();
  doc["hparams"]["capacity_factor_train"] = -0.5;
  REQUIRE_INPUT_ERROR(
      parse(doc), Contains("hparams.capacity_factor_train") && Contains("-0.5") && Contains("a finite number >= 0"));
  doc = base_config();
  doc["hparams"]["capacity_factor_eval"] = "2";
  REQUIRE_INPUT_ERROR(parse(doc),
                      Contains("hparams.capacity_factor_eval") && Contains("\"2\"") && Contains("a finite number"));
  doc = base_config();
  doc["hparams"]["capacity_factor_train"] = 0.0;  // the bound itself is allowed
  REQUIRE_NOTHROW(parse(doc));
}

TEST_CASE("config: a non-finite capacity factor is refused", "[config]") {
  // JSON text cannot hold an infinity: nlohmann refuses 1e999 as a number overflow.
  const std::string text = R"({"variant":"mtf_top2","dims":{"B":2,"L":4,"E":3,"M":4,"H":5},)"
                           R"("hparams":{"capacity_factor_train":1e999}})";
  REQUIRE_INPUT_ERROR(moeref::parse_json_text(text, "config.json"),
                      Contains("config.json") && Contains("not valid JSON") && Contains("1e999"));
  // As a string (the trace spelling of infinity), it is not a number at all.
  nlohmann::json doc = base_config();
  doc["hparams"]["capacity_factor_train"] = "Infinity";
  REQUIRE_INPUT_ERROR(parse(doc), Contains("hparams.capacity_factor_train") && Contains("\"Infinity\"") &&
                                      Contains("a finite number >= 0"));
  // Built in C++, a JSON document can hold a real infinity or NaN.
  doc["hparams"]["capacity_factor_train"] = INFINITY;
  REQUIRE_INPUT_ERROR(parse(doc), Contains("hparams.capacity_factor_train") && Contains("a finite number"));
  doc["hparams"]["capacity_factor_train"] = std::nan("");
  REQUIRE_INPUT_ERROR(parse(doc), Contains("hparams.capacity_factor_train") && Contains("a finite number"));
}

// nlohmann dumps a non-finite double as "null"; the message must name the
// infinity that was given instead.
TEST_CASE("config: the message for an infinite capacity factor names the infinity", "[config]") {
  nlohmann::json doc = base_config();
  doc["hparams"]["capacity_factor_train"] = INFINITY;
  REQUIRE_THROWS_WITH(parse(doc), !Contains("got null") && Contains("inf", Catch::CaseSensitive::No));
}

TEST_CASE("config: a second policy outside its choices is refused", "[config]") {
  nlohmann::json doc = base_config();
  doc["hparams"]["second_policy_train"] = "sometimes";
  REQUIRE_INPUT_ERROR(parse(doc), Contains("hparams.second_policy_train") && Contains("\"sometimes\"") &&
                                      Contains("one of all, none, threshold, random"));
  doc = base_config();
  doc["hparams"]["second_policy_eval"] = "Random";
  REQUIRE_INPUT_ERROR(parse(doc), Contains("hparams.second_policy_eval") && Contains("\"Random\""));
  doc["hparams"]["second_policy_eval"] = "threshold";
  REQUIRE_NOTHROW(parse(doc));
}

TEST_CASE("config: an activation list with an unknown entry is refused", "[config]") {
  nlohmann::json doc = base_config();
  doc["hparams"]["activation"] = {"relu", "nope"};
  REQUIRE_INPUT_ERROR(parse(doc), Contains("hparams.activation") && Contains("[\"relu\",\"nope\"]") &&
                                      Contains("relu") && Contains("gelu") && Contains("non-empty list"));
  doc["hparams"]["activation"] = nlohmann::json::array();
  REQUIRE_INPUT_ERROR(parse(doc), Contains("hparams.activation") && Contains("[]") && Contains("non-empty list"));
  doc["hparams"]["activation"] = "nope";
  REQUIRE_INPUT_ERROR(parse(doc), Contains("hparams.activation") && Contains("\"nope\""));
  doc["hparams"]["activation"] = {"relu", "linear"};
  REQUIRE_NOTHROW(parse(doc));
}

TEST_CASE("config: dropout_rate 1.0 is refused", "[config]") {
  nlohmann::json doc = base_config();
  doc["hparams"]["dropout_rate"] = 1.0;
  REQUIRE_INPUT_ERROR(parse(doc), Contains("hparams.dropout_rate") && Contains("got 1.0") && Contains("0.999999"));
  doc["hparams"]["dropout_rate"] = -0.1;
  REQUIRE_INPUT_ERROR(parse(doc), Contains("hparams.dropout_rate") && Contains("-0.1"));
  doc["hparams"]["dropout_rate"] = 0.5;
  REQUIRE_NOTHROW(run_json(doc));
}

TEST_CASE("config: integer hparams refuse fractions and values below their minimum", "[config]") {
  nlohmann::json doc = base_config();
  doc["hparams"]["group_size"] = 0;
  REQUIRE_INPUT_ERROR(parse(doc), Contains("hparams.group_size") && Contains("got 0") && Contains("an integer"));
  doc["hparams"]["group_size"] = 2.5;
  REQUIRE_INPUT_ERROR(parse(doc), Contains("hparams.group_size") && Contains("2.5"));
  doc["hparams"]["group_size"] = nullptr;
  REQUIRE_INPUT_ERROR(parse(doc), Contains("hparams.group_size") && Contains("null"));
  doc = base_config();
  doc["hparams"]["use_second_place_loss"] = 1;
  REQUIRE_INPUT_ERROR(parse(doc), Contains("hparams.use_second_place_loss") && Contains("true or false"));
}

TEST_CASE("config: dims without B and L or G and S are refused when the variant runs", "[config]") {
  nlohmann::json doc = base_config();
  doc["dims"] = {{"E", 3}, {"M", 4}, {"H", 5}};
  REQUIRE_INPUT_ERROR(run_json(doc), Contains("dims") && Contains("neither B and L nor G and S") &&
                                         Contains("B and L") && Contains("G and S"));
  doc["dims"] = {{"B", 2}, {"E", 3}, {"M", 4}, {"H", 5}};
  REQUIRE_INPUT_ERROR(run_json(doc), Contains("dims") && Contains("neither B and L nor G and S"));
  doc["dims"] = {{"G", 2}, {"E", 3}, {"M", 4}, {"H", 5}};
  REQUIRE_INPUT_ERROR(run_json(doc), Contains("dims") && Contains("neither B and L nor G and S"));
  doc["dims"] = {{"B", 2}, {"G", 2}, {"S", 4}, {"E", 3}, {"M", 4}, {"H", 5}};
  REQUIRE_INPUT_ERROR(run_json(doc), Contains("dims") && Contains("only one of B and L"));
  doc["dims"] = {{"G", 2}, {"S", 4}, {"M", 4}, {"H", 5}};
  REQUIRE_INPUT_ERROR(run_json(doc), Contains("dims.E") && Contains("missing"));
  doc["dims"] = {{"G", 2}, {"S", 4}, {"E", 3}, {"M", 4}};
  REQUIRE_INPUT_ERROR(run_json(doc), Contains("dims.H") && Contains("missing") && Contains("layer"));
  // A derived dim that disagrees with the grouping rule.
  doc = base_config();
  doc["dims"]["G"] = 3;
  REQUIRE_INPUT_ERROR(run_json(doc), Contains("dims.G") && Contains("got 3") && Contains("2 ("));
}

TEST_CASE("config: an input of the wrong shape names inputs.x and the expected shape", "[config]") {
  nlohmann::json doc = base_config();
  doc["inputs"] = {{"x", float_tensor({"B", "L", "M"}, {2, 3, 4}, 0.25f)}};
  REQUIRE_NOTHROW(parse(doc));  // well-formed tensor: the shape is the variant's business
  REQUIRE_INPUT_ERROR(run_json(doc), Contains("inputs.x") && Contains("[B=2, L=3, M=4]") &&
                                         Contains("a tensor of shape [B=2, L=4, M=4]"));
  // Right extents, wrong dim names.
  doc["inputs"] = {{"x", float_tensor({"G", "S", "M"}, {2, 4, 4}, 0.25f)}};
  REQUIRE_INPUT_ERROR(run_json(doc), Contains("inputs.x") && Contains("[B=2, L=4, M=4]"));
  // Right shape, non-finite value.
  nlohmann::json x = float_tensor({"B", "L", "M"}, {2, 4, 4}, 0.25f);
  x["data"][5] = "NaN";
  doc["inputs"] = {{"x", x}};
  REQUIRE_INPUT_ERROR(run_json(doc), Contains("inputs.x[b=0, l=1, m=1]") && Contains("NaN") && Contains("finite"));
  // An input the run does not read.
  doc["inputs"] = {{"y", float_tensor({"B"}, {2}, 0.0f)}};
  REQUIRE_INPUT_ERROR(run_json(doc), Contains("inputs.y") && Contains("does not use"));
  // A malformed tensor fails in config_from_json already.
  doc["inputs"] = {{"x", float_tensor({"B", "L", "M"}, {2, 4, 4}, 0.25f)}};
  doc["inputs"]["x"]["data"].erase(0);
  REQUIRE_INPUT_ERROR(parse(doc), Contains("inputs.x.data") && Contains("31 values") && Contains("32 values"));
}

TEST_CASE("config: a supplied random draw outside the unit interval is refused", "[config]") {
  // G = 2 groups of S = 4 tokens: second_policy_uniform is [G, S].
  nlohmann::json doc = base_config();
  nlohmann::json draws = float_tensor({"G", "S"}, {2, 4}, 0.5f);
  draws["data"][5] = 1.0;
  doc["inputs"] = {{"second_policy_uniform", draws}};
  REQUIRE_INPUT_ERROR(run_json(doc),
                      Contains("inputs.second_policy_uniform[g=1, s=1]") && Contains("got 1") && Contains("[0, 1)"));
  draws["data"][5] = 0.5;
  draws["data"][2] = -0.25;
  doc["inputs"] = {{"second_policy_uniform", draws}};
  REQUIRE_INPUT_ERROR(run_json(doc),
                      Contains("inputs.second_policy_uniform[g=0, s=2]") && Contains("-0.25") && Contains("[0, 1)"));
  // Both ends of the allowed range replay, and the supplied draws are the ones recorded.
  draws["data"][2] = 0.0;
  draws["data"][5] = 0.99999994;  // the largest float32 below 1
  doc["inputs"] = {{"second_policy_uniform", draws}};
  const moeref::Trace trace = run_json(doc);
  const moeref::Tensor* recorded = trace.find_input("second_policy_uniform");
  REQUIRE(recorded != nullptr);
  CHECK(recorded->f32[2] == 0.0f);
  CHECK(recorded->f32[5] == 0.99999994f);
  // The draw of dropout is checked the same way.
  doc = base_config();
  doc["hparams"]["dropout_rate"] = 0.5;
  // dropout_uniform is [E, G, C, H] = [3, 2, 4, 5].
  nlohmann::json dropout = float_tensor({"E", "G", "C", "H"}, {3, 2, 4, 5}, 0.5f);
  dropout["data"][7] = 1.5;
  doc["inputs"] = {{"dropout_uniform", dropout}};
  REQUIRE_INPUT_ERROR(run_json(doc),
                      Contains("inputs.dropout_uniform[e=0, g=0, c=1, h=2]") && Contains("1.5") && Contains("[0, 1)"));
}

TEST_CASE("config: mesh_dim_size must divide the token count B times L (checked when the variant runs)", "[config]") {
  nlohmann::json doc = base_config();
  doc["dims"]["L"] = 3;  // B*L = 6 tokens
  doc["hparams"]["mesh_dim_size"] = 4;
  REQUIRE_NOTHROW(parse(doc));
  REQUIRE_INPUT_ERROR(run_json(doc), Contains("hparams.mesh_dim_size") && Contains("got 4") &&
                                         Contains("a divisor of the token count B*L = 6"));
  doc["hparams"]["mesh_dim_size"] = 3;
  const moeref::Trace trace = run_json(doc);
  CHECK(trace.config["dims"]["G"].get<int64_t>() % 3 == 0);
}
