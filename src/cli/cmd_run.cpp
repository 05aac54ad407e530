// moeref run CONFIG.json -o TRACE.json [--steps NAME,...] [--groups FIRST:END]
//                                      [--sidecars-above N | --inline]:
// run one variant, write its trace (only the chosen steps, with every input, when --steps
// or the config says so; only some groups' experts with --groups, spec/sharding.md);
// tensors of more than N elements go to .npy sidecars.

#include <omp.h>

#include <iostream>

#include "commands.hpp"
#include "moeref/atomic_file.hpp"
#include "moeref/config_reader.hpp"
#include "moeref/group_shards.hpp"
#include "moeref/run.hpp"
#include "moeref/step_selection.hpp"
#include "moeref/trace_files.hpp"
#include "run_progress.hpp"
#include "trace_output_options.hpp"

namespace moeref::cli {

void add_run_command(CLI::App& app, int& exit_code) {
  struct Options {
    std::string config_path;
    std::string output_path;
    int threads = 0;
    std::vector<std::string> steps;
    bool quiet = false;
    bool fast = false;
    std::string groups;
    TraceOutputOptions output;
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
  run->add_flag("--fast", options->fast,
                "mtf expert layer: dispatch and combine by index instead of the dense einsums, expert products with "
                "fused multiply-adds where the CPU has them (same routing, outputs within the checker's bounds); the "
                "trace's config says \"fast\": true and its generator which products");
  run->add_option("--groups", options->groups,
                  "FIRST:END: a shard with the expert layer of groups [FIRST, END) only (moeref merge joins the "
                  "shards; spec/sharding.md)");
  add_trace_output_options(run, options->output);
  run->add_flag("-q,--quiet", options->quiet,
                "No progress line on stderr (it shows only on a terminal, for runs longer than about 2 s)");
  run->callback([options, &exit_code]() {
    if (options->threads > 0) omp_set_num_threads(options->threads);
    RunProgress progress(!options->quiet);
    progress.stage("reading " + options->config_path);
    Config config = load_config_file(options->config_path);
    progress.pause();
    if (!options->steps.empty()) {
      check_step_list(options->steps, "--steps");
      config.steps = options->steps;
    }
    if (options->fast) config.fast = true;
    if (!options->groups.empty()) config.groups = parse_group_range(options->groups, "--groups");
    for (const std::string& warning : config.warnings) std::cerr << "moeref: warning: " << warning << "\n";
    const Trace trace = run_config(config, &progress);
    // Sidecars are written first, and the line says "writing" from their first byte; an
    // inline trace is written while it is formatted, and the line follows the formatting.
    progress.stage("formatting the trace");
    bool writing = false;
    const size_t sidecars = write_trace_files(
        options->output_path, trace, options->output.rule(),
        [&](size_t written, size_t total) {
          if (!writing) progress.stage("writing " + options->output_path);
          writing = true;
          progress.bytes_written(written, total);
        },
        [&progress](const std::string& tensor, size_t done, size_t total) { progress.formatted(tensor, done, total); });
    progress.finish();
    std::cout << "wrote " << options->output_path << " (" << trace.config["variant"].get<std::string>() << ", "
              << trace.steps.size() << " steps";
    if (sidecars > 0) std::cout << ", " << sidecars << " tensors in " << arrays_dir_name(options->output_path) << "/";
    std::cout << ")\n";
    exit_code = 0;
  });
}

}  // namespace moeref::cli
