// moeref merge SHARD.json... -o TRACE.json [--sidecars-above N | --inline]: join the
// shards that `moeref run --groups` wrote into the one-shot trace, byte for byte
// (spec/sharding.md), written as moeref run writes it (tensors of more than N elements
// as .npy sidecars).

#include <iostream>

#include "commands.hpp"
#include "moeref/atomic_file.hpp"
#include "moeref/group_shards.hpp"
#include "moeref/trace_files.hpp"
#include "trace_output_options.hpp"

namespace moeref::cli {

void add_merge_command(CLI::App& app, int& exit_code) {
  struct Options {
    std::vector<std::string> shard_paths;
    std::string output_path;
    TraceOutputOptions output;
  };
  auto options = std::make_shared<Options>();
  CLI::App* merge = app.add_subcommand(
      "merge", "Join the shards of moeref run --groups (every group exactly once, any order) into the one-shot trace");
  merge->add_option("shards", options->shard_paths, "Shard traces of one config")->required();
  merge->add_option("-o,--output", options->output_path, "Where to write the merged trace")->required();
  add_trace_output_options(merge, options->output);
  merge->callback([options, &exit_code]() {
    std::vector<GroupShard> shards;
    for (const std::string& path : options->shard_paths) shards.push_back({path, read_trace_file(path)});
    const size_t count = shards.size();
    const Trace merged = merge_group_shards(std::move(shards));
    write_trace_files(options->output_path, merged, options->output.rule());
    std::cout << "wrote " << options->output_path << " (" << merged.config["variant"].get<std::string>() << ", "
              << count << " shards, " << merged.steps.size() << " steps)\n";
    exit_code = 0;
  });
}

}  // namespace moeref::cli
