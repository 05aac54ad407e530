// The steps that lingvo's TokenShufflingOnlogitsV2 (tensorflow/lingvo
// lingvo/core/gshard_layers.py) and praxis's expert_choice_gating_on_logits_v2
// (google/praxis praxis/gshard_utils.py) share from the gates on, recorded once
// in the sources' order under their names (the math is ops/gshard_expert_choice.hpp).
// The two sources differ before (the softmax, praxis's logit cap), in between
// (lingvo's avg_expert_per_token summary) and in the top-k they call; the
// variant files hold those differences and call the two halves below.
//
// Dims: G groups, S group size, E experts, C expert capacity, K entries the
//       top-k returns per expert.
#pragma once

#include <cstdint>
#include <optional>

#include "moeref/frame/frame.hpp"
#include "moeref/near_tie.hpp"
#include "moeref/ops/gshard_expert_choice.hpp"

namespace moeref {

// Which tokens each expert takes, as recorded steps.
struct ExpertChoiceSelection {
  const Tensor* nonpaddings;      // [G, S] float32
  const Tensor* mask_ges;         // [G, E, S] 1 where expert e took token s (the decision)
  const Tensor* mask_nonpadding;  // [G, S, E] the same, padded tokens removed
  const Tensor* expert_indices;   // [G, S, E] e where taken, else 0
};

// Records nonpaddings, token_scores, the selection mask_ges of `top_k` with
// k = C and its token_indices, mask, mask_nonpadding and expert_indices.
// Applies the checker's forced decision on mask_ges (near-tie replay).
// `paddings` [G, S] or nullptr.
ExpertChoiceSelection gshard_expert_choice_selection(Frame& frame, const Tensor& logits, const Tensor& gates,
                                                     const Tensor* paddings, int64_t C, const ops::TopKRule& top_k);

// The routing the selection gives, as recorded steps.
struct ExpertChoiceRouting {
  const Tensor* combine_tensor;   // [G, S, E, C] float32
  const Tensor* dispatch_tensor;  // [G, S, E, C] int32
};

// Records position_in_expert (and its _capacity and _masked stages), gate_i,
// combine_tensor and dispatch_tensor.
ExpertChoiceRouting gshard_expert_choice_routing(Frame& frame, const Tensor& gates,
                                                 const ExpertChoiceSelection& selection, int64_t C);

// The one decision of the gating function: which tokens each expert takes
// (top_k(token_scores, k)). At a near tie at the cut (the k-th and (k+1)-th
// scores within float tolerance, exact ties included) a backend may take another
// token; mask_ges [G, E, S] lines up with token_scores [G, E, S] element by element.
// Either variant's near-tie function (its hparams play no part).
template <typename P>
std::optional<NearTie> gshard_expert_choice_near_tie(const NearTieQuery& query, const P& /*hparams*/) {
  if (query.step != "mask_ges") return std::nullopt;
  return top_k_selection_near_tie(query, "token_scores");
}

}  // namespace moeref
