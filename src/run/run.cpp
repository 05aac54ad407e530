#include "moeref/run.hpp"

#include "moeref/group_shards.hpp"
#include "moeref/ops/matmul.hpp"
#include "moeref/rng.hpp"
#include "moeref/step_selection.hpp"
#include "moeref/variant.hpp"

namespace moeref {

Trace run_config(const Config& config, RunObserver* observer) {
  // Chooses the matmul kernel here, outside any parallel region: a bad
  // MOEREF_MATMUL_KERNEL is an InputError before anything runs.
  ops::matmul_kernel();
  if (config.groups) check_group_shards_supported(config);
  Trace trace;
  trace.generator = {{"program", "moeref"}, {"version", MOEREF_VERSION}, {"rng", kGeneratorVersion}};
  config.spec->run(config, trace, observer);
  if (!config.steps.empty()) keep_only_steps(trace, config.steps);
  return trace;
}

}  // namespace moeref
