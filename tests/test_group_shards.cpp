// `moeref run --groups` and `moeref merge` (spec/sharding.md): the shards of a run by
// group, merged, are the one-shot trace byte for byte, on the literal and the fast
// path; merge refuses gaps, overlaps, shards of different runs and whole traces,
// naming the shard files.
//
// Dims: B batch, L length, G groups, S group size, E experts, M model dim, H expert hidden dim.
#include <algorithm>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "moeref/error.hpp"
#include "moeref/group_shards.hpp"
#include "moeref/registry.hpp"
#include "test_support.hpp"

using Catch::Contains;
using moeref::Config;
using moeref::GroupRange;
using moeref::GroupShard;
using moeref::InputError;
using moeref::Trace;
using namespace moeref::testing;

namespace {

// A training layer of `variant` with G = 4 groups of S = 8 tokens, so that every
// random draw, the losses over all groups and the expert layer are in the trace. The
// last token of every group but one is padding (importance 0: mtf_switch needs an
// importance when training, and the losses then count tokens across groups).
nlohmann::json four_group_layer(const std::string& variant) {
  std::vector<float> importance(32, 1.0f);
  for (int g = 0; g < 3; ++g) importance[static_cast<size_t>(g * 8 + 7)] = 0.0f;
  return {{"variant", variant},
          {"seed", 11},
          {"train", true},
          {"dims", {{"G", 4}, {"S", 8}, {"E", 4}, {"M", 8}, {"H", 16}}},
          {"hparams", nlohmann::json::object()},
          {"inputs", {{"importance", tensor_json({"G", "S"}, {4, 8}, importance)}}}};
}

Trace run_doc(const nlohmann::json& doc, bool fast, std::optional<GroupRange> groups) {
  Config config = moeref::config_from_json(doc, "test config");
  config.fast = fast;
  config.groups = groups;
  return moeref::run_config(config);
}

// The shards of `doc` for `ranges`, named "shard_FIRST_END.json" as a CLI user might.
std::vector<GroupShard> shards_of(const nlohmann::json& doc, bool fast, const std::vector<GroupRange>& ranges) {
  std::vector<GroupShard> shards;
  for (const GroupRange& range : ranges) {
    const std::string name = "shard_" + std::to_string(range.first) + "_" + std::to_string(range.end) + ".json";
    shards.push_back({name, run_doc(doc, fast, range)});
  }
  return shards;
}

std::vector<std::string> group_shard_variants() {
  std::vector<std::string> ids;
  for (const moeref::VariantSpec& spec : moeref::all_variants()) {
    if (spec.group_shards) ids.push_back(spec.id);
  }
  return ids;
}

std::string merge_error(std::vector<GroupShard> shards) {
  try {
    moeref::merge_group_shards(std::move(shards));
  } catch (const InputError& error) {
    return error.what();
  }
  FAIL("merge accepted shards it should refuse");
  return "";
}

}  // namespace

TEST_CASE("group shards: the Mesh TensorFlow layer variants can be split by group", "[shards]") {
  const std::vector<std::string> ids = group_shard_variants();
  for (const char* id : {"mtf_top2", "mtf_switch", "mtf_switch_max", "mtf_ntlb", "mtf_expert_selection"}) {
    CHECK(std::find(ids.begin(), ids.end(), id) != ids.end());
  }
}

TEST_CASE("group shards: merged shards are the one-shot trace byte for byte", "[shards]") {
  const std::vector<std::vector<GroupRange>> splits = {
      {{0, 1}, {1, 4}}, {{0, 2}, {2, 4}}, {{0, 1}, {1, 2}, {2, 3}, {3, 4}}, {{0, 4}}};
  for (const std::string& variant : group_shard_variants()) {
    for (bool fast : {false, true}) {
      const nlohmann::json doc = four_group_layer(variant);
      const std::string one_shot = moeref::write_trace(run_doc(doc, fast, std::nullopt));
      for (const std::vector<GroupRange>& split : splits) {
        INFO(variant << (fast ? " --fast" : "") << ", " << split.size() << " shards from " << split.front().first << ":"
                     << split.front().end);
        std::vector<GroupShard> shards = shards_of(doc, fast, split);
        const Trace& first = shards.front().trace;
        // A shard holds its groups only, and says so.
        const nlohmann::json& record = first.config["groups"];
        CHECK(record["first"] == split.front().first);
        CHECK(record["end"] == split.front().end);
        CHECK(record["of"] == 4);
        CHECK(record["inputs_digest"].get<std::string>().rfind("mix64:", 0) == 0);
        const int64_t held = split.front().end - split.front().first;
        CHECK(step(first, "outputs").shape[0] == held);
        CHECK(step(first, "expert_hidden").dims[1] == "G");
        CHECK(step(first, "expert_hidden").shape[1] == held);
        CHECK(first.find_input("x")->shape[0] == held);
        REQUIRE(first.find_input("router_weights") != nullptr);
        CHECK(first.find_input("router_weights")->shape == std::vector<int64_t>{8, 4});
        // Inputs without a G dim (the weights) only in the shard of group 0.
        if (split.size() > 1) {
          CHECK(shards.back().trace.find_input("router_weights") == nullptr);
          CHECK(shards.back().trace.find_input("wo") == nullptr);
          CHECK(shards.back().trace.find_input("x") != nullptr);
        }
        CHECK(moeref::write_trace(moeref::merge_group_shards(shards)) == one_shot);
        // Any order on the command line.
        std::reverse(shards.begin(), shards.end());
        CHECK(moeref::write_trace(moeref::merge_group_shards(std::move(shards))) == one_shot);
      }
    }
  }
}

TEST_CASE("group shards: expert dropout, tokens as B and L, and a --steps selection merge exactly", "[shards]") {
  nlohmann::json doc = four_group_layer("mtf_top2");
  SECTION("dropout: the uniform draw [E, G, C, H] is cut along its second dim") {
    doc["hparams"]["dropout_rate"] = 0.25;
  }
  SECTION("x given as [B, L, M]: a group is S consecutive tokens, x stays whole in every shard") {
    doc["dims"] = {{"B", 2}, {"L", 16}, {"E", 4}, {"M", 8}, {"H", 16}};
    doc["inputs"]["importance"] = tensor_json({"B", "L"}, {2, 16}, std::vector<float>(32, 1.0f));
    doc["hparams"]["group_size"] = 8;
  }
  SECTION("only some steps") { doc["steps"] = {"dispatch_tensor", "outputs"}; }
  SECTION("scope gating: no expert layer, every tensor cut") { doc["scope"] = "gating"; }
  for (bool fast : {false, true}) {
    const std::string one_shot = moeref::write_trace(run_doc(doc, fast, std::nullopt));
    CHECK(moeref::write_trace(moeref::merge_group_shards(shards_of(doc, fast, {{2, 4}, {0, 1}, {1, 2}}))) == one_shot);
  }
}

TEST_CASE("group shards: shards written to files and read back merge exactly", "[shards]") {
  const std::string dir = temp_dir("group_shards_files");
  const nlohmann::json doc = four_group_layer("mtf_switch");
  std::vector<GroupShard> shards;
  for (const GroupRange& range : std::vector<GroupRange>{{1, 4}, {0, 1}}) {
    const std::string path = dir + "/shard_" + std::to_string(range.first) + ".json";
    write_text(path, moeref::write_trace(run_doc(doc, false, range)));
    shards.push_back({path, moeref::read_trace_file(path)});
  }
  CHECK(moeref::write_trace(moeref::merge_group_shards(std::move(shards))) ==
        moeref::write_trace(run_doc(doc, false, std::nullopt)));
}

TEST_CASE("group shards: merge refuses what is not one run's groups, each exactly once", "[shards]") {
  const nlohmann::json doc = four_group_layer("mtf_top2");
  SECTION("a gap") {
    const std::string message = merge_error(shards_of(doc, false, {{0, 1}, {2, 4}}));
    CHECK_THAT(message, Contains("groups [1, 2) in no shard") && Contains("shard_0_1.json [0, 1)") &&
                            Contains("shard_2_4.json [2, 4)"));
  }
  SECTION("the last groups missing") {
    CHECK_THAT(merge_error(shards_of(doc, false, {{0, 2}})), Contains("groups [2, 4) in no shard"));
  }
  SECTION("the first groups missing") {
    CHECK_THAT(merge_error(shards_of(doc, false, {{1, 4}})), Contains("groups [0, 1) in no shard"));
  }
  SECTION("an overlap") {
    CHECK_THAT(merge_error(shards_of(doc, false, {{1, 4}, {0, 2}})),
               Contains("groups [1, 2) in both shard_0_2.json and shard_1_4.json"));
  }
  SECTION("one shard twice") {
    CHECK_THAT(merge_error(shards_of(doc, false, {{0, 2}, {2, 4}, {2, 4}})), Contains("groups [2, 4) in both"));
  }
  SECTION("another seed") {
    std::vector<GroupShard> shards = shards_of(doc, false, {{0, 2}});
    nlohmann::json other = doc;
    other["seed"] = 12;
    shards.push_back({"other_seed.json", run_doc(other, false, GroupRange{2, 4})});
    CHECK_THAT(merge_error(std::move(shards)),
               Contains("other_seed.json: config.seed") && Contains("11 as in shard_0_2.json"));
  }
  SECTION("another hparam") {
    std::vector<GroupShard> shards = shards_of(doc, false, {{0, 2}});
    nlohmann::json other = doc;
    other["hparams"]["loss_coef"] = 0.5;
    shards.push_back({"other_coef.json", run_doc(other, false, GroupRange{2, 4})});
    CHECK_THAT(merge_error(std::move(shards)), Contains("other_coef.json: config.hparams.loss_coef"));
  }
  SECTION("a literal and a fast shard") {
    std::vector<GroupShard> shards = shards_of(doc, false, {{0, 2}});
    shards.push_back({"fast.json", run_doc(doc, true, GroupRange{2, 4})});
    CHECK_THAT(merge_error(std::move(shards)), Contains("fast.json: config.fast"));
  }
  SECTION("a whole trace among shards") {
    std::vector<GroupShard> shards = shards_of(doc, false, {{0, 2}});
    shards.push_back({"whole.json", run_doc(doc, false, std::nullopt)});
    CHECK_THAT(merge_error(std::move(shards)), Contains("whole.json: config.groups") && Contains("not a shard"));
  }
  SECTION("a loss that differs in one shard") {
    std::vector<GroupShard> shards = shards_of(doc, false, {{0, 2}, {2, 4}});
    shards.back().trace.losses.front().second += 1.0f;
    CHECK_THAT(merge_error(std::move(shards)), Contains("shard_2_4.json: losses") && Contains("bit for bit"));
  }
  SECTION("a step without a G dim that differs in one shard") {
    std::vector<GroupShard> shards = shards_of(doc, false, {{0, 2}, {2, 4}});
    for (moeref::NamedTensor& named : shards.back().trace.steps) {
      if (named.tensor.dims == std::vector<std::string>{"E"} || named.tensor.rank() == 0) {
        if (named.tensor.dtype == moeref::DType::kFloat32) named.tensor.f32[0] += 1.0f;
        if (named.tensor.dtype == moeref::DType::kInt32) named.tensor.i32[0] += 1;
        INFO("edited " << named.name);
        CHECK_THAT(merge_error(std::move(shards)),
                   Contains("shard_2_4.json: steps." + named.name) && Contains("bit for bit"));
        return;
      }
    }
    FAIL("mtf_top2 has no step over all groups to edit");
  }
  SECTION("shards made from different supplied inputs") {
    std::vector<GroupShard> shards = shards_of(doc, false, {{0, 2}});
    nlohmann::json other = doc;
    other["inputs"]["importance"]["data"][0] = 0.0f;
    shards.push_back({"other_importance.json", run_doc(other, false, GroupRange{2, 4})});
    CHECK_THAT(merge_error(std::move(shards)),
               Contains("other_importance.json: config.groups.inputs_digest") && Contains("supplied inputs differ"));
  }
  SECTION("an input edited in a shard") {
    for (const char* edited : {"router_weights", "x"}) {
      std::vector<GroupShard> shards = shards_of(doc, false, {{0, 2}, {2, 4}});
      for (GroupShard& shard : shards) {
        for (moeref::NamedTensor& input : shard.trace.inputs) {
          if (input.name == edited) input.tensor.f32[5] = -input.tensor.f32[5];
        }
      }
      INFO(edited);
      CHECK_THAT(merge_error(std::move(shards)), Contains("the joined inputs' digest") && Contains("were edited"));
    }
  }
  SECTION("no shards") { CHECK_THAT(merge_error({}), Contains("at least one shard")); }
}

TEST_CASE("group shards: a run refuses a bad range, a variant that cannot be split, and replaying a shard",
          "[shards]") {
  const nlohmann::json doc = four_group_layer("mtf_top2");
  SECTION("past G") {
    CHECK_THROWS_WITH(run_doc(doc, false, GroupRange{3, 5}),
                      Contains("--groups") && Contains("3:5") && Contains("END <= G = 4"));
  }
  SECTION("FIRST:END as text") {
    for (const char* text : {"2:2", "3:1", "1", "a:b", "-1:2", ":2", "1:", "1:2:3", " 1:2"}) {
      INFO(text);
      CHECK_THROWS_WITH(moeref::parse_group_range(text, "--groups"), Contains("--groups") &&
                                                                         Contains(std::string("\"") + text + "\"") &&
                                                                         Contains("0 <= FIRST < END"));
    }
    const GroupRange range = moeref::parse_group_range("1:3", "--groups");
    CHECK((range.first == 1 && range.end == 3));
  }
  SECTION("a variant whose groups do not stay apart") {
    for (const char* variant : {"deepspeed_top1", "lingvo_top2", "mtf_moe2d"}) {
      nlohmann::json other = doc;
      other["variant"] = variant;
      other["hparams"] = nlohmann::json::object();
      CHECK_THROWS_WITH(run_doc(other, false, GroupRange{0, 1}),
                        Contains("--groups") && Contains(std::string("\"") + variant + "\"") && Contains("mtf_top2") &&
                            Contains("spec/sharding.md"));
    }
  }
  SECTION("a shard replayed as a config") {
    const Trace shard = run_doc(doc, false, GroupRange{0, 2});
    CHECK_THROWS_WITH(moeref::config_from_trace(shard, "shard.json"),
                      Contains("shard.json: config.groups") && Contains("moeref merge"));
  }
}

TEST_CASE("group shards: moeref run --groups and moeref merge on the command line", "[shards][cli]") {
  const std::string dir = temp_dir("group_shards_cli");
  write_text(dir + "/config.json", four_group_layer("mtf_ntlb").dump());
  const CommandResult whole = run_cli("run " + dir + "/config.json -o " + dir + "/whole.json");
  REQUIRE(whole.exit_code == 0);
  for (const char* range : {"0:1", "1:4"}) {
    // Threads split groups and experts, never one sum: any count gives the same shard.
    const std::string threads = range[0] == '0' ? "1" : "2";
    const CommandResult shard = run_cli("run " + dir + "/config.json --groups " + range + " --threads " + threads +
                                        " -o " + dir + "/shard_" + range[0] + ".json");
    INFO(shard.output);
    REQUIRE(shard.exit_code == 0);
  }
  const CommandResult merged =
      run_cli("merge " + dir + "/shard_1.json " + dir + "/shard_0.json -o " + dir + "/merged.json");
  INFO(merged.output);
  REQUIRE(merged.exit_code == 0);
  CHECK_THAT(merged.output, Contains("wrote " + dir + "/merged.json") && Contains("2 shards"));
  CHECK(read_text(dir + "/merged.json") == read_text(dir + "/whole.json"));

  // A gap: exit 2, the message names the files, no output file.
  const CommandResult gap = run_cli("merge " + dir + "/shard_1.json -o " + dir + "/gap.json");
  CHECK(gap.exit_code == 2);
  CHECK_THAT(gap.output, Contains("groups [0, 1) in no shard") && Contains(dir + "/shard_1.json"));
  CHECK_FALSE(std::filesystem::exists(dir + "/gap.json"));
  const CommandResult bad_range = run_cli("run " + dir + "/config.json --groups 2:9 -o " + dir + "/bad.json");
  CHECK(bad_range.exit_code == 2);
  CHECK_THAT(bad_range.output, Contains("--groups") && Contains("G = 4"));
  CHECK_FALSE(std::filesystem::exists(dir + "/bad.json"));
}
