// Golden regression: every checked-in golden trace is reproduced by the current
// code, judged by the checker (discrete tensors exact, floats within the
// default tolerance, spec/trace-format.md). A failure here means behaviour
// changed: if deliberately, run tools/regen_goldens.sh and explain in the commit.
#include <filesystem>
#include <fstream>

#include "moeref/atomic_file.hpp"
#include "moeref/check.hpp"
#include "moeref/registry.hpp"
#include "test_support.hpp"

namespace fs = std::filesystem;

namespace {

nlohmann::json read_json(const fs::path& path) {
  return moeref::parse_json_text(moeref::read_whole_file(path.string(), "file"), path.string());
}

std::string failures(const moeref::CheckReport& report) { return report.to_text(); }

}  // namespace

TEST_CASE("every golden trace is reproduced from its config and from itself", "[golden]") {
  const fs::path golden_root = fs::path(MOEREF_SOURCE_DIR) / "golden";
  int cases = 0;
  for (const moeref::VariantSpec& variant : moeref::all_variants()) {
    const fs::path dir = golden_root / variant.id;
    const nlohmann::json manifest = read_json(dir / "manifest.json");
    REQUIRE(manifest["variant"] == variant.id);
    for (const nlohmann::json& entry : manifest["cases"]) {
      const std::string name = entry["name"].get<std::string>();
      INFO("golden case " << variant.id << "/" << name);
      const moeref::Trace golden = moeref::read_trace_file((dir / entry["trace"].get<std::string>()).string());
      const moeref::Trace from_config =
          moeref::run_config(moeref::load_config_file((dir / entry["config"].get<std::string>()).string()));
      const moeref::CheckReport report = moeref::compare_traces(golden, from_config, moeref::CheckOptions{});
      INFO(failures(report));
      CHECK(report.pass);
      // Every golden step must have been compared: nothing may pass by being absent.
      for (const moeref::TensorResult& result : report.results) {
        CHECK(result.status != moeref::TensorStatus::kNotChecked);
      }
      // The file is in canonical form: reading and re-writing it gives the same bytes.
      const std::string golden_path = (dir / entry["trace"].get<std::string>()).string();
      CHECK(moeref::write_trace(golden) == moeref::read_whole_file(golden_path, "golden"));
      const moeref::Trace replayed =
          moeref::run_config(moeref::load_config_file((dir / entry["trace"].get<std::string>()).string()));
      CHECK(moeref::compare_traces(golden, replayed, moeref::CheckOptions{}).pass);
      ++cases;
    }
  }
  CHECK(cases >= 5);
}

TEST_CASE("every registered variant has its spec page, goldens and documented hparams", "[golden][registry]") {
  for (const moeref::VariantSpec& variant : moeref::all_variants()) {
    INFO("variant " << variant.id);
    const fs::path page = fs::path(MOEREF_SOURCE_DIR) / variant.spec_page;
    REQUIRE(fs::exists(page));
    const std::string text = moeref::read_whole_file(page.string(), "spec page");
    for (const moeref::HparamSpec& hparam : variant.hparams) {
      INFO("hparam " << hparam.name);
      CHECK(text.find("`" + hparam.name + "`") != std::string::npos);
      CHECK_FALSE(hparam.meaning.empty());
    }
    const fs::path manifest = fs::path(MOEREF_SOURCE_DIR) / "golden" / variant.id / "manifest.json";
    REQUIRE(fs::exists(manifest));
    CHECK(read_json(manifest)["cases"].size() >= 1);
  }
}

TEST_CASE("traces are byte-identical for 1 and 2 OpenMP threads", "[determinism]") {
  // G=4 groups and E=4 experts so that both parallel loops really split.
  const std::string dir = moeref::testing::temp_dir("threads");
  const std::string config = dir + "/config.json";
  std::ofstream(config) << R"({"variant":"mtf_top2","seed":11,"train":true,
    "dims":{"G":4,"S":16,"E":4,"M":8,"H":8},
    "hparams":{"activation":["gelu","linear"],"dropout_rate":0.1,"use_second_place_loss":true}})";
  const auto one = moeref::testing::run_cli("run " + config + " -o " + dir + "/one.json --threads 1");
  const auto two = moeref::testing::run_cli("run " + config + " -o " + dir + "/two.json --threads 2");
  REQUIRE(one.exit_code == 0);
  REQUIRE(two.exit_code == 0);
  CHECK(moeref::read_whole_file(dir + "/one.json", "trace") == moeref::read_whole_file(dir + "/two.json", "trace"));
  fs::remove_all(dir);
}
