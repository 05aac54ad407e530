// Writing only some steps: `moeref run --steps NAME,...` and a config's "steps" list
// (include/moeref/step_selection.hpp). The kept steps are the full run's, bit for bit;
// every input stays, so the trace replays; a name the run does not make is an error
// that names it and every step the run makes.
//
// Dims: G groups, S group size, E experts (the tiny mtf_top2 layer of test_support.hpp).
#include <string>
#include <vector>

#include "moeref/error.hpp"
#include "moeref/trace.hpp"
#include "test_support.hpp"

using Catch::Contains;
using namespace moeref::testing;

namespace {

std::vector<std::string> step_names(const moeref::Trace& trace) {
  std::vector<std::string> names;
  for (const moeref::NamedTensor& step : trace.steps) names.push_back(step.name);
  return names;
}

// The routing steps a golden for a backend's router needs.
const std::vector<std::string> kRouting = {"index_1", "dispatch_tensor"};

// Every recorded tensor of `subset` equals the one of the same name in `full`.
void require_same_tensors(const moeref::Trace& subset, const moeref::Trace& full) {
  REQUIRE(subset.inputs.size() == full.inputs.size());
  for (const moeref::NamedTensor& input : full.inputs) {
    INFO("input " << input.name);
    const moeref::Tensor* kept = subset.find_input(input.name);
    REQUIRE(kept != nullptr);
    CHECK(kept->f32 == input.tensor.f32);
    CHECK(kept->i32 == input.tensor.i32);
  }
  for (const moeref::NamedTensor& kept : subset.steps) {
    INFO("step " << kept.name);
    const moeref::Tensor& original = step(full, kept.name);
    CHECK(kept.tensor.shape == original.shape);
    CHECK(kept.tensor.f32 == original.f32);
    CHECK(kept.tensor.i32 == original.i32);
  }
  CHECK(subset.losses == full.losses);
  CHECK(subset.capacity == full.capacity);
}

}  // namespace

TEST_CASE("steps: a config's steps list keeps those steps, in source order, with every input", "[steps]") {
  nlohmann::json config = tiny_mtf_top2_layer_config();
  config["steps"] = {"dispatch_tensor", "index_1"};  // listed out of order on purpose
  const moeref::Trace subset = run_json(config);
  CHECK(step_names(subset) == kRouting);  // the trace's own order
  require_same_tensors(subset, tiny_mtf_top2_layer_trace());
  // Reads of kept steps stay; those of dropped steps go.
  CHECK(subset.reads.count("index_1") == 1);
  CHECK(subset.reads.count("raw_gates") == 0);
  // The list is recorded, so replaying the trace keeps the same steps.
  CHECK(subset.config["steps"] == nlohmann::json({"dispatch_tensor", "index_1"}));
}

TEST_CASE("steps: moeref run --steps writes only the chosen steps, and the trace replays byte for byte",
          "[steps][cli]") {
  const std::string dir = temp_dir("steps_cli");
  write_text(dir + "/config.json", tiny_mtf_top2_layer_config().dump());
  const CommandResult full = run_cli("run " + dir + "/config.json -o " + dir + "/full.json");
  const CommandResult subset =
      run_cli("run " + dir + "/config.json -o " + dir + "/subset.json --steps index_1,dispatch_tensor");
  INFO(full.output << subset.output);
  REQUIRE(full.exit_code == 0);
  REQUIRE(subset.exit_code == 0);
  CHECK_THAT(subset.output, Contains("2 steps"));
  const moeref::Trace subset_trace = moeref::read_trace_file(dir + "/subset.json");
  CHECK(step_names(subset_trace) == kRouting);
  require_same_tensors(subset_trace, moeref::read_trace_file(dir + "/full.json"));
  CHECK(read_text(dir + "/subset.json").size() < read_text(dir + "/full.json").size());

  const CommandResult replay = run_cli("run " + dir + "/subset.json -o " + dir + "/replay.json");
  INFO(replay.output);
  REQUIRE(replay.exit_code == 0);
  CHECK(read_text(dir + "/replay.json") == read_text(dir + "/subset.json"));

  // --steps overrides the config's list.
  nlohmann::json config = tiny_mtf_top2_layer_config();
  config["steps"] = {"raw_gates"};
  write_text(dir + "/listed.json", config.dump());
  const CommandResult overridden =
      run_cli("run " + dir + "/listed.json -o " + dir + "/overridden.json --steps index_1");
  INFO(overridden.output);
  REQUIRE(overridden.exit_code == 0);
  CHECK(step_names(moeref::read_trace_file(dir + "/overridden.json")) == std::vector<std::string>{"index_1"});
}

TEST_CASE("steps: an unknown step name is exit 2 naming it and the steps the run makes, and writes nothing",
          "[steps][cli]") {
  const std::string dir = temp_dir("steps_unknown");
  write_text(dir + "/config.json", tiny_mtf_top2_layer_config().dump());
  const CommandResult result = run_cli("run " + dir + "/config.json -o " + dir + "/trace.json --steps index_1,index_3");
  INFO(result.output);
  CHECK(result.exit_code == 2);
  CHECK_THAT(result.output, Contains("steps") && Contains("\"index_3\"") && Contains("index_1") &&
                                Contains("dispatch_tensor") && Contains("combine_tensor") && Contains("outputs"));
  CHECK(!std::filesystem::exists(dir + "/trace.json"));

  nlohmann::json config = tiny_mtf_top2_layer_config();
  config["steps"] = {"gates"};
  CHECK_THROWS_WITH(run_json(config), Contains("steps: got \"gates\"") && Contains("index_1"));
}

TEST_CASE("steps: a malformed list is an error naming the field", "[steps][cli]") {
  nlohmann::json config = tiny_mtf_top2_layer_config();
  config["steps"] = nlohmann::json::array();
  CHECK_THROWS_WITH(run_json(config), Contains("steps: got an empty list"));
  config["steps"] = {"index_1", "index_1"};
  CHECK_THROWS_WITH(run_json(config), Contains("steps: got \"index_1\" twice"));
  config["steps"] = "index_1";
  CHECK_THROWS_WITH(run_json(config), Contains("steps: got \"index_1\"") && Contains("an array of step names"));
  config["steps"] = {1};
  CHECK_THROWS_AS(run_json(config), moeref::InputError);

  const std::string dir = temp_dir("steps_malformed");
  write_text(dir + "/config.json", tiny_mtf_top2_layer_config().dump());
  const CommandResult twice = run_cli("run " + dir + "/config.json -o " + dir + "/trace.json --steps index_1,index_1");
  INFO(twice.output);
  CHECK(twice.exit_code == 2);
  CHECK_THAT(twice.output, Contains("--steps: got \"index_1\" twice"));
}
