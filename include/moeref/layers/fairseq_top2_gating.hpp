// A block of fairseq's top2gating (facebookresearch/fairseq,
// fairseq/modules/moe/top2gate.py) that Hugging Face's port,
// NllbMoeTop2Router.route_tokens (huggingface/transformers,
// src/transformers/models/nllb_moe/modeling_nllb_moe.py), writes statement for
// statement: the padding mask on both choices, the batch-prioritized importance
// scores, and the two ranks' locations. The step names differ between the two
// sources, so the caller passes its own. Arithmetic: ops/fairseq_top2.
//
// Dims: G = 1 group, S tokens, E experts.
#pragma once

#include <string>

#include "moeref/frame/frame.hpp"

namespace moeref {

// The source's names for the steps of the block.
struct FairseqTop2Names {
  std::string nonpadding;        // ~padding_mask.bool()
  std::string mask1_nonpadding;  // mask1 * nonpadding
  std::string mask2_nonpadding;  // mask2 * nonpadding
};

struct FairseqTop2Locations {
  const Tensor* mask1 = nullptr;       // [G, S, E], the latest version
  const Tensor* mask2 = nullptr;       // [G, S, E], the latest version
  const Tensor* locations1 = nullptr;  // [G, S, E]
  const Tensor* locations2 = nullptr;  // [G, S, E]
};

// if padding (not null): nonpadding = ~padding.bool(); mask1 *= nonpadding; mask2 *= nonpadding.
// if bpr_probs (not null, batch_prioritized_routing): importance_scores = -1 * bpr_probs.max(dim=1)[0].
// locations1, locations2 (ops::top2_locations). Records each step; "importance_scores",
// "locations1" and "locations2" under those names.
FairseqTop2Locations fairseq_top2_locations(Frame& frame, const FairseqTop2Names& names, const Tensor& mask1,
                                            const Tensor& mask2, const Tensor* padding, const Tensor* bpr_probs);

}  // namespace moeref
