// Fuzz target: the config reader. Text -> parse_json_document -> config_from_json,
// which validates the variant, dims, hyperparameters and supplied inputs against the
// registry. Running the config is not fuzzed: a config may legitimately ask for a
// run of any size. Bad input must raise moeref::InputError; anything else escaping
// (another exception, a crash, a sanitizer report, a leak, a hang) is a bug.
#include <cstddef>
#include <cstdint>
#include <string>

#include "moeref/config_reader.hpp"
#include "moeref/error.hpp"
#include "moeref/trace.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  try {
    const moeref::ParsedDocument parsed = moeref::parse_json_document(text, "fuzz config");
    const moeref::Config config = moeref::config_from_json(parsed.doc, "fuzz config", &parsed.arrays);
    (void)config;
  } catch (const moeref::InputError&) {
    // The expected outcome for bad input.
  }
  return 0;
}
