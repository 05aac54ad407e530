// What every gating variant provides: one file in src/variants/ (its typed
// hparams, its source function on the frame, its near ties), one row in
// src/registry.cpp, one page in spec/variants/ (spec/adding-a-variant.md).
// Variants build their VariantSpec with define_variant (frame/define_variant.hpp).
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "moeref/config.hpp"
#include "moeref/hparams.hpp"
#include "moeref/near_tie.hpp"
#include "moeref/run_observer.hpp"
#include "moeref/tolerance.hpp"
#include "moeref/trace.hpp"

namespace moeref {

// Runs a validated config and fills the trace (resolved config, inputs, steps,
// losses, capacity), telling `observer` (may be null) as it goes. Throws
// InputError for dims or inputs that do not fit.
using VariantRunFn = std::function<void(const Config& config, Trace& trace, RunObserver* observer)>;

// For a decision step of the variant (e.g. "index_1") and one element where the
// candidate chose another value, the margin analysis; nullopt when the step is
// not a decision the variant can force.
using NearTieFn = std::function<std::optional<NearTie>(const NearTieQuery& query)>;

struct VariantSpec {
  std::string id;         // <origin>_<routing>[_<qualifier>], e.g. "mtf_top2"
  std::string summary;    // one line
  std::string source;     // repository, file, function
  std::string spec_page;  // path of its page under spec/variants/
  std::vector<HparamSpec> hparams;
  VariantRunFn run;
  // Optional: decisions the checker may force (Config::decision_overrides).
  NearTieFn near_tie;
  // `moeref run --groups` (spec/sharding.md): true when the variant's groups stay
  // independent from its gating to its outputs, so that shards by group merge into
  // the one-shot trace exactly. Set by the variant file.
  bool group_shards = false;
};

}  // namespace moeref
