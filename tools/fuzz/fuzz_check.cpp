// Fuzz target: the checker, as `moeref check GOLDEN CANDIDATE --report R` runs it.
// Input: the golden trace's text, a NUL byte, the candidate's text; without a NUL the
// text is both golden and candidate, and a trace checked against itself must pass.
// Both are read, check_traces judges them (near-tie re-runs included) and the
// report is rendered as text and as JSON. Bad input must raise moeref::InputError;
// anything else escaping is a bug.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <iostream>
#include <string>

#include "moeref/check.hpp"
#include "moeref/error.hpp"
#include "moeref/trace.hpp"

namespace {

moeref::Trace read_trace_text(const std::string& text, const std::string& name) {
  const moeref::ParsedDocument parsed = moeref::parse_json_document(text, name);
  return moeref::trace_from_json(parsed.doc, name, &parsed.arrays);
}

// A near-tie re-run replays the golden's config; a golden that asks for a large run
// is legitimately slow, so the fuzzer keeps to small ones (every golden/ case is).
bool small_run(const moeref::Trace& golden) {
  constexpr int64_t kMaxDim = 64;
  if (!golden.config.contains("dims") || !golden.config["dims"].is_object()) return true;
  for (const auto& item : golden.config["dims"].items()) {
    if (!item.value().is_number_integer() || item.value().get<int64_t>() > kMaxDim) return false;
  }
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  const size_t nul = text.find('\0');
  const bool self_check = nul == std::string::npos;
  try {
    const moeref::Trace golden = read_trace_text(self_check ? text : text.substr(0, nul), "fuzz golden");
    const moeref::Trace candidate = self_check ? golden : read_trace_text(text.substr(nul + 1), "fuzz candidate");
    if (!small_run(golden)) return 0;
    const moeref::CheckReport report = moeref::check_traces(golden, candidate, moeref::CheckOptions{});
    const std::string report_text = report.to_text();
    const std::string report_json = report.to_json().dump(2);
    // A trace with nothing to compare (no inputs, steps or losses) fails even against
    // itself: NOTHING CHECKED is never a pass (spec/trace-format.md).
    if (self_check && !report.pass && !report.nothing_checked) {
      std::cerr << "fuzz_check: a trace checked against itself fails:\n" << report_text;
      std::abort();
    }
  } catch (const moeref::InputError&) {
    // The expected outcome for bad input.
  }
  return 0;
}
