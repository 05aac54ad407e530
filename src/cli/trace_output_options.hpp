// How `moeref run` and `moeref merge` write a trace: tensors of more than N elements
// as .npy sidecars (--sidecars-above N, default 2^20), or every tensor inline (--inline).
#pragma once

#include <CLI/CLI.hpp>
#include <cstdint>

#include "moeref/trace_files.hpp"

namespace moeref::cli {

struct TraceOutputOptions {
  int64_t sidecars_above = kDefaultSidecarsAbove;
  bool inline_only = false;

  // The rule write_trace_files takes.
  SidecarRule rule() const;
};

// Adds --sidecars-above and --inline (which exclude each other) to `command`.
void add_trace_output_options(CLI::App* command, TraceOutputOptions& options);

}  // namespace moeref::cli
