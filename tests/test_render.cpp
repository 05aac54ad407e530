// `moeref render`: the page of every golden trace is self-contained and shows the
// counts that the trace's own dispatch tensor gives; a golden against itself passes
// with nothing marked, against an edited candidate shows the first divergent step.
// (tools/check_render.py opens pages in headless Chromium, in its own CTest.)
#include <filesystem>
#include <regex>
#include <string>
#include <vector>

#include "moeref/check.hpp"
#include "moeref/teach/render_html.hpp"
#include "test_support.hpp"

using moeref::testing::mutable_step;
using moeref::testing::read_text;
using moeref::testing::run_cli;
using moeref::testing::temp_dir;

namespace {

// The data-value of the element with this id; "" when the page has none.
std::string shown(const std::string& page, const std::string& id) {
  const std::regex pattern("id=\"" + id + "\"[^>]*data-value=\"([^\"]*)\"");
  std::smatch match;
  return std::regex_search(page, match, pattern) ? match[1].str() : "";
}

// Real tokens with a slot and without one, counted from the dispatch tensor and
// the padding inputs (importance 0, paddings 1) or the padding_mask step (0).
std::pair<int64_t, int64_t> counted(const moeref::Trace& trace) {
  const moeref::Tensor* dispatch = trace.find_step("dispatch_tensor");
  if (dispatch == nullptr || dispatch->dims != std::vector<std::string>{"G", "S", "E", "C"}) {
    dispatch = trace.find_step("dispatch_mask");
  }
  const int64_t tokens = dispatch->shape[0] * dispatch->shape[1], per_token = dispatch->shape[2] * dispatch->shape[3];
  std::vector<bool> padding(static_cast<size_t>(tokens), false);
  auto mark = [&](const moeref::Tensor* tensor, bool zero_is_padding) {
    if (tensor == nullptr || tensor->f32.size() != padding.size()) return;
    for (size_t t = 0; t < padding.size(); ++t) {
      padding[t] = padding[t] || (zero_is_padding ? tensor->f32[t] == 0.0f : tensor->f32[t] >= 0.5f);
    }
  };
  mark(trace.find_input("importance"), true);
  mark(trace.find_input("paddings"), false);
  mark(trace.find_step("padding_mask"), true);
  int64_t routed = 0, dropped = 0;
  for (int64_t t = 0; t < tokens; ++t) {
    if (padding[static_cast<size_t>(t)]) continue;
    bool seated = false;
    for (int64_t k = 0; k < per_token; ++k) {
      const size_t i = static_cast<size_t>(t * per_token + k);
      seated = seated || (dispatch->dtype == moeref::DType::kInt32 ? dispatch->i32[i] != 0 : dispatch->f32[i] != 0.0f);
    }
    (seated ? routed : dropped) += 1;
  }
  return {routed, dropped};
}

void check_self_contained(const std::string& page) {
  for (const char* needle : {"http://", "https://", "<script", " src=", "@import", "url("}) {
    INFO("the page contains " << needle);
    CHECK(page.find(needle) == std::string::npos);
  }
}

}  // namespace

TEST_CASE("render: every golden's page is self-contained and shows the trace's routed and dropped tokens", "[render]") {
  int pages = 0;
  for (const auto& entry : std::filesystem::recursive_directory_iterator(std::string(MOEREF_SOURCE_DIR) + "/golden")) {
    const std::string path = entry.path().string();
    if (path.size() < 11 || path.compare(path.size() - 11, 11, ".trace.json") != 0) continue;
    const moeref::Trace trace = moeref::read_trace_file(path);
    if (trace.find_step("dispatch_tensor") == nullptr && trace.find_step("dispatch_mask") == nullptr) continue;
    INFO(path);
    const std::string page = moeref::render_routing_html(trace, moeref::RenderOptions{});
    check_self_contained(page);
    const auto [routed, dropped] = counted(trace);
    CHECK(shown(page, "routed-tokens") == std::to_string(routed));
    CHECK(shown(page, "dropped-tokens") == std::to_string(dropped));
    ++pages;
  }
  CHECK(pages >= 50);
}

TEST_CASE("render: a golden against itself passes, against a moved token shows the first divergent step", "[render]") {
  const std::string golden_path =
      std::string(MOEREF_SOURCE_DIR) + "/golden/mtf_top2/eval_threshold_padding_gelu.trace.json";
  const moeref::Trace golden = moeref::read_trace_file(golden_path);
  const moeref::CheckReport same = moeref::check_traces(golden, golden, moeref::CheckOptions{});
  const std::string agree = moeref::render_comparison_html(golden, golden, same, moeref::RenderOptions{});
  CHECK(agree.find("data-pass=\"true\"") != std::string::npos);
  CHECK(shown(agree, "differing-cells") == "0");
  check_self_contained(agree);

  // The candidate seats token 2 of group 0 where the golden seats token 3, and the other way round.
  moeref::Trace candidate = golden;
  for (const char* name : {"dispatch_tensor", "combine_tensor"}) {
    moeref::Tensor& tensor = mutable_step(candidate, name);
    const int64_t row = tensor.shape[2] * tensor.shape[3];
    for (int64_t k = 0; k < row; ++k) {
      if (tensor.dtype == moeref::DType::kInt32) {
        std::swap(tensor.i32[static_cast<size_t>(2 * row + k)], tensor.i32[static_cast<size_t>(3 * row + k)]);
      } else {
        std::swap(tensor.f32[static_cast<size_t>(2 * row + k)], tensor.f32[static_cast<size_t>(3 * row + k)]);
      }
    }
  }
  const moeref::CheckReport report = moeref::check_traces(golden, candidate, moeref::CheckOptions{});
  REQUIRE(!report.pass);
  const std::string page = moeref::render_comparison_html(golden, candidate, report, moeref::RenderOptions{});
  CHECK(page.find("data-first-divergent-step=\"" + report.first_divergent_step + "\"") != std::string::npos);
  CHECK(report.first_divergent_step == "combine_tensor");
  CHECK(shown(page, "differing-cells") == "6");  // t2 and t3 at each of their three experts
  CHECK(page.find("id=\"first-divergent\"") != std::string::npos);
  CHECK(page.find("g0.t2 at e0: golden no slot, candidate slot c1") != std::string::npos);
}

TEST_CASE("render: a large routing gets the per-expert summary instead of one cell per token", "[render]") {
  const nlohmann::json config = {
      {"variant", "mtf_switch"},
      {"scope", "gating"},
      {"seed", 1},
      {"dims", {{"G", 1}, {"S", 300}, {"E", 4}, {"M", 4}}},
      {"hparams", {{"capacity_factor_train", 1.0}}},
      {"inputs", {{"importance", moeref::testing::tensor_json({"G", "S"}, {1, 300}, std::vector<float>(300, 1.0f))}}}};
  const moeref::Trace trace = moeref::testing::run_json(config);
  const std::string page = moeref::render_routing_html(trace, moeref::RenderOptions{});
  CHECK(page.find("id=\"expert-summary\"") != std::string::npos);
  CHECK(page.find("id=\"grid\"") == std::string::npos);
  const auto [routed, dropped] = counted(trace);
  CHECK(shown(page, "routed-tokens") == std::to_string(routed));
  CHECK(shown(page, "dropped-tokens") == std::to_string(dropped));
  CHECK(dropped > 0);
}

TEST_CASE("cli: render writes the page, with --candidate the verdict, and bad input exits 2 writing nothing",
          "[render][cli]") {
  const std::string dir = temp_dir("render");
  const std::string golden = std::string(MOEREF_SOURCE_DIR) + "/golden/lingvo_hash/leak_layer.trace.json";
  const auto page = run_cli("render " + golden + " -o " + dir + "/routing.html");
  CHECK(page.exit_code == 0);
  CHECK(read_text(dir + "/routing.html").rfind("<!DOCTYPE html>", 0) == 0);
  const auto against = run_cli("render " + golden + " --candidate " + golden + " -o " + dir + "/same.html");
  CHECK(against.exit_code == 0);
  CHECK(against.output.find("the routings agree (PASS)") != std::string::npos);

  const auto missing = run_cli("render " + dir + "/missing.json -o " + dir + "/none.html");
  CHECK(missing.exit_code == 2);
  const auto config = run_cli("render " + std::string(MOEREF_SOURCE_DIR) +
                              "/golden/lingvo_hash/cases/leak_layer.config.json -o " + dir + "/none.html");
  CHECK(config.exit_code == 2);
  const auto bad_candidate =
      run_cli("render " + golden + " --candidate " + dir + "/missing.json -o " + dir + "/none.html");
  CHECK(bad_candidate.exit_code == 2);
  const auto no_output = run_cli("render " + golden);
  CHECK(no_output.exit_code == 2);
  CHECK(!std::filesystem::exists(dir + "/none.html"));
}
