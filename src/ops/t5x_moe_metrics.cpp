#include "moeref/ops/t5x_moe_metrics.hpp"

#include "moeref/error.hpp"

namespace moeref::ops {

const std::vector<std::string>& t5x_moe_metric_names() {
  static const std::vector<std::string> names = {"auxiliary_loss", "router_z_loss", "fraction_tokens_left_behind",
                                                 "expert_usage", "router_confidence"};
  return names;
}

T5xMoeMetrics t5x_moe_metrics(const std::vector<std::map<std::string, float>>& layers, double aux_loss_factor,
                              double router_z_loss_factor) {
  T5xMoeMetrics out;
  for (const std::string& metric : t5x_moe_metric_names()) {
    // summed_metric = 0.0; summed_metric += jnp.asarray(value, dtype=jnp.float32): float32 adds
    // in layer order.
    float summed_metric = 0.0f;
    int count = 0;
    for (const std::map<std::string, float>& layer : layers) {
      auto it = layer.find(metric);
      if (it == layer.end()) continue;
      summed_metric = summed_metric + it->second;
      ++count;
    }
    if (count == 0) {
      fail_input("layers", "no layer with the metric " + metric,
                 "traces that record every MoE metric (auxiliary_loss, router_z_loss, fraction_tokens_left_behind, "
                 "expert_usage, router_confidence): the flaxformer variants (t5x raises ValueError)");
    }
    out.averages[metric] = summed_metric / static_cast<float>(count);
  }
  out.aux_loss = static_cast<float>(aux_loss_factor) * out.averages["auxiliary_loss"];
  out.router_z_loss = static_cast<float>(router_z_loss_factor) * out.averages["router_z_loss"];
  return out;
}

}  // namespace moeref::ops
