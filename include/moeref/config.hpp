// A run's configuration: which variant, on which input, with which hyperparameters.
//
// A config is JSON (spec/trace-format.md, spec/config.schema.json):
//   {"variant": "mtf_top2", "scope": "layer"|"gating", "train": true, "seed": 0,
//    "dims": {"B": 2, "L": 8, "E": 4, "M": 8, "H": 16}, "hparams": {...},
//    "steps": ["index_1", ...], "fast": false, "inputs": {"x": tensor, ...}}
// A trace is accepted as a config too: its resolved config and inputs replay it.
// Reading and validating one is config_reader.hpp's (it needs the registry).
#pragma once

#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "moeref/tensor.hpp"

namespace moeref {

struct VariantSpec;

// `moeref run --groups FIRST:END` (spec/sharding.md): the groups [first, end) of G
// whose expert layer this run computes, a shard of the one-shot trace.
struct GroupRange {
  int64_t first = 0;
  int64_t end = 0;
};

struct Config {
  std::string variant;
  std::string scope = "layer";  // "layer": the whole MoE layer; "gating": the gating function only
  bool train = true;
  uint64_t seed = 0;
  std::map<std::string, int64_t> dims;  // as given; variants derive the rest
  nlohmann::json hparams;               // resolved: every hparam of the variant
  // The steps to write (step_selection.hpp); empty: every step. Inputs always are.
  std::vector<std::string> steps;
  // `moeref run --fast`: the mtf expert layer dispatches and combines by index
  // (frame/mtf_index_dispatch.hpp). A trace made that way says "fast": true.
  bool fast = false;
  // `moeref run --groups`: a shard (never read from a config's JSON: a shard is
  // made from a whole config and merged, spec/sharding.md). Empty: every group.
  std::optional<GroupRange> groups;
  std::map<std::string, Tensor> inputs;
  // Decisions forced by the checker's near-tie analysis: int32 tensors named after
  // the decision step (e.g. "index_1"), -1 where the reference decides itself.
  // Never read from JSON: a forced run is the checker's "what if", not a config.
  std::map<std::string, Tensor> decision_overrides;
  const VariantSpec* spec = nullptr;
  // What reading the config noticed but accepted (an hparam under its old name).
  std::vector<std::string> warnings;
};

}  // namespace moeref
