// What every gating variant provides. One variant = one file in src/variants/,
// one row in src/registry.cpp, one page in spec/variants/.
#pragma once

#include <string>
#include <vector>

#include "moeref/config.hpp"
#include "moeref/hparams.hpp"
#include "moeref/trace.hpp"

namespace moeref {

// Runs a validated config and fills the trace (resolved config, inputs, steps,
// losses, capacity). Throws InputError for dims or inputs that do not fit.
using VariantRunFn = void (*)(const Config& config, Trace& trace);

struct VariantSpec {
  std::string id;         // <origin>_<routing>[_<qualifier>], e.g. "mtf_top2"
  std::string summary;    // one line
  std::string source;     // repository, file, function
  std::string spec_page;  // path of its page under spec/variants/
  std::vector<HparamSpec> hparams;
  VariantRunFn run = nullptr;
};

}  // namespace moeref
