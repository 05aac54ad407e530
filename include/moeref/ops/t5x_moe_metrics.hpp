// google-research/t5x t5x/contrib/moe/models.py (at cc342d4): how the model combines the metrics
// every MoE layer sows (flaxformer MoeLayer._sow_expert_metrics) into its losses and reported
// metrics.
//   _extract_diversity_metrics: for each name in MOE_METRICS, summed_metric = 0.0 plus every
//     sown value as float32, in layer order; the average is summed_metric / count (float32).
//   _expert_losses: aux_loss = aux_loss_factor * mean(auxiliary_loss); router_z_loss =
//     router_z_loss_factor * mean(router_z_loss) (Python floats meet float32: f32(factor)).
//   _expert_metrics: 'experts/<name>' are those averages (the two losses weighted).
#pragma once

#include <map>
#include <string>
#include <vector>

namespace moeref::ops {

// MOE_METRICS, in the source's order.
const std::vector<std::string>& t5x_moe_metric_names();

struct T5xMoeMetrics {
  std::map<std::string, float> averages;  // name -> average over the layers (diversity metrics)
  float aux_loss = 0.0f;                  // aux_loss_factor * average auxiliary_loss
  float router_z_loss = 0.0f;             // router_z_loss_factor * average router_z_loss
};

// layers: one map per MoE layer, name -> its sown value, in layer order. Throws InputError
// (the source's ValueError "Unable to find expert metric") when no layer has a metric.
T5xMoeMetrics t5x_moe_metrics(const std::vector<std::map<std::string, float>>& layers, double aux_loss_factor,
                              double router_z_loss_factor);

}  // namespace moeref::ops
