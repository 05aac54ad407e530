// Running one config: the entry point shared by the CLI, the tests and the benchmark.
#pragma once

#include "moeref/config.hpp"
#include "moeref/run_observer.hpp"
#include "moeref/trace.hpp"

namespace moeref {

// Runs the config's variant and returns its complete trace. An observer, when
// given, sees each input taken and each step recorded (run_observer.hpp).
Trace run_config(const Config& config, RunObserver* observer = nullptr);

}  // namespace moeref
