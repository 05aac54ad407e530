// A first end-to-end check: a default mtf_top2 layer runs and replays itself.
#include "test_support.hpp"

using moeref::testing::run_json;
using moeref::testing::step;

TEST_CASE("mtf_top2 layer runs and its trace replays byte for byte", "[mtf_top2][replay]") {
  const moeref::Trace trace = run_json(moeref::testing::tiny_mtf_top2_layer_config());
  CHECK(step(trace, "combine_tensor").shape == std::vector<int64_t>{2, 4, 3, 4});
  const std::string text = moeref::write_trace(trace);
  const moeref::Trace replayed = run_json(moeref::parse_json_text(text, "trace"));
  CHECK(moeref::write_trace(replayed) == text);
}
