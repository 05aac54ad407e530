// One tiny example config per variant, for `moeref explain --variant ID` and the
// generated walkthroughs (spec/walkthroughs/, tools/regen_walkthroughs.sh): a
// single group of a few tokens, run as the gating function only, with a capacity
// small enough that some choices are dropped.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace moeref {

// The example config of a registered variant. A variant without its own entry
// gets a generic one ({"G": 1, "S": 8, "E": 4, "M": 4}, scope "gating"), which may
// not suit it: the run then says which dim or hparam it needs.
nlohmann::json tiny_example_config(const std::string& variant_id);

// The variants that have their own example, and why each is built as it is.
struct TinyExample {
  std::string variant;
  std::string why;  // one sentence: what the example shows
  nlohmann::json config;
};
const std::vector<TinyExample>& tiny_examples();

}  // namespace moeref
