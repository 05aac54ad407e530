// `moeref explain`: one trace told step by step, for a reader new to MoE routing.
//
// For each step, in the order the source computes it: its name, its formula in
// one line (step_notes.hpp), what it reads (the trace's `reads`), its tensor as a
// table with named dims (tokens t0, t1, ..., experts e0, ..., slots c0, ...), and
// what happened in words: which values changed since the tensor it refines and
// why (a position at or beyond the capacity C, a random draw, padding), which
// ties the decision steps broke and which way. Then who sits where (routing_view.hpp)
// and the losses. The same text as a Markdown document is what spec/walkthroughs/
// holds (tools/regen_walkthroughs.sh).
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>

#include "moeref/trace.hpp"

namespace moeref {

enum class ExplainFormat { kText, kMarkdown };

struct ExplainOptions {
  ExplainFormat format = ExplainFormat::kText;
  int64_t max_rows = 24;     // rows of a tensor table before "... N more rows"
  int64_t max_columns = 16;  // columns of a tensor table before "..."
  int64_t max_notes = 8;     // lines of "what happened" per step
  // How the trace was made, for the reader to reproduce it: "build/moeref explain
  // --variant mtf_top2" or "build/moeref run CONFIG -o TRACE". Empty: not shown.
  std::string reproduce;
  // What the example shows, in a sentence (tiny_examples.hpp); empty: not shown.
  std::string introduction;
  // The config the trace was run from, shown for the reader to edit; null: not shown.
  nlohmann::json config;
};

std::string explain_trace(const Trace& trace, const ExplainOptions& options);

// `moeref explain --variant ID`: the variant's tiny example (tiny_examples.hpp) run
// and explained, with its config and what it shows. spec/walkthroughs/ID.md is this
// in Markdown. Throws InputError when the example does not run.
std::string explain_variant_example(const std::string& variant, ExplainFormat format);

}  // namespace moeref
