// moeref's C++ API: run a config into a trace, read and write traces, check a
// candidate against a golden. One include for projects that find_package(moeref)
// (examples/cpp_backend/ is a complete one). The functions named here are the
// stable API of this major version; the rest of include/moeref/ is internal.
//
//   moeref::Config config = moeref::load_config_file("case.config.json");  // config_reader.hpp
//   moeref::Trace golden = moeref::run_config(config);                       // run.hpp
//   moeref::write_trace_file("golden.trace.json", golden);                   // below
//   moeref::write_trace_files("big.trace.json", golden,                      // trace_files.hpp:
//       moeref::sidecars_above_rule(moeref::kDefaultSidecarsAbove));         //   large tensors as .npy
//   moeref::Trace candidate = moeref::read_trace_file("mine.trace.json");    // trace.hpp (.json or .tar)
//   moeref::CheckReport report = moeref::check_traces(golden, candidate, {}); // check.hpp
//   report.pass; report.first_divergent_step; report.results;  report.to_text();
//
// Every function throws moeref::InputError (error.hpp) on bad input, with a
// message naming the field, the value and what is allowed.
#pragma once

#include <string>

#include "moeref/atomic_file.hpp"
#include "moeref/check.hpp"
#include "moeref/config_reader.hpp"
#include "moeref/error.hpp"
#include "moeref/registry.hpp"
#include "moeref/run.hpp"
#include "moeref/trace.hpp"
#include "moeref/trace_files.hpp"

namespace moeref {

// Writes `trace` to `path` in moeref's exact text (write_trace), every tensor inline
// (format_version 1), atomically: a reader sees either the old file or the whole new one.
inline void write_trace_file(const std::string& path, const Trace& trace) {
  write_file_atomically(path, write_trace(trace));
}

}  // namespace moeref
