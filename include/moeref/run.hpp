// Running one config: the entry point shared by the CLI, the tests and the benchmark.
#pragma once

#include "moeref/config.hpp"
#include "moeref/trace.hpp"

namespace moeref {

// Runs the config's variant and returns its complete trace.
Trace run_config(const Config& config);

}  // namespace moeref
