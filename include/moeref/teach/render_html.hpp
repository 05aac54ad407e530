// `moeref render`: a picture of a trace's routing as one self-contained HTML page
// (inline CSS, no script, no font or image fetched), for a reader or a reviewer.
//
// The page shows the counts (tokens routed, dropped, padding; choices kept and
// dropped), the token × expert grid with each seat's combine weight and slot, first
// and second (and later) choices told apart and dropped choices marked with their
// reason, each expert's capacity fill with the tokens it turned away, and the
// losses. A trace of more than `max_grid_tokens` tokens gets a summary instead of
// the grid: per-expert fill and the drop rates. With a candidate, both routings
// side by side, the cells where they differ marked, and the checker's verdict with
// the first divergent step (check.hpp).
//
// Every number a test reads carries an id and data-value (id="routed-tokens", ...).
#pragma once

#include <cstdint>
#include <string>

#include "moeref/check.hpp"
#include "moeref/trace.hpp"

namespace moeref {

struct RenderOptions {
  int64_t max_grid_tokens = 256;  // more tokens (all groups): the summary instead of the grid
  std::string trace_name;         // shown in the header, e.g. the file name
  std::string candidate_name;
};

// The page of one trace.
std::string render_routing_html(const Trace& trace, const RenderOptions& options);

// The page of a golden and a candidate with the checker's report on them.
std::string render_comparison_html(const Trace& golden, const Trace& candidate, const CheckReport& report,
                                   const RenderOptions& options);

}  // namespace moeref
