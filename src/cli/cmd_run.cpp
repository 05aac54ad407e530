// moeref run CONFIG.json -o TRACE.json [--steps NAME,...]: run one variant, write its
// trace (only the chosen steps, with every input, when --steps or the config says so).

#include <omp.h>

#include <iostream>

#include "commands.hpp"
#include "moeref/atomic_file.hpp"
#include "moeref/config_reader.hpp"
#include "moeref/run.hpp"
#include "moeref/step_selection.hpp"

namespace moeref::cli {

void add_run_command(CLI::App& app, int& exit_code) {
  struct Options {
    std::string config_path;
    std::string output_path;
    int threads = 0;
    std::vector<std::string> steps;
  };
  auto options = std::make_shared<Options>();
  CLI::App* run = app.add_subcommand("run", "Run a config (or replay a trace) and write its trace");
  run->add_option("config", options->config_path, "Config JSON, or a trace to replay")->required();
  run->add_option("-o,--output", options->output_path, "Where to write the trace")->required();
  run->add_option("--threads", options->threads,
                  "OpenMP threads (default: OMP_NUM_THREADS); traces do not depend on it")
      ->check(CLI::Range(1, 1024));
  run->add_option("--steps", options->steps,
                  "Write only these steps (comma-separated names), with every input; overrides the config's "
                  "\"steps\"")
      ->delimiter(',');
  run->callback([options, &exit_code]() {
    if (options->threads > 0) omp_set_num_threads(options->threads);
    Config config = load_config_file(options->config_path);
    if (!options->steps.empty()) {
      check_step_list(options->steps, "--steps");
      config.steps = options->steps;
    }
    for (const std::string& warning : config.warnings) std::cerr << "moeref: warning: " << warning << "\n";
    const Trace trace = run_config(config);
    write_file_atomically(options->output_path, write_trace(trace));
    std::cout << "wrote " << options->output_path << " (" << trace.config["variant"].get<std::string>() << ", "
              << trace.steps.size() << " steps)\n";
    exit_code = 0;
  });
}

}  // namespace moeref::cli
