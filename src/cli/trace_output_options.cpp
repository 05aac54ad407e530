#include "trace_output_options.hpp"

#include <optional>

namespace moeref::cli {

SidecarRule TraceOutputOptions::rule() const {
  return sidecars_above_rule(inline_only ? std::nullopt : std::optional<int64_t>(sidecars_above));
}

void add_trace_output_options(CLI::App* command, TraceOutputOptions& options) {
  CLI::Option* sidecars_option =
      command
          ->add_option("--sidecars-above", options.sidecars_above,
                       "Write tensors of more than N elements as .npy files in TRACE.arrays/ beside the trace "
                       "(format_version 2; default 1048576)")
          ->check(CLI::NonNegativeNumber);
  command->add_flag("--inline", options.inline_only, "Write every tensor into the JSON (format_version 1)")
      ->excludes(sidecars_option);
}

}  // namespace moeref::cli
