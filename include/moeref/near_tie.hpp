// The checker's near-tie interface (spec/trace-format.md, "Near ties").
//
// A backend may make a discrete decision (an argmax, a top-k membership, a
// random keep) the other way when the values that decided it are within float
// tolerance. For each decision step it can force, a variant measures how
// narrowly the reference decided; the checker then forces the candidate's choice
// (Frame::forced_decision) and re-runs the reference. The helpers below measure
// the three kinds of decision the variants make.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>

#include "moeref/tolerance.hpp"
#include "moeref/trace.hpp"

namespace moeref {

// How narrowly the reference made one decision that a candidate made
// differently: the candidate's choice is a consistent alternative when
// margin <= tolerance (the float tolerance of the values that decided it).
struct NearTie {
  double margin = 0.0;
  double tolerance = 0.0;
  std::string detail;  // the deciding values, e.g. "raw_gates: e=1 0.5 vs e=2 0.49999997"
};

// One element where the candidate decided otherwise: step `step`, flat index
// `flat`, the candidate's value `candidate`.
struct NearTieQuery {
  const Trace& reference;
  const std::string& step;
  int64_t flat;
  int32_t candidate;
  const ToleranceFor& tolerance_for;

  bool train() const;
  // A resolved dim of the reference's config.
  int64_t dim(const char* letter) const;
};

// A top-1 choice per row recorded in the query's step, over the scores of
// `scores_step` [..., n]: the reference's chosen score minus the candidate's,
// with the tolerance of `scores_step` at the chosen score. nullopt when the
// candidate's choice is not an index in [0, n).
std::optional<NearTie> top_1_near_tie(const NearTieQuery& query, const std::string& scores_step);

// One rank of a top-k choice: the query's step holds an expert index per rank
// and row, rank-major [K, rows...] (`rank_major`, st-moe's `gate_indices`) or
// rank-last [rows..., K] (flaxformer's `expert_index`), over the scores of
// `scores_step` [rows..., n]. Margin: the reference's chosen score minus the
// candidate's, with the tolerance of `scores_step` at the chosen score. nullopt
// when the candidate's choice is not an index in [0, n).
std::optional<NearTie> ranked_choice_near_tie(const NearTieQuery& query, const std::string& scores_step,
                                              bool rank_major);

// A keep decision `uniform < bound(gate)` (a random second-expert policy):
// |uniform - bound(gate)|, with the tolerance of `gate_step` at gate times
// `slope` (how fast the bound moves with the gate). `bound_text` names the bound
// in the detail. nullopt when the reference lacks the draw or the gate.
std::optional<NearTie> random_keep_near_tie(const NearTieQuery& query, const std::string& uniform_input,
                                            const std::string& gate_step, const std::function<float(float)>& bound,
                                            double slope, const std::string& bound_text);

// A comparison `gate > threshold` (a threshold policy): |gate - threshold|, with
// the tolerance of `gate_step` at gate.
std::optional<NearTie> threshold_near_tie(const NearTieQuery& query, const std::string& gate_step, float threshold);

// One membership of a top-k selection recorded as a 0/1 mask in the query's
// step, [..., n], whose rows line up with `scores_step` [..., n]:
//   the candidate took an entry the reference did not: (weakest score the
//     reference took in that row) - (the entry's score);
//   the candidate left out an entry the reference took: (the entry's score) -
//     (strongest score the reference left out).
// The tolerance is that of `scores_step` at the reference's side. nullopt when
// the candidate's value is not 0 or 1, or the row has nothing to compare with.
std::optional<NearTie> top_k_selection_near_tie(const NearTieQuery& query, const std::string& scores_step);

// The same for a selection made along the tokens: the query's step is a 0/1
// mask [G, S, E] in which each (g, e) column took some of the S tokens, and
// `scores_step` [G, S, E] holds what the column was ranked by (DeepSpeed's
// capacity top-k over tokens, torch.topk(..., dim=0)).
std::optional<NearTie> top_k_selection_along_s_near_tie(const NearTieQuery& query, const std::string& scores_step);

// "%.9g": enough digits to tell float32 values apart.
std::string float_text(double value);

}  // namespace moeref
