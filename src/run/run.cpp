#include "moeref/run.hpp"

#include "moeref/ops/matmul.hpp"
#include "moeref/rng.hpp"
#include "moeref/variant.hpp"

namespace moeref {

Trace run_config(const Config& config, RunObserver* observer) {
  // Chooses the matmul kernel here, outside any parallel region: a bad
  // MOEREF_MATMUL_KERNEL is an InputError before anything runs.
  ops::matmul_kernel();
  Trace trace;
  trace.generator = {{"program", "moeref"}, {"version", MOEREF_VERSION}, {"rng", kGeneratorVersion}};
  config.spec->run(config, trace, observer);
  return trace;
}

}  // namespace moeref
