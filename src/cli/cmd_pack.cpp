// moeref pack TRACE -o OUT.tar [--sidecars-above N]: one file for sharing, a ustar archive
// of trace.json and trace.arrays/*.npy. moeref pack TRACE --inline -o OUT.json: the
// all-inline version-1 JSON instead.

#include <iostream>

#include "commands.hpp"
#include "moeref/atomic_file.hpp"
#include "moeref/trace_files.hpp"

namespace moeref::cli {

void add_pack_command(CLI::App& app, int& exit_code) {
  struct Options {
    std::string trace_path;
    std::string output_path;
    int64_t sidecars_above = 0;
    bool inline_only = false;
  };
  auto options = std::make_shared<Options>();
  CLI::App* pack = app.add_subcommand(
      "pack", "Pack a trace (.json with sidecars, or .tar) into one .tar, or with --inline into one JSON");
  pack->add_option("trace", options->trace_path, "The trace to pack (.json or .tar)")->required();
  pack->add_option("-o,--output", options->output_path, "Where to write the archive (or, with --inline, the JSON)")
      ->required();
  CLI::Option* sidecars_option =
      pack->add_option("--sidecars-above", options->sidecars_above,
                       "Put tensors of more than N elements into the archive's trace.arrays/ (default: the "
                       "tensors the trace already keeps in sidecars)")
          ->check(CLI::NonNegativeNumber);
  pack->add_flag("--inline", options->inline_only,
                 "Write one all-inline JSON trace (format_version 1) instead of an archive")
      ->excludes(sidecars_option);
  pack->callback([options, sidecars_option, &exit_code]() {
    const TraceDocument document = read_trace_document(options->trace_path, "trace file");
    const Trace trace =
        trace_from_json(document.parsed.doc, document.source_name, &document.parsed.arrays, &document.sidecars);
    if (options->inline_only) {
      write_file_atomically(options->output_path, write_trace(trace));
      std::cout << "wrote " << options->output_path << " (every tensor inline)\n";
      exit_code = 0;
      return;
    }
    const SidecarRule rule = sidecars_option->count() > 0 ? sidecars_above_rule(options->sidecars_above)
                                                          : sidecar_keys_rule(sidecar_keys(document.parsed.doc));
    const size_t sidecars = plan_sidecars(trace, rule, "trace.arrays").size();
    write_trace_tar(options->output_path, trace, rule);
    std::cout << "wrote " << options->output_path << " (trace.json and " << sidecars << " sidecars)\n";
    exit_code = 0;
  });
}

}  // namespace moeref::cli
