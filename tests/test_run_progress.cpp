// The progress line of `moeref run` (src/cli/run_progress.hpp): shown on a terminal
// once the run is older than MOEREF_PROGRESS_AFTER_S (2 s by default), silent when
// stderr is not a terminal, silent with --quiet.
//
// Each test sets MOEREF_PROGRESS_AFTER_S=0, so that a run of milliseconds would show
// progress if it were allowed to: the silence seen is then the terminal test's or
// --quiet's doing, never the delay's. A terminal comes from util-linux `script`,
// which runs the command on a pseudo-terminal; without `script` those checks are
// skipped with a warning.
#include <string>

#include "test_support.hpp"

using Catch::Contains;
using namespace moeref::testing;

namespace {

const char* kProgressLine = "moeref run: ";

bool have_script() { return run_shell("command -v script >/dev/null").exit_code == 0; }

// Runs `moeref ARGS` with stdin, stdout and stderr on a pseudo-terminal.
CommandResult run_cli_on_terminal(const std::string& env, const std::string& args) {
  return run_shell("script -qec 'env " + env + " " + std::string(MOEREF_CLI_PATH) + " " + args + "' /dev/null");
}

std::string tiny_config_in(const std::string& dir) {
  write_text(dir + "/config.json", tiny_mtf_top2_layer_config().dump());
  return dir + "/config.json";
}

}  // namespace

TEST_CASE("progress: silent when stderr is not a terminal", "[cli][progress]") {
  const std::string dir = temp_dir("progress_pipe");
  const CommandResult result =
      run_cli_env("MOEREF_PROGRESS_AFTER_S=0", "run " + tiny_config_in(dir) + " -o " + dir + "/trace.json");
  INFO(result.output);
  REQUIRE(result.exit_code == 0);
  CHECK_THAT(result.output, !Contains(kProgressLine));
  CHECK_THAT(result.output, !Contains("\r"));
}

TEST_CASE("progress: on a terminal, stages, steps and bytes written, none with --quiet", "[cli][progress]") {
  if (!have_script()) {
    WARN("util-linux `script` not found: the terminal half of this test is skipped");
    return;
  }
  const std::string dir = temp_dir("progress_terminal");
  const std::string config = tiny_config_in(dir);
  const CommandResult shown =
      run_cli_on_terminal("MOEREF_PROGRESS_AFTER_S=0", "run " + config + " -o " + dir + "/shown.json");
  INFO(shown.output);
  REQUIRE(shown.exit_code == 0);
  CHECK_THAT(shown.output, Contains(kProgressLine) && Contains("step 1 inputs") && Contains("formatting the trace") &&
                               Contains("writing " + dir + "/shown.json") && Contains("MB of"));
  // The line is cleared before the summary on stdout.
  CHECK_THAT(shown.output, Contains("\r\033[Kwrote " + dir + "/shown.json"));

  for (const char* flag : {"--quiet", "-q"}) {
    const CommandResult quiet =
        run_cli_on_terminal("MOEREF_PROGRESS_AFTER_S=0", "run " + config + " -o " + dir + "/quiet.json " + flag);
    INFO(flag << ": " << quiet.output);
    REQUIRE(quiet.exit_code == 0);
    CHECK_THAT(quiet.output, !Contains(kProgressLine));
    CHECK_THAT(quiet.output, Contains("wrote " + dir + "/quiet.json"));
  }
  // Progress never changes the trace.
  CHECK(read_text(dir + "/shown.json") == read_text(dir + "/quiet.json"));
}

TEST_CASE("progress: a malformed MOEREF_PROGRESS_AFTER_S is exit 2 naming it", "[cli][progress]") {
  const std::string dir = temp_dir("progress_bad_delay");
  const CommandResult result =
      run_cli_env("MOEREF_PROGRESS_AFTER_S=soon", "run " + tiny_config_in(dir) + " -o " + dir + "/trace.json");
  INFO(result.output);
  CHECK(result.exit_code == 2);
  CHECK_THAT(result.output, Contains("MOEREF_PROGRESS_AFTER_S: got \"soon\"") && Contains("seconds >= 0"));
}
