// Discrete decisions a backend may legitimately make the other way at a near tie
// (spec/trace-format.md, "Near ties"): how a variant applies the checker's forced
// choices (Config::decision_overrides) at the decision point, and how it measures
// the margin by which the reference decided. Shared by the variants that declare
// VariantSpec::near_tie; mtf_top2 keeps its own copies of the first two.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "moeref/config.hpp"
#include "moeref/tensor.hpp"
#include "moeref/trace.hpp"
#include "moeref/variant.hpp"

namespace moeref::ops {

// The checker's override for decision `step`, or nullptr when it forces nothing
// there. Throws InputError naming the step when the override is not an int32
// tensor of `shape`.
const Tensor* forced_decision(const Config& config, const std::string& step, const std::vector<int64_t>& shape);

// A top-1 decision per row: where forced[r] is an index in [0, n), it replaces
// index[r]; -1 (or anything out of range) leaves the reference's choice.
void force_top_1(const int32_t* forced, int64_t rows, int64_t n, int32_t* index);

// A top-k selection over one row of n scores. `order` lists all n indices in the
// order the framework's top-k ranks them, so that the k it takes appear in the
// order it returns them (tf.math.top_k: best first; praxis top_k: ascending).
// `indices` holds the reference's k picks on entry. `forced` is the row of a
// [..., n] 0/1 override (1: take, 0: do not take, -1: as the reference).
// When the forced memberships still take exactly k entries, `indices` becomes
// those entries in `order`'s order and the function returns true; otherwise
// (no top-k returns another number of entries) it leaves `indices` unchanged
// and returns false.
bool force_top_k_selection(const int32_t* order, int64_t n, int64_t k, const int32_t* forced, int32_t* indices);

// "%.9g": enough digits to tell float32 values apart.
std::string float_text(double value);

// Margin of a top-1 choice recorded in `step` ([..., ] int32, one choice per
// row) over the scores in `scores_step` ([..., n] float32): the reference's
// chosen score minus the candidate's, with the tolerance of `scores_step` at the
// chosen score. nullopt when the candidate's choice is not an index in [0, n).
std::optional<NearTie> top_1_near_tie(const Trace& reference, const std::string& step, const std::string& scores_step,
                                      int64_t flat, int64_t n, int32_t candidate_value,
                                      const ToleranceFor& tolerance_for);

// Margin of a keep decision `U < gate / divisor` (the random second-expert
// policy of lingvo and praxis): |U - f32(gate / divisor)|, with the tolerance
// of `gate_step` at gate, divided by the divisor. nullopt when the reference
// lacks the draw or the gate.
std::optional<NearTie> random_keep_near_tie(const Trace& reference, const std::string& uniform_input,
                                            const std::string& gate_step, int64_t flat, float divisor,
                                            const ToleranceFor& tolerance_for);

// Margin of one membership of a top-k selection recorded as a 0/1 mask
// `selection_step` [..., n] whose rows line up with `scores_step` [..., n]:
//   the candidate took an entry the reference did not: (weakest score the
//     reference took in that row) - (the entry's score);
//   the candidate left out an entry the reference took: (the entry's score) -
//     (strongest score the reference left out).
// The tolerance is that of `scores_step` at the reference's side of the
// comparison. nullopt when the candidate's value is not 0 or 1, or the row has
// nothing to compare with (the reference took all entries, or none).
std::optional<NearTie> top_k_selection_near_tie(const Trace& reference, const std::string& selection_step,
                                                const std::string& scores_step, int64_t flat, int64_t n,
                                                int32_t candidate_value, const ToleranceFor& tolerance_for);

}  // namespace moeref::ops
