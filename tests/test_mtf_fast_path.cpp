// `moeref run --fast` (Config::fast): the mtf expert layer's dispatch and combine by
// index (frame/mtf_index_dispatch.hpp), cross-checked against the literal dense
// einsums on every golden config.
//
// Dims: G groups, S group size, E experts, C capacity, M model, N output.
// What must hold where the fast path is taken: the same steps, every int32 step
// (routing) and every input identical, every float step before the expert FFN equal
// in value (the fast sums leave out only ±0 terms, so at most the sign of a zero
// differs), the FFN's steps and those after it equal in value too where this CPU has
// no fused kernel (ops::fused_matmul_kernel), the same losses, the checker's verdict
// PASS, and the trace saying "fast": true and which products made it.
// Where it is not taken (variants without the mtf expert layer, gating scope) the
// trace is the literal one, byte for byte.
#include <algorithm>
#include <filesystem>
#include <string>
#include <vector>

#include "moeref/check.hpp"
#include "moeref/ops/matmul.hpp"
#include "test_support.hpp"

using namespace moeref::testing;

namespace {

std::vector<std::string> golden_configs() {
  std::vector<std::string> paths;
  for (const auto& variant : std::filesystem::directory_iterator(std::string(MOEREF_SOURCE_DIR) + "/golden")) {
    const std::filesystem::path cases = variant.path() / "cases";
    if (!std::filesystem::is_directory(cases)) continue;
    for (const auto& config : std::filesystem::directory_iterator(cases)) paths.push_back(config.path().string());
  }
  std::sort(paths.begin(), paths.end());
  return paths;
}

// Returns how many float steps differ in value (those the fused FFN products reach).
int require_equal_values(const moeref::Trace& literal, const moeref::Trace& fast) {
  const bool fused = !moeref::ops::fused_matmul_kernel().empty();
  bool after_ffn = false;
  int differing = 0;
  REQUIRE(literal.steps.size() == fast.steps.size());
  for (size_t i = 0; i < literal.steps.size(); ++i) {
    const moeref::NamedTensor& a = literal.steps[i];
    const moeref::NamedTensor& b = fast.steps[i];
    INFO("step " << a.name);
    REQUIRE(a.name == b.name);
    REQUIRE(a.tensor.dtype == b.tensor.dtype);
    REQUIRE(a.tensor.shape == b.tensor.shape);
    CHECK(a.tensor.i32 == b.tensor.i32);  // routing: identical
    after_ffn = after_ffn || a.name == "expert_hidden";
    if (fused && after_ffn) {
      differing += a.tensor.f32 != b.tensor.f32;  // within the checker's bounds (below)
    } else {
      CHECK(a.tensor.f32 == b.tensor.f32);  // by value: +0 == -0
    }
  }
  REQUIRE(literal.inputs.size() == fast.inputs.size());
  for (size_t i = 0; i < literal.inputs.size(); ++i) {
    INFO("input " << literal.inputs[i].name);
    CHECK(literal.inputs[i].tensor.f32 == fast.inputs[i].tensor.f32);
    CHECK(literal.inputs[i].tensor.i32 == fast.inputs[i].tensor.i32);
  }
  CHECK(literal.losses == fast.losses);
  CHECK(literal.capacity == fast.capacity);
  return differing;
}

}  // namespace

TEST_CASE("fast path: same routing and outputs as the literal einsums on every golden config", "[fast][golden]") {
  int fast_taken = 0, differing = 0;
  for (const std::string& path : golden_configs()) {
    INFO("config " << path);
    moeref::Config config = moeref::load_config_file(path);
    const moeref::Trace literal = moeref::run_config(config);
    config.fast = true;
    const moeref::Trace fast = moeref::run_config(config);
    CHECK(!literal.config.contains("fast"));
    if (!fast.config.contains("fast")) {
      // No mtf expert layer in this run: nothing else may change.
      CHECK(moeref::write_trace(fast) == moeref::write_trace(literal));
      continue;
    }
    ++fast_taken;
    CHECK(fast.config["fast"] == true);
    const std::string fused = moeref::ops::fused_matmul_kernel();
    CHECK(fast.generator["fast_products"] == (fused.empty() ? "separate" : "fma"));
    CHECK(!literal.generator.contains("fast_products"));
    CHECK(fast.find_step("outputs") != nullptr);
    differing += require_equal_values(literal, fast);
    const moeref::CheckReport report = moeref::check_traces(literal, fast, moeref::CheckOptions{});
    INFO(report.to_text());
    CHECK(report.pass);
  }
  // Every variant built on the mtf expert layer has layer goldens; if the fast path
  // stopped being taken, this count would fall.
  CHECK(fast_taken >= 15);
  // Fused products round differently somewhere in these goldens, so the checker's
  // verdict above was tested on traces that really differ.
  if (!moeref::ops::fused_matmul_kernel().empty()) CHECK(differing > 0);
}

TEST_CASE("fast path: traces do not depend on the thread count, and replay with the fast path", "[fast][cli]") {
  const std::string dir = temp_dir("fast_threads");
  nlohmann::json config = tiny_mtf_top2_layer_config();
  config["dims"]["M"] = 7;
  write_text(dir + "/config.json", config.dump());
  const std::string run = "run " + dir + "/config.json --fast -o " + dir;
  const CommandResult one = run_cli(run + "/one.json --threads 1");
  const CommandResult two = run_cli(run + "/two.json --threads 2");
  INFO(one.output << two.output);
  REQUIRE(one.exit_code == 0);
  REQUIRE(two.exit_code == 0);
  CHECK(read_text(dir + "/one.json") == read_text(dir + "/two.json"));
  CHECK(moeref::read_trace_file(dir + "/one.json").config["fast"] == true);
  // The trace records the path, so replaying it takes the same one.
  const CommandResult replay = run_cli("run " + dir + "/one.json -o " + dir + "/replay.json");
  INFO(replay.output);
  REQUIRE(replay.exit_code == 0);
  CHECK(read_text(dir + "/replay.json") == read_text(dir + "/one.json"));
}
