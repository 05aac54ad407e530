// The moeref subcommands, one file each. Each registers itself on the app and
// sets `exit_code` when it runs: 0 success, 1 traces differ (check), 2 bad input.
#pragma once

#include <CLI/CLI.hpp>

namespace moeref::cli {

void add_run_command(CLI::App& app, int& exit_code);
void add_check_command(CLI::App& app, int& exit_code);
void add_variants_command(CLI::App& app, int& exit_code);
void add_t5x_metrics_command(CLI::App& app, int& exit_code);
void add_explain_command(CLI::App& app, int& exit_code);
void add_render_command(CLI::App& app, int& exit_code);
void add_merge_command(CLI::App& app, int& exit_code);
void add_pack_command(CLI::App& app, int& exit_code);

}  // namespace moeref::cli
