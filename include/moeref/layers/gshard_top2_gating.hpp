// Blocks of GShard top-2 gating that lingvo's Top2GatingOnLogits
// (tensorflow/lingvo, lingvo/core/gshard_layers.py) and its JAX port, praxis's
// top2_gating_on_logits (google/praxis, praxis/gshard_utils.py), write alike:
// the same statements, in the same order, under the same names. Each function
// records the steps of one such block; lingvo_top2 and praxis_top2 call them
// where their source runs the block, in between the statements that are their
// own, so that each shared step is written once and both variant files still
// read top to bottom like their sources. The arithmetic is in src/ops/gshard_*.
//
// Dims: G groups, S group size, E experts, C expert capacity: the dims the
// gating function sees (lingvo's ComputeGating may regroup every token into one
// group, Frame::set_step_extent).
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "moeref/frame/frame.hpp"
#include "moeref/frame/hparam_table.hpp"
#include "moeref/near_tie.hpp"

namespace moeref {

// The function's arguments that praxis kept from lingvo under the same names.
struct GshardTop2PolicyHparams {
  std::string second_expert_policy;  // 'all', 'sampling' or 'random'
  double second_expert_threshold = 0.0;
  bool legacy_mtf_behavior = true;
};

// Their one-sentence meanings, as each variant words them for its callers.
struct GshardTop2PolicyMeanings {
  const char* second_expert_policy;
  const char* second_expert_threshold;
  const char* legacy_mtf_behavior;
};

// Declares the three, with the function's defaults ('all', 0.0, True), citing `where`.
template <typename P>
void declare_gshard_top2_policy_hparams(HparamTable<P>& table, const char* where,
                                        const GshardTop2PolicyMeanings& meanings) {
  table.choice("second_expert_policy", &P::second_expert_policy, {"all", "sampling", "random"})
      .defaults_to("all")
      .means(meanings.second_expert_policy)
      .cites(where)
      .about("second_expert_policy");
  table.number("second_expert_threshold", &P::second_expert_threshold)
      .defaults_to(0.0)
      .at_least(0.0)
      .means(meanings.second_expert_threshold)
      .cites(where)
      .about("second_expert_threshold");
  table.flag("legacy_mtf_behavior", &P::legacy_mtf_behavior)
      .defaults_to(true)
      .means(meanings.legacy_mtf_behavior)
      .cites(where)
      .about("gate_renormalization");
}

// index_1 = argmax(raw_gates, axis=-1), as the checker forces it where a backend
// decided otherwise (Frame::forced_decision); mask_1 = one_hot(index_1, E);
// density_1_proxy = raw_gates; if importance is not None: importance_is_one =
// equal(importance, 1.0); mask_1 *= importance_is_one; density_1_proxy *= it.
// Records "index_1", "mask_1" and, with importance, "mask_1_important" and
// "density_1_proxy_per_token".
struct GshardFirstChoice {
  const Tensor* index = nullptr;            // [G, S] int32
  const Tensor* mask_1 = nullptr;           // [G, S, E] int32, the latest version
  const Tensor* density_1_proxy = nullptr;  // [G, S, E] float32, the latest version
};
GshardFirstChoice gshard_first_choice(Frame& f, const Tensor& raw_gates, const Tensor* importance);

// gate_1 = einsum('GSE,GSE->GS', raw_gates, mask_1); gates_without_top_1 =
// raw_gates * (1.0 - mask_1); under 'sampling' noise = -log(-log(U)) (U the input
// `noise_input`), updated_logits = where(mask_1 > 0, very_negative_logits,
// logits), noised_logits = updated_logits + noise; index_2 = argmax of
// noised_logits ('sampling') or of gates_without_top_1, as the checker forces it;
// mask_2 = one_hot(index_2, E). Records each under its name.
struct GshardSecondChoice {
  const Tensor* gate_1 = nullptr;               // [G, S] float32
  const Tensor* gates_without_top_1 = nullptr;  // [G, S, E] float32
  const Tensor* index = nullptr;                // [G, S] int32
  const Tensor* mask_2 = nullptr;               // [G, S, E] int32
};
GshardSecondChoice gshard_second_choice(Frame& f, const GshardTop2PolicyHparams& hp, const std::string& noise_input,
                                        const Tensor& logits, const Tensor& raw_gates, const Tensor& mask_1);

// A pair of gates [G, S] float32.
struct GshardGates {
  const Tensor* gate_1 = nullptr;
  const Tensor* gate_2 = nullptr;
};

// gate_2 = einsum('GSE,GSE->GS', gates_without_top_1, mask_2); if
// legacy_mtf_behavior: denom = gate_1 + gate_2 + 1e-9, then gshard_divide_gates.
// Records "gate_2" and, when legacy, "denom", "gate_1_normalized",
// "gate_2_normalized"; returns the latest gate_1 and gate_2.
GshardGates gshard_gate_2(Frame& f, const GshardTop2PolicyHparams& hp, const Tensor& gate_1,
                          const Tensor& gates_without_top_1, const Tensor& mask_2);

// gate_1 /= denom; gate_2 /= denom (true divisions). Records "gate_1_normalized"
// and "gate_2_normalized".
GshardGates gshard_divide_gates(Frame& f, const GshardGates& gates, const Tensor& denom);

// density_denom (not legacy: reduce_mean(importance, axis=1) + 1e-6; a null
// importance means ones), density_1 = reduce_mean(mask_1) / density_denom,
// density_1_proxy likewise, aux_loss = reduce_mean(density_1_proxy * density_1)
// * E * E. Records them; returns aux_loss.
float gshard_aux_loss(Frame& f, const Tensor& mask_1, const Tensor& density_1_proxy, const Tensor* importance,
                      bool legacy_mtf_behavior);

// mask_k *= less(position_in_expert_k, capacity); position_in_expert_k =
// einsum('GSE,GSE->GS', position_in_expert_k, mask_k); for rank 1 mask_1_count =
// einsum('GSE->GE', mask_1); mask_k_flat = reduce_sum(mask_k, -1). Records
// "mask_K_capacity", "position_in_expert_K_flat", ["mask_1_count"], "mask_K_flat".
struct GshardKept {
  const Tensor* mask = nullptr;           // [G, S, E] int32
  const Tensor* position_flat = nullptr;  // [G, S] int32
  const Tensor* count = nullptr;          // [G, E] int32, rank 1 only
  const Tensor* mask_flat = nullptr;      // [G, S] int32
};
GshardKept gshard_keep_within_capacity(Frame& f, int rank, const Tensor& mask, const Tensor& position_in_expert);

// 'all' and 'sampling' keep every second choice. 'random': sampled_2 =
// less(U, gate_2 / max(t, 1e-9)) with U the input `uniform_input` (as the
// checker forces it); gate_2 *= sampled_2; mask_2 *= sampled_2. Records
// "sampled_2", "gate_2_sampled", "mask_2_sampled"; returns the latest gate_2
// [G, S] and mask_2 [G, S, E].
struct GshardSecondKept {
  const Tensor* gate_2 = nullptr;
  const Tensor* mask_2 = nullptr;
};
GshardSecondKept gshard_second_expert_policy(Frame& f, const GshardTop2PolicyHparams& hp,
                                             const std::string& uniform_input, const Tensor& gate_2,
                                             const Tensor& mask_2);

// gate_1 *= mask_1_flat; gate_2 *= mask_2_flat. Records "gate_1_capacity" and
// "gate_2_capacity".
GshardGates gshard_gates_within_capacity(Frame& f, const GshardGates& gates, const Tensor& mask_1_flat,
                                         const Tensor& mask_2_flat);

// One rank of the final routing, each [G, S].
struct GshardRank {
  const Tensor* index = nullptr;          // int32 index_k
  const Tensor* position_flat = nullptr;  // int32 position_in_expert_k, flat
  const Tensor* mask_flat = nullptr;      // int32 mask_k_flat
  const Tensor* gate = nullptr;           // float32 gate_k as combine_tensor holds it
};

// The routing in index form (routing_expert, routing_slot, routing_weight), then
// combine_tensor = einsum(a_1, b_1) + einsum(a_2, b_2) [G, S, E, C]; returns it.
const Tensor& gshard_combine_tensor(Frame& f, const GshardRank& first, const GshardRank& second);

// The decisions a backend may make the other way at a near tie: index_1
// (argmax of raw_gates), index_2 (of noised_logits under 'sampling', else of
// gates_without_top_1) and, under 'random', sampled_2 (`uniform_input` against
// gate_2 / max(t, 1e-9), gate_2 being gate_2_normalized when legacy).
std::optional<NearTie> gshard_top2_near_tie(const NearTieQuery& query, const GshardTop2PolicyHparams& hp,
                                            const std::string& uniform_input);

}  // namespace moeref
