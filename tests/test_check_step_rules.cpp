// The checker's table of float steps (src/check/step_rules.cpp) against every golden:
// it cannot drift from what the variants record without a test failing here.
//
//   - every float step and loss of every golden has a row, and its bound can be derived;
//   - a matrix product's row names the dims its golden contracts: the dims of its two
//     operands (its first two reads) that the output lacks are exactly the row's
//     contracted and gathered dims, einsum style (logits [G, S, E] reads inputs
//     [G, S, M] and router_weights [M, E]: M); or the step copies the one input it reads
//     (logits supplied by the config);
//   - every row is used by some golden (a row for a step nobody records is a stale row).
//
// Dims: G groups, S group size, E experts, C capacity, M model, H hidden, K choices.
#include <algorithm>
#include <cmath>
#include <filesystem>
#include <set>
#include <string>
#include <vector>

#include "moeref/check.hpp"
#include "moeref/step_bounds.hpp"
#include "moeref/trace.hpp"
#include "test_support.hpp"

namespace fs = std::filesystem;

namespace {

struct Golden {
  std::string path;
  moeref::Trace trace;
};

const std::vector<Golden>& goldens() {
  static const std::vector<Golden> all = [] {
    std::vector<std::string> paths;
    for (const fs::directory_entry& dir : fs::directory_iterator(fs::path(MOEREF_SOURCE_DIR) / "golden")) {
      if (!dir.is_directory()) continue;
      for (const fs::directory_entry& file : fs::directory_iterator(dir.path())) {
        const std::string name = file.path().filename().string();
        if (name.size() > 11 && name.substr(name.size() - 11) == ".trace.json") paths.push_back(file.path().string());
      }
    }
    std::sort(paths.begin(), paths.end());
    std::vector<Golden> loaded;
    for (const std::string& path : paths) loaded.push_back({path, moeref::read_trace_file(path)});
    return loaded;
  }();
  return all;
}

std::string variant_of(const moeref::Trace& trace) { return trace.config["variant"].get<std::string>(); }

const moeref::Tensor* read_tensor(const moeref::Trace& trace, const std::string& read) {
  return read.rfind("inputs.", 0) == 0 ? trace.find_input(read.substr(7)) : trace.find_step(read);
}

// A read's dims as the checker lines them up with the step: [B, L] tokens read as [G, S]
// when the step has no B or L.
std::set<std::string> dims_seen_by(const moeref::Tensor& read, const moeref::Tensor& out) {
  std::set<std::string> dims(read.dims.begin(), read.dims.end());
  const bool tokens = std::find(out.dims.begin(), out.dims.end(), "B") == out.dims.end() &&
                      std::find(out.dims.begin(), out.dims.end(), "L") == out.dims.end();
  if (tokens && dims.erase("B")) dims.insert("G");
  if (tokens && dims.erase("L")) dims.insert("S");
  return dims;
}

}  // namespace

TEST_CASE("step rules: every float step and loss of every golden has a row and a bound", "[check][bounds]") {
  REQUIRE(goldens().size() > 50);
  for (const Golden& golden : goldens()) {
    moeref::Float32Bounds bounds(golden.trace);
    for (const moeref::NamedTensor& step : golden.trace.steps) {
      if (step.tensor.dtype != moeref::DType::kFloat32) continue;
      INFO(golden.path << ": step " << step.name);
      CHECK(moeref::find_step_rule(variant_of(golden.trace), step.name) != nullptr);
      const std::optional<moeref::Float32Bound> bound = bounds.step(step.name);
      REQUIRE(bound.has_value());
      CHECK(bound->bound.size() == static_cast<size_t>(step.tensor.num_elements()));
      for (double value : bound->bound) CHECK(value >= moeref::kBoundFloor);
    }
    for (const auto& [name, value] : golden.trace.losses) {
      INFO(golden.path << ": loss " << name);
      const std::optional<moeref::Float32Bound> bound = bounds.loss(name);
      // Tutel's load-importance loss (a coefficient of variation, which cancels) keeps the
      // atol/rtol default: the one loss without a derived bound (spec/trace-format.md).
      const bool load_importance = variant_of(golden.trace) == "tutel_topk" && golden.trace.find_step("threshold");
      CHECK(bound.has_value() != load_importance);
    }
  }
}

TEST_CASE("step rules: a matrix product's row names the dims its golden contracts", "[check][bounds]") {
  int products = 0, copies = 0;
  for (const Golden& golden : goldens()) {
    for (const moeref::NamedTensor& step : golden.trace.steps) {
      const moeref::StepRule* rule = moeref::find_step_rule(variant_of(golden.trace), step.name);
      if (rule == nullptr || !moeref::is_product_step(step.name) ||
          (rule->kind != moeref::BoundKind::kRouterProduct && rule->kind != moeref::BoundKind::kProduct &&
           rule->kind != moeref::BoundKind::kProductActivation)) {
        continue;
      }
      INFO(golden.path << ": step " << step.name);
      const std::vector<std::string>& reads = golden.trace.reads.at(step.name);
      if (reads.size() == 1) {
        // The config supplied this tensor: the step copies the input.
        CHECK(reads[0] == "inputs." + step.name);
        ++copies;
        continue;
      }
      REQUIRE(reads.size() >= 2);
      const moeref::Tensor* a = read_tensor(golden.trace, reads[0]);
      const moeref::Tensor* b = read_tensor(golden.trace, reads[1]);
      REQUIRE(a != nullptr);
      REQUIRE(b != nullptr);
      std::set<std::string> operand_dims = dims_seen_by(*a, step.tensor);
      for (const std::string& dim : dims_seen_by(*b, step.tensor)) operand_dims.insert(dim);
      std::set<std::string> contracted;
      for (const std::string& dim : operand_dims) {
        if (std::find(step.tensor.dims.begin(), step.tensor.dims.end(), dim) == step.tensor.dims.end()) {
          contracted.insert(dim);
        }
      }
      std::set<std::string> declared;
      for (const char* p = rule->dims; *p != '\0'; ++p) declared.insert(std::string(1, *p));
      for (const char* p = rule->gathered; *p != '\0'; ++p) declared.insert(std::string(1, *p));
      CHECK(contracted == declared);
      ++products;
    }
  }
  CHECK(products > 300);
  CHECK(copies > 10);
}

TEST_CASE("step rules: every row is used by some golden", "[check][bounds]") {
  std::set<const moeref::StepRule*> used;
  std::set<const moeref::LossRule*> used_losses;
  for (const Golden& golden : goldens()) {
    for (const moeref::NamedTensor& step : golden.trace.steps) {
      if (step.tensor.dtype != moeref::DType::kFloat32) continue;
      used.insert(moeref::find_step_rule(variant_of(golden.trace), step.name));
    }
    for (const auto& [name, value] : golden.trace.losses) {
      used_losses.insert(moeref::find_loss_rule(variant_of(golden.trace), name, golden.trace));
    }
  }
  for (const moeref::StepRule& rule : moeref::float32_step_rules()) {
    INFO("row " << rule.variants << " / " << rule.step);
    CHECK(used.count(&rule) == 1);
  }
  for (const moeref::LossRule& rule : moeref::float32_loss_rules()) {
    INFO("loss row " << rule.variants << " / " << rule.loss);
    CHECK(used_losses.count(&rule) == 1);
  }
}

TEST_CASE("step rules: every golden passes against itself with nothing left to the atol/rtol fallback",
          "[check][bounds]") {
  for (const Golden& golden : goldens()) {
    INFO(golden.path);
    const moeref::CheckReport report = moeref::compare_traces(golden.trace, golden.trace, moeref::CheckOptions{});
    CHECK(report.pass);
    // A bit-identical candidate needs no bound (compare_traces skips it), so ask for each
    // step's and loss's tolerance as a differing candidate would get it.
    moeref::Float32Bounds defaults(golden.trace);
    auto rule_of = [&](const std::string& name, bool loss) {
      return moeref::tolerance_for_step(moeref::CheckOptions{}, golden.trace, name, defaults, loss).rule();
    };
    auto check_rule = [&](const std::string& name, bool loss) {
      const std::string rule = rule_of(name, loss);
      INFO((loss ? "losses." : "steps.") << name << ": " << rule);
      const bool load_importance = name == "l_aux" && golden.trace.find_step("threshold") != nullptr;
      CHECK((rule.rfind("float32", 0) == 0) != load_importance);
    };
    for (const moeref::NamedTensor& step : golden.trace.steps) {
      if (step.tensor.dtype == moeref::DType::kFloat32) check_rule(step.name, false);
    }
    for (const auto& [name, value] : golden.trace.losses) check_rule(name, true);
  }
}

TEST_CASE("step rules: a bit-identical tensor skips its bound, a moved one gets its rule", "[check][bounds]") {
  const moeref::Trace& golden = moeref::testing::tiny_mtf_top2_layer_trace();
  moeref::Trace candidate = golden;
  float& moved = moeref::testing::mutable_step(candidate, "outputs").f32[0];
  moved = std::nextafter(moved, 2.0f * moved + 1.0f);  // one ulp: inside any product bound
  const moeref::CheckReport report = moeref::compare_traces(golden, candidate, moeref::CheckOptions{});
  CHECK(report.pass);
  int identical = 0;
  for (const moeref::TensorResult& result : report.results) {
    if (result.dtype != "float32" || result.section == "inputs") continue;
    INFO(result.section << "." << result.name << ": " << result.tolerance);
    if (result.name == "outputs") {
      CHECK(result.tolerance.rfind("float32 matrix product", 0) == 0);
      CHECK(result.bound_used > 0.0);
    } else {
      CHECK(result.tolerance == "bit-identical to the golden (no bound needed)");
      CHECK(result.bound_used == 0.0);
      ++identical;
    }
  }
  CHECK(identical > 5);
}
