// moeref explain CONFIG|TRACE | --variant ID [--format text|markdown] [-o FILE]:
// one small example told step by step (include/moeref/teach/explain.hpp).

#include <iostream>
#include <nlohmann/json.hpp>

#include "commands.hpp"
#include "moeref/atomic_file.hpp"
#include "moeref/config_reader.hpp"
#include "moeref/error.hpp"
#include "moeref/registry.hpp"
#include "moeref/run.hpp"
#include "moeref/teach/explain.hpp"
#include "moeref/trace_files.hpp"

namespace moeref::cli {

namespace {

std::string variant_ids() {
  std::string ids;
  for (const VariantSpec& known : all_variants()) ids += (ids.empty() ? "" : ", ") + known.id;
  return ids;
}

// A trace is explained as recorded; a config is run first.
Trace trace_of(const std::string& path) {
  const TraceDocument document = read_trace_document(path, "config or trace");
  const ParsedDocument& parsed = document.parsed;
  if (looks_like_trace(parsed.doc)) return trace_from_json(parsed.doc, path, &parsed.arrays, &document.sidecars);
  const Config config = config_from_json(parsed.doc, path, &parsed.arrays, &document.sidecars);
  for (const std::string& warning : config.warnings) std::cerr << "moeref: warning: " << warning << "\n";
  return run_config(config);
}

}  // namespace

void add_explain_command(CLI::App& app, int& exit_code) {
  struct Options {
    std::string path;
    std::string variant;
    std::string format = "text";
    std::string output;
  };
  auto options = std::make_shared<Options>();
  CLI::App* explain = app.add_subcommand(
      "explain", "Walk through one small example step by step: formulas, tensors, drops, ties and random draws");
  explain->add_option("input", options->path, "A config (run first) or a trace (explained as recorded)");
  explain->add_option("--variant", options->variant,
                      "Explain the variant's tiny built-in example instead, e.g. mtf_top2");
  explain->add_option("--format", options->format, "text (default) or markdown");
  explain->add_option("-o,--output", options->output, "Write to this file instead of standard output");
  explain->callback([options, &exit_code]() {
    if (options->format != "text" && options->format != "markdown") {
      fail_input("--format", "\"" + options->format + "\"", "text or markdown");
    }
    if (options->path.empty() == options->variant.empty()) {
      fail_input("explain", options->path.empty() ? "neither a CONFIG/TRACE nor --variant" : "both", "exactly one");
    }
    const ExplainFormat format = options->format == "markdown" ? ExplainFormat::kMarkdown : ExplainFormat::kText;
    std::string text;
    if (!options->variant.empty()) {
      if (find_variant(options->variant) == nullptr) {
        fail_input("--variant", "\"" + options->variant + "\"", variant_ids());
      }
      text = explain_variant_example(options->variant, format);
    } else {
      ExplainOptions explain_options;
      explain_options.format = format;
      explain_options.reproduce = "build/moeref explain " + options->path;
      text = explain_trace(trace_of(options->path), explain_options);
    }
    text += "\n";
    if (options->output.empty()) {
      std::cout << text;
    } else {
      write_file_atomically(options->output, text);
      std::cout << "wrote " << options->output << "\n";
    }
    exit_code = 0;
  });
}

}  // namespace moeref::cli
