// A first end-to-end check: a default mtf_top2 layer runs and replays itself.
#include "test_support.hpp"

using moeref::testing::run_json;
using moeref::testing::step;

TEST_CASE("mtf_top2 layer runs and its trace replays byte for byte", "[mtf_top2][replay]") {
  const nlohmann::json config = {{"variant", "mtf_top2"},
                                 {"seed", 3},
                                 {"dims", {{"B", 2}, {"L", 4}, {"E", 3}, {"M", 4}, {"H", 5}}},
                                 {"hparams", {{"group_size", 4}}}};
  const moeref::Trace trace = run_json(config);
  CHECK(step(trace, "combine_tensor").shape == std::vector<int64_t>{2, 4, 3, 4});
  const std::string text = moeref::write_trace(trace);
  const moeref::Trace replayed = run_json(moeref::parse_json_text(text, "trace"));
  CHECK(moeref::write_trace(replayed) == text);
}
