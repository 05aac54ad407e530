// moeref t5x-metrics TRACE... : the model-level MoE losses and metrics of t5x
// (t5x/contrib/moe/models.py: _extract_diversity_metrics, _expert_losses, _expert_metrics)
// from the traces of the model's MoE layers, in layer order.

#include <iostream>

#include "commands.hpp"
#include "moeref/atomic_file.hpp"
#include "moeref/error.hpp"
#include "moeref/json_number.hpp"
#include "moeref/ops/t5x_moe_metrics.hpp"
#include "moeref/trace.hpp"

namespace moeref::cli {

namespace {

// The metrics one layer sowed: the losses auxiliary_loss and router_z_loss and the scalar
// steps fraction_tokens_left_behind, expert_usage, router_confidence.
std::map<std::string, float> sown_metrics(const Trace& trace) {
  std::map<std::string, float> out;
  for (const auto& [name, value] : trace.losses) out[name] = value;
  for (const std::string& name : ops::t5x_moe_metric_names()) {
    const Tensor* step = trace.find_step(name);
    if (step != nullptr && step->dtype == DType::kFloat32 && step->num_elements() == 1) out[name] = step->f32[0];
  }
  std::map<std::string, float> kept;
  for (const std::string& name : ops::t5x_moe_metric_names()) {
    if (out.count(name)) kept[name] = out[name];
  }
  return kept;
}

std::string number(float value) {
  std::string text;
  append_float32(text, value);
  return text;
}

}  // namespace

void add_t5x_metrics_command(CLI::App& app, int& exit_code) {
  struct Options {
    std::vector<std::string> traces;
    double aux_loss_factor = 0.01;
    double router_z_loss_factor = 0.0;
    std::string output_path;
  };
  auto options = std::make_shared<Options>();
  CLI::App* cmd = app.add_subcommand(
      "t5x-metrics", "Average the MoE metrics of several layers' traces as t5x does, with its weighted losses");
  cmd->add_option("traces", options->traces, "Traces of the model's MoE layers, in layer order")->required();
  cmd->add_option("--aux-loss-factor", options->aux_loss_factor, "aux_loss_factor (gin AUX_LOSS_FACTOR: 0.01)");
  cmd->add_option("--router-z-loss-factor", options->router_z_loss_factor,
                  "router_z_loss_factor (gin ROUTER_Z_LOSS_FACTOR: 0.0; ST-MoE 1e-4)");
  cmd->add_option("-o,--output", options->output_path, "Write the JSON here instead of stdout");
  cmd->callback([options, &exit_code]() {
    std::vector<std::map<std::string, float>> layers;
    for (const std::string& path : options->traces) layers.push_back(sown_metrics(read_trace_file(path)));
    const ops::T5xMoeMetrics metrics =
        ops::t5x_moe_metrics(layers, options->aux_loss_factor, options->router_z_loss_factor);
    std::string json = "{\"format\": \"moeref-t5x-moe-metrics\", \"layers\": " + std::to_string(layers.size());
    json += ", \"diversity_metrics\": {";
    bool first = true;
    for (const std::string& name : ops::t5x_moe_metric_names()) {
      json += std::string(first ? "" : ", ") + "\"" + name + "\": " + number(metrics.averages.at(name));
      first = false;
    }
    json += "}, \"metrics\": {\"experts/auxiliary_loss\": " + number(metrics.aux_loss) +
            ", \"experts/router_z_loss\": " + number(metrics.router_z_loss);
    for (const char* name : {"fraction_tokens_left_behind", "expert_usage", "router_confidence"}) {
      json += std::string(", \"experts/") + name + "\": " + number(metrics.averages.at(name));
    }
    json += "}}\n";
    if (options->output_path.empty()) {
      std::cout << json;
    } else {
      write_file_atomically(options->output_path, json);
    }
    exit_code = 0;
  });
}

}  // namespace moeref::cli
