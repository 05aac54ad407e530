// Fuzz target: the trace reader. Text -> parse_json_document -> trace_from_json (what
// read_trace_file does after reading the file). Bad input must raise
// moeref::InputError; anything else escaping is a bug. A trace that reads must also
// survive a round trip: write_trace's text reads back, and writes the same bytes again.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <iostream>
#include <string>

#include "moeref/error.hpp"
#include "moeref/trace.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  moeref::Trace trace;
  try {
    const moeref::ParsedDocument parsed = moeref::parse_json_document(text, "fuzz trace");
    trace = moeref::trace_from_json(parsed.doc, "fuzz trace", &parsed.arrays);
  } catch (const moeref::InputError&) {
    return 0;  // the expected outcome for bad input
  }
  // Outside the try: the reader refusing the writer's own text is a bug too.
  const std::string written = moeref::write_trace(trace);
  const moeref::ParsedDocument again = moeref::parse_json_document(written, "rewritten trace");
  const std::string rewritten =
      moeref::write_trace(moeref::trace_from_json(again.doc, "rewritten trace", &again.arrays));
  if (rewritten != written) {
    std::cerr << "fuzz_trace: write_trace(read(write_trace(t))) differs from write_trace(t)\n";
    std::abort();
  }
  return 0;
}
