#include "moeref/step_selection.hpp"

#include <algorithm>
#include <deque>
#include <set>

#include "moeref/error.hpp"

namespace moeref {

void check_step_list(const std::vector<std::string>& names, const std::string& field) {
  const std::string allowed = "a non-empty list of distinct step names";
  if (names.empty()) fail_input(field, "an empty list", allowed);
  std::set<std::string> seen;
  for (const std::string& name : names) {
    if (name.empty()) fail_input(field, "an empty name", allowed);
    if (!seen.insert(name).second) fail_input(field, "\"" + name + "\" twice", allowed);
  }
}

void keep_only_steps(Trace& trace, const std::vector<std::string>& names) {
  for (const std::string& name : names) {
    if (trace.find_step(name) != nullptr) continue;
    std::string recorded;
    for (const NamedTensor& step : trace.steps) recorded += (recorded.empty() ? "" : ", ") + step.name;
    fail_input("steps", "\"" + name + "\"", "step names of this run: " + recorded);
  }
  std::deque<NamedTensor> kept;
  for (NamedTensor& step : trace.steps) {
    if (std::find(names.begin(), names.end(), step.name) != names.end()) {
      kept.push_back(std::move(step));
    } else {
      trace.reads.erase(step.name);
    }
  }
  trace.steps = std::move(kept);
  trace.config["steps"] = names;
}

}  // namespace moeref
