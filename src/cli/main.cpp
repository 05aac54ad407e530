// moeref: reference simulator and conformance checker for MoE routing.

#include <iostream>
#include <nlohmann/json.hpp>

#include "commands.hpp"
#include "moeref/error.hpp"

int main(int argc, char** argv) {
  CLI::App app{"moeref: a literal reference for Mixture-of-Experts routing, with golden traces and a checker"};
  app.require_subcommand(1);
  int exit_code = 0;
  moeref::cli::add_run_command(app, exit_code);
  moeref::cli::add_check_command(app, exit_code);
  moeref::cli::add_variants_command(app, exit_code);
  moeref::cli::add_t5x_metrics_command(app, exit_code);
  moeref::cli::add_explain_command(app, exit_code);
  moeref::cli::add_render_command(app, exit_code);
  moeref::cli::add_merge_command(app, exit_code);
  moeref::cli::add_pack_command(app, exit_code);
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& help) {
    return app.exit(help);
  } catch (const CLI::CallForAllHelp& help) {
    return app.exit(help);
  } catch (const CLI::ParseError& error) {
    app.exit(error);
    return 2;
  } catch (const moeref::InputError& error) {
    std::cerr << "moeref: error: " << error.what() << "\n";
    return 2;
  } catch (const nlohmann::json::exception& error) {
    // A well-formed JSON document with a value of the wrong type somewhere we did not validate.
    std::cerr << "moeref: error: malformed input (" << error.what() << ")\n";
    return 2;
  } catch (const std::bad_alloc&) {
    std::cerr << "moeref: error: out of memory (are the dims much larger than intended?)\n";
    return 2;
  }
  return exit_code;
}
