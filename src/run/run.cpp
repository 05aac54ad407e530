#include "moeref/run.hpp"

#include "moeref/rng.hpp"
#include "moeref/variant.hpp"

namespace moeref {

Trace run_config(const Config& config, RunObserver* observer) {
  Trace trace;
  trace.generator = {{"program", "moeref"}, {"version", MOEREF_VERSION}, {"rng", kGeneratorVersion}};
  config.spec->run(config, trace, observer);
  return trace;
}

}  // namespace moeref
