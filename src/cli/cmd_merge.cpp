// moeref merge SHARD.json... -o TRACE.json [--sidecars-above N | --inline]: join the
// shards that `moeref run --groups` wrote into the one-shot trace, byte for byte
// (spec/sharding.md), written as moeref run writes it (tensors of more than N elements
// as .npy sidecars).

#include <iostream>
#include <optional>

#include "commands.hpp"
#include "moeref/atomic_file.hpp"
#include "moeref/group_shards.hpp"
#include "moeref/trace_files.hpp"

namespace moeref::cli {

void add_merge_command(CLI::App& app, int& exit_code) {
  struct Options {
    std::vector<std::string> shard_paths;
    std::string output_path;
    int64_t sidecars_above = kDefaultSidecarsAbove;
    bool inline_only = false;
  };
  auto options = std::make_shared<Options>();
  CLI::App* merge = app.add_subcommand(
      "merge", "Join the shards of moeref run --groups (every group exactly once, any order) into the one-shot trace");
  merge->add_option("shards", options->shard_paths, "Shard traces of one config")->required();
  merge->add_option("-o,--output", options->output_path, "Where to write the merged trace")->required();
  CLI::Option* sidecars_option =
      merge
          ->add_option("--sidecars-above", options->sidecars_above,
                       "Write tensors of more than N elements as .npy files in TRACE.arrays/ beside the trace "
                       "(format_version 2; default 1048576), as moeref run does")
          ->check(CLI::NonNegativeNumber);
  merge->add_flag("--inline", options->inline_only, "Write every tensor into the JSON (format_version 1)")
      ->excludes(sidecars_option);
  merge->callback([options, &exit_code]() {
    std::vector<GroupShard> shards;
    for (const std::string& path : options->shard_paths) shards.push_back({path, read_trace_file(path)});
    const size_t count = shards.size();
    const Trace merged = merge_group_shards(std::move(shards));
    const std::optional<int64_t> sidecars_above =
        options->inline_only ? std::nullopt : std::optional<int64_t>(options->sidecars_above);
    write_trace_files(options->output_path, merged, sidecars_above_rule(sidecars_above));
    std::cout << "wrote " << options->output_path << " (" << merged.config["variant"].get<std::string>() << ", "
              << count << " shards, " << merged.steps.size() << " steps)\n";
    exit_code = 0;
  });
}

}  // namespace moeref::cli
