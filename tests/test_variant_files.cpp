// Every registered variant has every file spec/adding-a-variant.md lists, and every
// variant file, spec page and golden folder belongs to a registered variant.

#include <catch2/catch.hpp>
#include <filesystem>
#include <set>
#include <string>

#include "moeref/atomic_file.hpp"
#include "moeref/registry.hpp"

namespace fs = std::filesystem;

namespace {

const fs::path kRepo = MOEREF_SOURCE_DIR;

std::set<std::string> registered_ids() {
  std::set<std::string> ids;
  for (const moeref::VariantSpec& spec : moeref::all_variants()) ids.insert(spec.id);
  return ids;
}

// The stems of the files in `dir` whose names end with `suffix`.
std::set<std::string> stems(const fs::path& dir, const std::string& suffix) {
  std::set<std::string> out;
  for (const fs::directory_entry& entry : fs::directory_iterator(dir)) {
    const std::string name = entry.path().filename().string();
    if (name.size() > suffix.size() && name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0) {
      out.insert(name.substr(0, name.size() - suffix.size()));
    }
  }
  return out;
}

}  // namespace

TEST_CASE("variant files: each registered variant has its file, spec page, goldens, tests and README row",
          "[registry][variant_files]") {
  const std::string readme = moeref::read_whole_file((kRepo / "README.md").string(), "README");
  const std::set<std::string> test_files = stems(kRepo / "tests", ".cpp");
  for (const std::string& id : registered_ids()) {
    INFO("variant " << id);
    CHECK(fs::exists(kRepo / "src" / "variants" / (id + ".cpp")));
    CHECK(fs::exists(kRepo / "spec" / "variants" / (id + ".md")));
    CHECK(fs::exists(kRepo / "golden" / id / "manifest.json"));
    CHECK(fs::exists(kRepo / "golden" / id / "cases"));
    if (fs::exists(kRepo / "golden" / id / "cases")) {
      CHECK_FALSE(stems(kRepo / "golden" / id / "cases", ".config.json").empty());
    }
    bool has_tests = false;
    for (const std::string& test : test_files) has_tests = has_tests || test.rfind("test_" + id + "_", 0) == 0;
    CHECK(has_tests);  // tests/test_ID_*.cpp
    CHECK(readme.find("| `" + id + "` |") != std::string::npos);
  }
}

TEST_CASE("variant files: every variant file, golden folder and spec page belongs to a registered variant",
          "[registry][variant_files]") {
  const std::set<std::string> ids = registered_ids();
  for (const std::string& file : stems(kRepo / "src" / "variants", ".cpp")) {
    INFO("src/variants/" << file << ".cpp (a variant file needs a row in src/run/variants.def)");
    CHECK(ids.count(file) == 1);
  }
  for (const fs::directory_entry& entry : fs::directory_iterator(kRepo / "golden")) {
    if (!entry.is_directory()) continue;
    INFO("golden/" << entry.path().filename().string());
    CHECK(ids.count(entry.path().filename().string()) == 1);
  }
  for (const std::string& page : stems(kRepo / "spec" / "variants", ".md")) {
    // Comparisons across variants, not variant pages.
    // Comparisons across variants, not variant pages.
    if (page.size() > 12 && page.compare(page.size() - 12, 12, "_differences") == 0) continue;
    INFO("spec/variants/" << page << ".md");
    CHECK(ids.count(page) == 1);
  }
}
