// The README's variants table lists every registered variant exactly once, and nothing else.
#include <map>
#include <sstream>
#include <string>

#include "moeref/atomic_file.hpp"
#include "moeref/registry.hpp"
#include "test_support.hpp"

TEST_CASE("README: the variants table has one row per registered variant", "[docs]") {
  const std::string readme = moeref::read_whole_file(std::string(MOEREF_SOURCE_DIR) + "/README.md", "README");
  const size_t start = readme.find("\n## Variants\n");
  REQUIRE(start != std::string::npos);
  const size_t end = readme.find("\n## ", start + 1);
  std::istringstream section(readme.substr(start, end - start));
  // Rows look like "| `mtf_top2` | source | spec link |".
  std::map<std::string, int> rows;
  for (std::string line; std::getline(section, line);) {
    if (line.rfind("| `", 0) != 0) continue;
    const size_t close = line.find('`', 3);
    REQUIRE(close != std::string::npos);
    ++rows[line.substr(3, close - 3)];
  }
  std::map<std::string, int> expected;
  for (const moeref::VariantSpec& spec : moeref::all_variants()) expected[spec.id] = 1;
  CHECK(rows == expected);
  for (const auto& [id, count] : rows) {
    INFO("variant " << id);
    CHECK(count == 1);
  }
}
