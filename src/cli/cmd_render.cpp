// moeref render TRACE -o PAGE.html [--candidate CANDIDATE]: the routing of a trace
// as a self-contained HTML page; with a candidate, where its routing differs from
// the golden's and the checker's first divergent step (include/moeref/teach/render_html.hpp).

#include <iostream>

#include "commands.hpp"
#include "moeref/atomic_file.hpp"
#include "moeref/check.hpp"
#include "moeref/error.hpp"
#include "moeref/teach/render_html.hpp"

namespace moeref::cli {

void add_render_command(CLI::App& app, int& exit_code) {
  struct Options {
    std::string trace_path;
    std::string candidate_path;
    std::string output_path;
    int64_t max_grid_tokens = 256;
  };
  auto options = std::make_shared<Options>();
  CLI::App* render = app.add_subcommand(
      "render", "Draw a trace's routing as one self-contained HTML page (with --candidate: where it differs)");
  render->add_option("trace", options->trace_path, "A trace (the golden, with --candidate)")->required();
  render->add_option("-o,--output", options->output_path, "Where to write the page, e.g. routing.html")->required();
  render->add_option("--candidate", options->candidate_path,
                     "A candidate trace: mark where its routing differs, with the checker's first divergent step");
  render->add_option("--max-grid-tokens", options->max_grid_tokens,
                     "Above this many tokens, a per-expert summary replaces the token x expert grid (default 256)");
  render->callback([options, &exit_code]() {
    if (options->max_grid_tokens < 0) {
      fail_input("--max-grid-tokens", std::to_string(options->max_grid_tokens), "an integer >= 0");
    }
    const Trace trace = read_trace_file(options->trace_path);
    RenderOptions render_options;
    render_options.max_grid_tokens = options->max_grid_tokens;
    render_options.trace_name = options->trace_path;
    std::string page;
    std::string verdict;
    if (options->candidate_path.empty()) {
      page = render_routing_html(trace, render_options);
    } else {
      const Trace candidate = read_trace_file(options->candidate_path);
      const CheckReport report = check_traces(trace, candidate, CheckOptions{});
      render_options.candidate_name = options->candidate_path;
      page = render_comparison_html(trace, candidate, report, render_options);
      verdict = report.pass
                    ? "; the routings agree (PASS)"
                    : "; the traces differ, first divergent step " +
                          (report.first_divergent_step.empty() ? std::string("(none)") : report.first_divergent_step);
    }
    write_file_atomically(options->output_path, page);
    std::cout << "wrote " << options->output_path << verdict << "\n";
    exit_code = 0;
  });
}

}  // namespace moeref::cli
