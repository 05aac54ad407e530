// A planted drift that the atol/rtol defaults could not see (spec/trace-format.md,
// "Tolerances"): every nonzero float of every step and loss of a golden moved 64 ulps away
// from zero. 64 ulps is at most 64 x 2^-23 = 7.6e-6 of the value, inside the old
// elementwise rtol 1e-5 and far inside the old matrix-product rtol 1e-4, so the old
// defaults pass every such candidate; the float32 bounds fail it in every golden that has
// a nonzero float to move, at more than three quarters of the float steps. The torch
// backends pass the same goldens (tools/backends/run_conformance.py, which runs the same
// drift beside them).
//
// Dims: G groups, S group size, E experts, C capacity.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "moeref/check.hpp"
#include "test_support.hpp"

namespace fs = std::filesystem;

namespace {

constexpr int kDriftUlps = 64;

// The matrix products of the atol/rtol defaults before the per-step bounds (their rtol was
// 1e-4; every other float step had atol 1e-6, rtol 1e-5).
const std::vector<std::string> kOldProducts = {"logits",
                                               "expert_inputs",
                                               "expert_hidden",
                                               "expert_hidden_dropout",
                                               "expert_outputs",
                                               "outputs",
                                               "gate_logits",
                                               "expert_hidden_x",
                                               "expert_hidden_gate",
                                               "expert_geglu",
                                               "output",
                                               "ff_before_hidden_x",
                                               "ff_before_hidden_gate",
                                               "ff_before_geglu",
                                               "ff_before_output",
                                               "ff_after_hidden_x",
                                               "ff_after_hidden_gate",
                                               "ff_after_geglu",
                                               "ff_after_output"};

moeref::CheckOptions old_defaults() {
  moeref::CheckOptions options;
  options.float_tolerance = {1e-6, 1e-5};
  options.float_tolerance_given = true;
  for (const std::string& step : kOldProducts) options.per_tensor[step] = {1e-5, 1e-4};
  return options;
}

// `ulps` float32 steps away from zero; 0, NaN and infinities stay.
float drifted(float value, int ulps) {
  if (value == 0.0f || !std::isfinite(value)) return value;
  uint32_t bits = 0;
  std::memcpy(&bits, &value, sizeof(bits));
  bits += static_cast<uint32_t>(ulps);
  float out = 0.0f;
  std::memcpy(&out, &bits, sizeof(out));
  return std::isfinite(out) ? out : value;
}

}  // namespace

TEST_CASE("drift: 64 ulps on every float step passes the old atol/rtol defaults and fails the float32 bounds",
          "[check][bounds][drift]") {
  std::vector<fs::path> paths;
  for (const fs::directory_entry& dir : fs::directory_iterator(fs::path(MOEREF_SOURCE_DIR) / "golden")) {
    if (!dir.is_directory()) continue;
    for (const fs::directory_entry& file : fs::directory_iterator(dir.path())) {
      if (file.path().string().find(".trace.json") != std::string::npos) paths.push_back(file.path());
    }
  }
  std::sort(paths.begin(), paths.end());
  REQUIRE(paths.size() > 50);
  int64_t float_steps = 0, failing_steps = 0, goldens_failed = 0, goldens_moved = 0;
  for (const fs::path& path : paths) {
    const moeref::Trace golden = moeref::read_trace_file(path.string());
    moeref::Trace candidate = golden;
    bool moved = false;
    for (moeref::NamedTensor& step : candidate.steps) {
      if (step.tensor.dtype != moeref::DType::kFloat32) continue;
      ++float_steps;
      for (float& value : step.tensor.f32) {
        const float before = value;
        value = drifted(value, kDriftUlps);
        moved = moved || value != before;
      }
    }
    for (auto& [name, value] : candidate.losses) value = drifted(value, kDriftUlps);
    INFO(path.string());
    // Every value is within 7.6e-6 of the golden's: the old defaults pass it.
    const moeref::CheckReport old_report = moeref::compare_traces(golden, candidate, old_defaults());
    INFO(old_report.to_text());
    CHECK(old_report.pass);
    const moeref::CheckReport report = moeref::compare_traces(golden, candidate, moeref::CheckOptions{});
    if (!moved) {
      CHECK(report.pass);  // nothing nonzero to move (a golden whose floats are all 0)
      continue;
    }
    ++goldens_moved;
    INFO(report.to_text());
    CHECK_FALSE(report.pass);
    CHECK_FALSE(report.first_divergent_step.empty());
    goldens_failed += report.pass ? 0 : 1;
    for (const moeref::TensorResult& result : report.results) {
      if (result.section == "steps" && result.dtype == "float32" && result.status == moeref::TensorStatus::kMismatch) {
        ++failing_steps;
      }
    }
  }
  // The numbers spec/trace-format.md quotes: every golden with a nonzero float fails, at
  // more than three quarters of all float steps.
  CHECK(goldens_failed == goldens_moved);
  CHECK(failing_steps * 4 > float_steps * 3);
  WARN("drift of " << kDriftUlps << " ulps: " << goldens_failed << " of " << paths.size() << " goldens fail, at "
                   << failing_steps << " of " << float_steps << " float steps; the old defaults pass all");
}
