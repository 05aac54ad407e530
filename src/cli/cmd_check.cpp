// moeref check GOLDEN.json CANDIDATE.json [--report REPORT.json]

#include <future>
#include <iostream>
#include <sstream>

#include "commands.hpp"
#include "moeref/atomic_file.hpp"
#include "moeref/check.hpp"
#include "moeref/error.hpp"

namespace moeref::cli {

namespace {

// "combine_tensor=1e-5,1e-4" -> per-tensor tolerance.
void parse_tensor_tolerance(const std::string& text, CheckOptions& options) {
  const size_t equals = text.find('=');
  const size_t comma = text.find(',', equals == std::string::npos ? 0 : equals);
  if (equals == std::string::npos || comma == std::string::npos) {
    fail_input("--tolerance", "\"" + text + "\"", "NAME=ATOL,RTOL, e.g. outputs=1e-5,1e-4");
  }
  Tolerance tolerance;
  try {
    const std::string atol_text = text.substr(equals + 1, comma - equals - 1);
    const std::string rtol_text = text.substr(comma + 1);
    size_t atol_used = 0, rtol_used = 0;
    tolerance.atol = std::stod(atol_text, &atol_used);
    tolerance.rtol = std::stod(rtol_text, &rtol_used);
    if (atol_used != atol_text.size() || rtol_used != rtol_text.size()) throw std::invalid_argument("trailing text");
  } catch (const std::exception&) {
    fail_input("--tolerance", "\"" + text + "\"", "NAME=ATOL,RTOL with two non-negative numbers");
  }
  if (!(tolerance.atol >= 0.0) || !(tolerance.rtol >= 0.0)) {
    fail_input("--tolerance", "\"" + text + "\"", "non-negative ATOL and RTOL");
  }
  options.per_tensor[text.substr(0, equals)] = tolerance;
}

}  // namespace

void add_check_command(CLI::App& app, int& exit_code) {
  struct Options {
    std::string golden_path;
    std::string candidate_path;
    std::string report_path;
    double atol = Tolerance{}.atol;
    double rtol = Tolerance{}.rtol;
    std::vector<std::string> tensor_tolerances;
    std::vector<std::string> required_steps;
    bool complete = false;
  };
  auto options = std::make_shared<Options>();
  CLI::App* check = app.add_subcommand(
      "check", "Compare a candidate trace with a golden trace (exit 0 agree, 1 differ, 2 bad input)");
  check->add_option("golden", options->golden_path, "Golden trace")->required();
  check->add_option("candidate", options->candidate_path, "Candidate trace")->required();
  check->add_option("--report", options->report_path, "Also write the report as JSON here");
  CLI::Option* atol_option =
      check->add_option("--atol", options->atol, "Absolute tolerance for every float step (replaces the defaults)")
          ->check(CLI::NonNegativeNumber);
  CLI::Option* rtol_option =
      check->add_option("--rtol", options->rtol, "Relative tolerance for every float step (replaces the defaults)")
          ->check(CLI::NonNegativeNumber);
  check->add_option("--tolerance", options->tensor_tolerances, "Per-tensor tolerance NAME=ATOL,RTOL (repeatable)");
  check
      ->add_option("--require", options->required_steps,
                   "Steps the candidate must have, comma-separated (STEP,...): an absent one fails")
      ->delimiter(',');
  check->add_flag("--complete", options->complete, "The candidate must have every step of the golden");
  check->callback([options, atol_option, rtol_option, &exit_code]() {
    CheckOptions check_options;
    check_options.float_tolerance = {options->atol, options->rtol};
    check_options.float_tolerance_given = atol_option->count() > 0 || rtol_option->count() > 0;
    for (const std::string& text : options->tensor_tolerances) parse_tensor_tolerance(text, check_options);
    check_options.required_steps = options->required_steps;
    check_options.complete = options->complete;
    // Reading dominates on large traces: read the two files at the same time.
    std::future<Trace> golden_future = std::async(std::launch::async, read_trace_file, options->golden_path);
    const Trace candidate = read_trace_file(options->candidate_path);
    const Trace golden = golden_future.get();
    const CheckReport report = check_traces(golden, candidate, check_options);
    std::cout << report.to_text();
    if (!options->report_path.empty()) {
      write_file_atomically(options->report_path, report.to_json().dump(2) + "\n");
    }
    exit_code = report.pass ? 0 : 1;
  });
}

}  // namespace moeref::cli
