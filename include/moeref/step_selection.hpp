// Writing only some steps: `moeref run --steps NAME,...` or a config's "steps" list.
//
// A run still computes every step (each reads earlier ones); the selection only
// decides which of them the trace keeps. Inputs, losses and the capacity are always
// kept, so the trace replays, and the list is recorded in the trace's config
// ("steps"), so a replay keeps the same steps. A golden that needs only the routing
// (index_1, dispatch_tensor, ...) is then a small file.
#pragma once

#include <string>
#include <vector>

#include "moeref/trace.hpp"

namespace moeref {

// Checks a list of step names as read from `field` ("steps", "--steps"): at least
// one name, none empty, none twice. Whether each names a step of the run is known
// only once it has run (keep_only_steps).
void check_step_list(const std::vector<std::string>& names, const std::string& field);

// Keeps the named steps, in the trace's own order, and records the list as
// trace.config["steps"]. Throws InputError naming the first name the run did not
// record and every step name it did, before anything is dropped.
void keep_only_steps(Trace& trace, const std::vector<std::string>& names);

}  // namespace moeref
