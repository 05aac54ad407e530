// `moeref run` and `moeref variants` as a user meets them: files written or not
// written, exit codes, printed text, replay and thread-count independence.
//
// Dims: B batch, L length, G groups, S group size, E experts, M model dim, H expert hidden dim.
#include <algorithm>
#include <filesystem>
#include <string>
#include <vector>

#include "moeref/registry.hpp"
#include "test_support.hpp"

using Catch::Contains;

// test_support.hpp: run_cli, run_cli_env, temp_dir, read_text, write_text, the tiny layer config.
using namespace moeref::testing;

namespace {

// The names in a directory, sorted.
std::vector<std::string> list_dir(const std::string& dir) {
  std::vector<std::string> names;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) names.push_back(entry.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

std::string listing(const std::vector<std::string>& names) {
  std::string out;
  for (const std::string& name : names) out += name + " ";
  return out;
}

}  // namespace

TEST_CASE("cli run: writes a trace and prints its path", "[cli][run]") {
  const std::string dir = temp_dir("cli_run_ok");
  write_text(dir + "/config.json", tiny_mtf_top2_layer_config().dump());
  const CommandResult result = run_cli("run " + dir + "/config.json -o " + dir + "/trace.json");
  INFO(result.output);
  REQUIRE(result.exit_code == 0);
  CHECK_THAT(result.output, Contains(dir + "/trace.json") && Contains("mtf_top2"));
  CHECK(list_dir(dir) == std::vector<std::string>{"config.json", "trace.json"});
  const moeref::Trace trace = moeref::read_trace_file(dir + "/trace.json");
  CHECK(trace.config["variant"] == "mtf_top2");
  CHECK_THAT(result.output, Contains(std::to_string(trace.steps.size()) + " steps"));
  CHECK(trace.find_step("combine_tensor") != nullptr);
  // The file holds exactly the trace the library computes for this config.
  CHECK(read_text(dir + "/trace.json") == moeref::write_trace(moeref::testing::run_json(tiny_mtf_top2_layer_config())));
}

TEST_CASE("cli run: a failing run exits 2 and leaves no output file", "[cli][run]") {
  const std::string dir = temp_dir("cli_run_fail");
  const std::string config = dir + "/config.json";
  const std::string output = dir + "/trace.json";
  std::string args = "run " + config + " -o " + output;
  std::vector<std::string> expected_left = {"config.json"};
  std::vector<std::string> message_parts = {"moeref: error:"};

  SECTION("malformed JSON") {
    write_text(config, R"({"variant": "mtf_top2", "dims": {"B": 2,)");
    message_parts.push_back("not valid JSON");
  }
  SECTION("unknown variant") {
    nlohmann::json doc = tiny_mtf_top2_layer_config();
    doc["variant"] = "mtf_top9";
    write_text(config, doc.dump());
    message_parts.push_back("\"mtf_top9\"");
    message_parts.push_back("mtf_top2");
  }
  SECTION("E = 0") {
    nlohmann::json doc = tiny_mtf_top2_layer_config();
    doc["dims"]["E"] = 0;
    write_text(config, doc.dump());
    message_parts.push_back("dims.E");
  }
  SECTION("an error raised while the variant runs") {
    nlohmann::json doc = tiny_mtf_top2_layer_config();
    doc["hparams"]["mesh_dim_size"] = 3;  // does not divide B*L = 8
    write_text(config, doc.dump());
    message_parts.push_back("hparams.mesh_dim_size");
  }
  SECTION("missing config file") {
    args = "run " + dir + "/absent.json -o " + output;
    expected_left = {};
    message_parts.push_back(dir + "/absent.json");
  }
  SECTION("output directory that does not exist") {
    write_text(config, tiny_mtf_top2_layer_config().dump());
    args = "run " + config + " -o " + dir + "/no_such_dir/trace.json";
    message_parts.push_back(dir + "/no_such_dir/trace.json");
  }
  SECTION("output path that is a directory") {
    write_text(config, tiny_mtf_top2_layer_config().dump());
    std::filesystem::create_directory(dir + "/out_dir");
    args = "run " + config + " -o " + dir + "/out_dir";
    expected_left = {"config.json", "out_dir"};
    message_parts.push_back(dir + "/out_dir");
  }
  SECTION("a thread count of 0") {
    write_text(config, tiny_mtf_top2_layer_config().dump());
    message_parts = {"--threads"};
    args += " --threads 0";
  }

  const CommandResult result = run_cli(args);
  INFO(result.output);
  CHECK(result.exit_code == 2);
  for (const std::string& part : message_parts) CHECK_THAT(result.output, Contains(part));
  // Nothing is left behind: no trace and no temporary file (trace.json.tmp.XXXXXX).
  INFO("directory holds: " << listing(list_dir(dir)));
  CHECK(list_dir(dir) == expected_left);
  if (std::filesystem::exists(dir + "/out_dir")) CHECK(list_dir(dir + "/out_dir").empty());
}

TEST_CASE("cli run: a failing run leaves an existing output file untouched", "[cli][run]") {
  const std::string dir = temp_dir("cli_run_keep");
  nlohmann::json doc = tiny_mtf_top2_layer_config();
  doc["dims"]["E"] = 0;
  write_text(dir + "/config.json", doc.dump());
  write_text(dir + "/trace.json", "previous contents\n");
  const CommandResult result = run_cli("run " + dir + "/config.json -o " + dir + "/trace.json");
  INFO(result.output);
  CHECK(result.exit_code == 2);
  CHECK(read_text(dir + "/trace.json") == "previous contents\n");
  CHECK(list_dir(dir) == std::vector<std::string>{"config.json", "trace.json"});
}

TEST_CASE("cli variants: lists the registered variants", "[cli][variants]") {
  const CommandResult result = run_cli("variants");
  INFO(result.output);
  REQUIRE(result.exit_code == 0);
  for (const moeref::VariantSpec& spec : moeref::all_variants()) {
    CHECK_THAT(result.output, Contains(spec.id) && Contains(spec.summary));
  }
  CHECK_THAT(result.output, Contains("mtf_top2"));
}

TEST_CASE("cli variants: one variant prints every hparam with default and allowed values and meaning",
          "[cli][variants]") {
  const CommandResult result = run_cli("variants mtf_top2");
  INFO(result.output);
  REQUIRE(result.exit_code == 0);
  CHECK_THAT(result.output, Contains("second_policy_train") && Contains("capacity_factor_eval") &&
                                Contains("\"random\"") && Contains("allowed:") &&
                                Contains("spec/variants/mtf_top2.md"));
  const moeref::VariantSpec* spec = moeref::find_variant("mtf_top2");
  REQUIRE(spec != nullptr);
  REQUIRE_FALSE(spec->hparams.empty());
  for (const moeref::HparamSpec& hparam : spec->hparams) {
    INFO("hparam " << hparam.name);
    CHECK_THAT(result.output, Contains(hparam.name + " = " + hparam.default_value.dump()));
    CHECK_THAT(result.output, Contains("allowed: " + moeref::describe_allowed(hparam)));
    CHECK_FALSE(hparam.meaning.empty());
    CHECK_THAT(result.output, Contains(hparam.meaning));
  }
  CHECK_THAT(result.output, Contains("one of all, none, threshold, random"));
}

// Integer bounds are printed as integers: group_size's maximum 16777216 must not
// appear as "1.67772e+07".
TEST_CASE("cli variants: integer bounds are printed exactly", "[cli][variants]") {
  const CommandResult result = run_cli("variants mtf_top2");
  INFO(result.output);
  REQUIRE(result.exit_code == 0);
  CHECK_THAT(result.output, Contains("16777216") && !Contains("e+07"));
}

TEST_CASE("cli variants: an unknown id exits 2 naming it and the known ids", "[cli][variants]") {
  const CommandResult result = run_cli("variants nope");
  INFO(result.output);
  CHECK(result.exit_code == 2);
  CHECK_THAT(result.output, Contains("\"nope\"") && Contains("mtf_top2"));
}

TEST_CASE("cli run: running a trace as a config reproduces it byte for byte", "[cli][run][replay]") {
  const std::string dir = temp_dir("cli_replay");
  std::vector<nlohmann::json> configs;
  configs.push_back(tiny_mtf_top2_layer_config());
  // Gating only, evaluation mode, threshold policy, second-place loss, G and S given.
  configs.push_back(
      {{"variant", "mtf_top2"},
       {"scope", "gating"},
       {"train", false},
       {"seed", 11},
       {"dims", {{"G", 2}, {"S", 5}, {"E", 4}, {"M", 3}}},
       {"hparams", {{"second_policy_eval", "threshold"}, {"use_second_place_loss", true}, {"expert_capacity", 2}}}});
  // A GLU-style layer with dropout: two wi factors and a dropout draw to replay.
  configs.push_back({{"variant", "mtf_top2"},
                     {"seed", 5},
                     {"dims", {{"B", 1}, {"L", 6}, {"E", 2}, {"M", 3}, {"H", 4}}},
                     {"hparams", {{"group_size", 3}, {"activation", {"gelu", "linear"}}, {"dropout_rate", 0.25}}}});
  for (size_t i = 0; i < configs.size(); ++i) {
    const std::string n = std::to_string(i);
    write_text(dir + "/config" + n + ".json", configs[i].dump());
    const CommandResult first = run_cli("run " + dir + "/config" + n + ".json -o " + dir + "/first" + n + ".json");
    INFO("config " << configs[i].dump() << "\n" << first.output);
    REQUIRE(first.exit_code == 0);
    const CommandResult second = run_cli("run " + dir + "/first" + n + ".json -o " + dir + "/second" + n + ".json");
    INFO(second.output);
    REQUIRE(second.exit_code == 0);
    const std::string first_text = read_text(dir + "/first" + n + ".json");
    CHECK(first_text == read_text(dir + "/second" + n + ".json"));
    CHECK(first_text.size() > 1000);
  }
  // The dropout run really did record a draw that the replay had to use.
  CHECK_THAT(read_text(dir + "/first2.json"), Contains("\"dropout_uniform\"") && Contains("\"wi_1\""));
}

TEST_CASE("cli run: traces do not depend on the thread count", "[cli][run][determinism]") {
  const std::string dir = temp_dir("cli_threads");
  // B*L = 16 tokens in groups of 4: G = 4 groups, so two threads really split the groups.
  const nlohmann::json config = {{"variant", "mtf_top2"},
                                 {"scope", "layer"},
                                 {"seed", 7},
                                 {"dims", {{"B", 2}, {"L", 8}, {"E", 3}, {"M", 4}, {"H", 5}}},
                                 {"hparams", {{"group_size", 4}, {"dropout_rate", 0.1}}}};
  write_text(dir + "/config.json", config.dump());
  const std::string run = "run " + dir + "/config.json -o " + dir;
  const CommandResult t1 = run_cli(run + "/threads1.json --threads 1");
  const CommandResult t2 = run_cli(run + "/threads2.json --threads 2");
  const CommandResult t3 = run_cli(run + "/threads3.json --threads 3");
  const CommandResult e1 = run_cli_env("OMP_NUM_THREADS=1", run + "/env1.json");
  const CommandResult e2 = run_cli_env("OMP_NUM_THREADS=2", run + "/env2.json");
  INFO(t1.output << t2.output << t3.output << e1.output << e2.output);
  REQUIRE(t1.exit_code == 0);
  REQUIRE(t2.exit_code == 0);
  REQUIRE(t3.exit_code == 0);
  REQUIRE(e1.exit_code == 0);
  REQUIRE(e2.exit_code == 0);
  const std::string reference = read_text(dir + "/threads1.json");
  const moeref::Trace trace = moeref::read_trace_file(dir + "/threads1.json");
  REQUIRE(trace.config["dims"]["G"] == 4);
  REQUIRE(trace.config["scope"] == "layer");
  CHECK(read_text(dir + "/threads2.json") == reference);
  CHECK(read_text(dir + "/threads3.json") == reference);
  CHECK(read_text(dir + "/env1.json") == reference);
  CHECK(read_text(dir + "/env2.json") == reference);
}
