// Mesh TensorFlow's _top_2_gating (tensorflow/mesh, mesh_tensorflow/transformer/moe.py
// at da90793), step by step, for every place that calls it: transformer_moe_layer_v1
// (variant mtf_top2, one level) and transformer_moe_layer_v2 (variant mtf_moe2d, an
// outer level over the groups and an inner level per outer expert, with
// outer_expert_dims). The body lives in src/layers/mtf_top2_gating.cpp and reads
// top to bottom like the source.
//
// Dims of a site: the batch dims ({G} in v1; {X, I} at MoE2D's inner level), the
// group dim (S; T), the experts (E; X, Y) and the capacity (C; D). Masks,
// positions and counts are float32 0/1 and integer values in mtf; they are exact
// integers, so moeref stores them as int32.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "moeref/frame/frame.hpp"
#include "moeref/frame/hparam_table.hpp"
#include "moeref/near_tie.hpp"

namespace moeref {

// The hyperparameters _top_2_gating reads, as MoE1D and MoE2D declare them.
struct MtfTop2GatingHparams {
  bool use_second_place_loss = false;
  std::string second_policy_train;
  std::string second_policy_eval;
  double second_threshold_train = 0.0;
  double second_threshold_eval = 0.0;

  // _top_2_gating picks these by hparams.mode.
  const std::string& second_policy(bool train) const { return train ? second_policy_train : second_policy_eval; }
  double second_threshold(bool train) const { return train ? second_threshold_train : second_threshold_eval; }
};

// Declares use_second_place_loss, second_policy_train/_eval and
// second_threshold_train/_eval under MoE1D's (and MoE2D's) argument names.
template <typename P>
void declare_mtf_top2_gating_hparams(HparamTable<P>& table) {
  const std::vector<std::string> policies = {"all", "none", "threshold", "random"};
  const char* gating = "moe.py: _top_2_gating";
  table.flag("use_second_place_loss", &P::use_second_place_loss)
      .defaults_to(false)
      .means("Add 0.5 x a balance loss on the second choices to the gating loss.")
      .cites(gating)
      .known_as({"moe_use_second_place_loss"})
      .about("second_place_loss");
  table.choice("second_policy_train", &P::second_policy_train, policies)
      .defaults_to("random")
      .train_only()
      .means(
          "When training, which second choices to keep: all, none, threshold (gate_2 > t) or random (U < gate_2 "
          "/ t).")
      .cites(gating)
      .known_as({"moe_second_policy_train"})
      .about("second_expert_policy");
  table.choice("second_policy_eval", &P::second_policy_eval, policies)
      .defaults_to("random")
      .eval_only()
      .means("The same policy when train is false (mtf's default is random, so its evaluation is stochastic).")
      .cites(gating)
      .known_as({"moe_second_policy_eval"})
      .about("second_expert_policy");
  table.number("second_threshold_train", &P::second_threshold_train)
      .defaults_to(0.2)
      .at_least(0.0)
      .train_only()
      .means("Threshold t of the threshold and random second policies when training.")
      .cites(gating)
      .known_as({"moe_second_threshold_train"})
      .about("second_expert_threshold");
  table.number("second_threshold_eval", &P::second_threshold_eval)
      .defaults_to(0.2)
      .at_least(0.0)
      .eval_only()
      .means("Threshold t of the threshold and random second policies when train is false.")
      .cites(gating)
      .known_as({"moe_second_threshold_eval"})
      .about("second_expert_threshold");
}

// Where a call of _top_2_gating runs: the names of its dims and a prefix for its
// step names ("" in transformer_moe_layer_v1; "outer_" and "inner_" in MoE2D,
// whose variable scopes are "outer_gating" and "inner_gating"). Extents come
// from the frame (resolved dims or Frame::set_step_extent).
struct MtfTop2Site {
  std::vector<std::string> batch;  // {"G"}, or {"X", "I"}
  std::string group;               // "S", or "T"
  std::string experts;             // "E", "X" or "Y"
  std::string capacity;            // "C", or "D"
  std::string prefix;              // "", "outer_" or "inner_"
};

// What _top_2_gating returns, and the steps the index form needs.
struct MtfTop2Gated {
  const Tensor* dispatch_tensor = nullptr;  // [batch..., group, experts, capacity] int32
  const Tensor* combine_tensor = nullptr;   // [batch..., group, experts, capacity] float32
  float loss = 0.0f;                        // the gating loss (step gating_loss)
};

// _top_2_gating(inputs, outer_expert_dims, experts_dim, expert_capacity_dim, hparams,
// train, importance, num_microbatches) from its router output on: `logits`
// [batch..., group, experts] (the recorded step), `importance` [batch..., group]
// or nullptr. Records every step from raw_gates to dispatch_tensor under the
// site's prefix, and the index form (routing_expert, routing_slot,
// routing_weight) when the site has one batch dim and no prefix.
MtfTop2Gated mtf_top_2_gating(Frame& frame, const MtfTop2Site& site, const Tensor& logits, const Tensor* importance,
                              const MtfTop2GatingHparams& hparams, const std::optional<int64_t>& num_microbatches);

// The decisions of _top_2_gating that a backend can legitimately make the other
// way at a near tie, for the site whose steps carry `prefix`: the two top_1
// choices (index_1 over raw_gates, index_2 over gates_without_top_1) and the
// second-expert policy's comparison (second_policy_keep).
std::optional<NearTie> mtf_top_2_near_tie(const NearTieQuery& query, const MtfTop2GatingHparams& hparams,
                                          const std::string& prefix);

}  // namespace moeref
