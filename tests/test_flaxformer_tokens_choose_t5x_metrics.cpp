// t5x's model-level MoE metrics (google-research/t5x, t5x/contrib/moe/models.py at cc342d4:
// _extract_diversity_metrics, _expert_losses, _expert_metrics) over the metrics flaxformer's
// MoeLayer sows, which the flaxformer variants record as steps and losses.
#include <map>
#include <string>
#include <vector>

#include "moeref/error.hpp"
#include "moeref/ops/t5x_moe_metrics.hpp"
#include "test_support.hpp"

using moeref::testing::loss;
using moeref::testing::run_cli;
using moeref::testing::step;

namespace {

std::map<std::string, float> layer(float aux, float z, float left_behind, float usage, float confidence) {
  return {{"auxiliary_loss", aux},
          {"router_z_loss", z},
          {"fraction_tokens_left_behind", left_behind},
          {"expert_usage", usage},
          {"router_confidence", confidence}};
}

}  // namespace

TEST_CASE("t5x metrics: float32 sums in layer order, one division, factors as float32", "[flaxformer_tokens_choose]") {
  using moeref::ops::t5x_moe_metrics;
  const moeref::ops::T5xMoeMetrics two =
      t5x_moe_metrics({layer(1.0f, 2.0f, 0.25f, 0.5f, 0.75f), layer(0.5f, 1.0f, 0.0f, 1.0f, 0.25f)}, 0.01, 1e-4);
  CHECK(two.averages.at("auxiliary_loss") == 0.75f);
  CHECK(two.averages.at("router_z_loss") == 1.5f);
  CHECK(two.averages.at("fraction_tokens_left_behind") == 0.125f);
  CHECK(two.averages.at("expert_usage") == 0.75f);
  CHECK(two.averages.at("router_confidence") == 0.5f);
  // aux_loss = aux_loss_factor * mean: f32(0.01) * 0.75; router_z_loss = f32(1e-4) * 1.5.
  CHECK(two.aux_loss == static_cast<float>(0.01) * 0.75f);
  CHECK(two.router_z_loss == static_cast<float>(1e-4) * 1.5f);
  // summed_metric += value in float32: 2^24 + 1 + 1 loses both ones (the exact mean would be
  // (2^24 + 2) / 3); then one division by the count.
  const float big = 16777216.0f;
  const moeref::ops::T5xMoeMetrics three =
      t5x_moe_metrics({layer(big, 0, 0, 0, 0), layer(1.0f, 0, 0, 0, 0), layer(1.0f, 0, 0, 0, 0)}, 1.0, 1.0);
  CHECK(three.averages.at("auxiliary_loss") == big / 3.0f);
  // A metric no layer sows: t5x raises ValueError("Unable to find expert metric").
  std::map<std::string, float> partial = layer(1, 1, 1, 1, 1);
  partial.erase("expert_usage");
  CHECK_THROWS_WITH(t5x_moe_metrics({partial}, 0.01, 0.0), Catch::Contains("expert_usage"));
}

TEST_CASE("t5x metrics from layer traces: moeref t5x-metrics", "[flaxformer_tokens_choose][cli]") {
  const std::string golden = std::string(MOEREF_SOURCE_DIR) + "/golden/";
  const std::string first = golden + "flaxformer_tokens_choose/masked_top2_bpr_jitter_padded_layer.trace.json";
  const std::string second = golden + "flaxformer_experts_choose/defaults_bfloat16_combine_layer.trace.json";
  const moeref::testing::CommandResult result =
      run_cli("t5x-metrics '" + first + "' '" + second + "' --router-z-loss-factor 0.0001");
  REQUIRE(result.exit_code == 0);
  const nlohmann::json out = nlohmann::json::parse(result.output);
  CHECK(out["layers"] == 2);
  const moeref::Trace a = moeref::read_trace_file(first);
  const moeref::Trace b = moeref::read_trace_file(second);
  const float aux = (0.0f + loss(a, "auxiliary_loss") + loss(b, "auxiliary_loss")) / 2.0f;
  CHECK(out["diversity_metrics"]["auxiliary_loss"].get<float>() == aux);
  CHECK(out["metrics"]["experts/auxiliary_loss"].get<float>() == static_cast<float>(0.01) * aux);
  const float usage = (step(a, "expert_usage").f32[0] + step(b, "expert_usage").f32[0]) / 2.0f;
  CHECK(out["metrics"]["experts/expert_usage"].get<float>() == usage);
  // A trace without the sown metrics (stmoe_topn) is refused with exit status 2.
  const moeref::testing::CommandResult refused =
      run_cli("t5x-metrics '" + golden + "stmoe_topn/default_moe_train.trace.json'");
  CHECK(refused.exit_code == 2);
  CHECK_THAT(refused.output, Catch::Contains("auxiliary_loss"));
}
