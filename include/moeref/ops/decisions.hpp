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

}  // namespace moeref::ops
