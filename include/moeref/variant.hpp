// What every gating variant provides. One variant = one file in src/variants/,
// one row in src/registry.cpp, one page in spec/variants/.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "moeref/config.hpp"
#include "moeref/hparams.hpp"
#include "moeref/tolerance.hpp"
#include "moeref/trace.hpp"

namespace moeref {

// Runs a validated config and fills the trace (resolved config, inputs, steps,
// losses, capacity). Throws InputError for dims or inputs that do not fit.
using VariantRunFn = void (*)(const Config& config, Trace& trace);

// How narrowly the reference made one discrete decision that a candidate made
// differently: the candidate's choice is a consistent alternative when
// margin <= tolerance (the float tolerance of the values that decided it).
struct NearTie {
  double margin = 0.0;
  double tolerance = 0.0;
  std::string detail;  // the deciding values, e.g. "raw_gates e=1: 0.5 vs e=2: 0.49999997"
};

// For a decision step of the variant (e.g. "index_1") and one element where the
// candidate chose `candidate_value`, the margin analysis; nullopt when `step`
// is not a decision the variant can force.
using NearTieFn = std::optional<NearTie> (*)(const Trace& reference, const std::string& step, int64_t flat_index,
                                             int32_t candidate_value, const ToleranceFor& tolerance_for);

struct VariantSpec {
  std::string id;         // <origin>_<routing>[_<qualifier>], e.g. "mtf_top2"
  std::string summary;    // one line
  std::string source;     // repository, file, function
  std::string spec_page;  // path of its page under spec/variants/
  std::vector<HparamSpec> hparams;
  VariantRunFn run = nullptr;
  // Optional: decisions the checker may force (Config::decision_overrides).
  NearTieFn near_tie = nullptr;
};

}  // namespace moeref
