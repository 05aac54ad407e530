// mtf_expert_selection: Mesh TensorFlow's expert-choice gating (each expert
// picks the tokens it wants), literal to the source.
//
// Source: tensorflow/mesh, mesh_tensorflow/transformer/moe.py at da90793,
//   transformer_moe_layer_v1 (grouping, capacity, experts, combine) and
//   _expert_selection_gating (the gating function; added in commit 3dc48f5).
//   Spec: spec/variants/mtf_expert_selection.md.
//
// Dims: B batch, L length, G groups, S group size, E experts, C expert capacity,
//       M model dim, H expert hidden dim, N expert output dim.
//
// The router softmax runs over the TOKENS of a group, separately for each
// expert; each expert then takes its C most probable tokens with mtf.top_k. A
// token may be taken by several experts (or none); its weight for each is its
// probability divided by the number of experts that took it. Dispatch comes
// from the one-hot selection, not from the combine weights, so a taken token of
// probability 0 is still dispatched. Padding (importance 0) is pushed to -1e9
// before the softmax.

#include <algorithm>
#include <optional>
#include <string>
#include <vector>

#include "moeref/frame/define_variant.hpp"
#include "moeref/layers/mtf_switch_router.hpp"
#include "moeref/ops/mtf_softmax.hpp"
#include "moeref/ops/mtf_switch_loss.hpp"

namespace moeref {

namespace {

// transformer_moe_layer_v1's hyperparameters and the switch_* ones (only the
// perturbation policies act here).
struct MtfExpertSelectionHparams : MtfSwitchRouterHparams {};

void declare_hparams(HparamTable<MtfExpertSelectionHparams>& table) {
  declare_mtf_switch_router_hparams(table, "moe.py: _expert_selection_gating", MtfSwitchPolicyUse::kPerturbOnly);
}

// _expert_selection_gating(inputs, ..., importance, num_microbatches,
// normalize_by_num_experts_routed=True): dispatch, combine and loss.
MtfGatingOutputs expert_selection_gating(Frame& f, const MtfGatingInputs& in, const MtfExpertSelectionHparams& hp) {
  const int64_t G = f.dim("G"), S = f.dim("S"), E = f.dim("E"), C = f.dim("C");
  const bool train = f.train();
  // if train: policy = hparams.moe_switch_policy_train, else hparams.moe_switch_policy_eval
  const std::string& policy = hp.switch_policy(train);
  mtf_require_importance(in, "mtf_expert_selection",
                         "in training and evaluation (true_group_size = reduce_sum(importance, group_size_dim) "
                         "enters the loss)");
  const Tensor& importance = *in.importance;

  // gate_inputs = mtf.to_float(inputs); # Input perturbations for exploration;
  // gate_logits = mtf.layers.dense(gate_inputs, experts_dim, use_bias=False)
  const Tensor& gate_logits = mtf_switch_gate_logits(f, in, policy, hp, MtfRouterPerturbation::kSwitch);  // [G, S, E]
  // gate_logits += mtf.cast(mtf.equal(importance, 0.0)) * -1e9: padding is pushed out of the
  // softmax over tokens (an importance of 0.5 is not).
  Tensor& gate_logits_masked = f.float32_step("gate_logits_masked", {gate_logits, importance}, {"G", "S", "E"});
  for (int64_t k = 0; k < G * S * E; ++k) {
    const float padding = importance.f32[k / E] == 0.0f ? 1.0f : 0.0f;
    gate_logits_masked.f32[k] = gate_logits.f32[k] + padding * -1e9f;
  }
  // raw_gates = mtf.softmax(gate_logits, reduced_dim=group_size_dim): over the tokens, per expert.
  Tensor& raw_gates = f.float32_step("raw_gates", {gate_logits_masked}, {"G", "S", "E"});  // [G, S, E]
#pragma omp parallel for schedule(static)
  for (int64_t g = 0; g < G; ++g) {
    std::vector<float> column(static_cast<size_t>(S)), probs(static_cast<size_t>(S));
    for (int64_t e = 0; e < E; ++e) {
      for (int64_t s = 0; s < S; ++s) column[static_cast<size_t>(s)] = gate_logits_masked.f32[(g * S + s) * E + e];
      ops::mtf_softmax(column.data(), probs.data(), 1, S);
      for (int64_t s = 0; s < S; ++s) raw_gates.f32[(g * S + s) * E + e] = probs[static_cast<size_t>(s)];
    }
  }

  // expert_gate_probs, expert_gate_indices = mtf.top_k(raw_gates, reduced_dim=group_size_dim,
  //     k_dim=expert_capacity_dim)                                              [G, E, C] each
  const MtfTokenTopK top_k = mtf_token_top_k(f, raw_gates, "mtf_expert_selection");
  // dispatch_tensor = mtf.one_hot(expert_gate_indices, group_size_dim). The source's final
  // dispatch_tensor = cast(cast(dispatch_tensor, bool)) has the same 0/1 values, so it is
  // recorded once, here: dispatch comes from the selection, not from combine. mtf's
  // [G, E, C, S] is recorded as [G, S, E, C].
  const Tensor& dispatch_tensor = f.step("dispatch_tensor", {top_k.expert_gate_indices},
                                         mtf_token_one_hot(*top_k.expert_gate_indices, S));  // [G, S, E, C]
  // combine_tensor = dispatch_tensor * expert_gate_probs
  Tensor& combine_tensor_unnormalized =
      f.float32_step("combine_tensor_unnormalized", {dispatch_tensor, top_k.expert_gate_probs}, {"G", "S", "E", "C"});
  for (int64_t k = 0; k < G * S * E * C; ++k) {
    const int64_t g = k / (S * E * C), ec = k % (E * C);
    combine_tensor_unnormalized.f32[k] =
        static_cast<float>(dispatch_tensor.i32[k]) * top_k.expert_gate_probs->f32[g * E * C + ec];
  }
  // num_experts_routed = mtf.reduce_sum(dispatch_tensor, output_shape=[outer_batch, batch, group])
  Tensor& num_experts_routed = f.int32_step("num_experts_routed", {dispatch_tensor}, {"G", "S"});  // [G, S]
  for (int64_t k = 0; k < G * S * E * C; ++k) num_experts_routed.i32[k / (E * C)] += dispatch_tensor.i32[k];
  // combine_tensor /= mtf.maximum(num_experts_routed, 1.0): combine * reciprocal(max(n, 1)).
  Tensor& combine_tensor = f.float32_step("combine_tensor", {combine_tensor_unnormalized, num_experts_routed},
                                          {"G", "S", "E", "C"});  // [G, S, E, C]
  for (int64_t k = 0; k < G * S * E * C; ++k) {
    const float routed = static_cast<float>(std::max(num_experts_routed.i32[k / (E * C)], 1));
    combine_tensor.f32[k] = combine_tensor_unnormalized.f32[k] * (1.0f / routed);
  }

  // ## Compute the load balancing loss ##
  // aggregated_group_probs = mtf.reduce_mean(raw_gates, reduced_dim=experts_dim)  [G, S]
  Tensor& aggregated_group_probs = f.float32_step("aggregated_group_probs", {raw_gates}, {"G", "S"});
  const float inverse_experts = static_cast<float>(1.0 / static_cast<double>(E));
  for (int64_t t = 0; t < G * S; ++t) {
    double sum = 0.0;
    for (int64_t e = 0; e < E; ++e) sum += static_cast<double>(raw_gates.f32[t * E + e]);
    aggregated_group_probs.f32[t] = static_cast<float>(sum) * inverse_experts;
  }
  // aggregated_group_probs *= mtf.cast(mtf.equal(importance, 1.0))
  Tensor& aggregated_group_probs_important =
      f.float32_step("aggregated_group_probs_important", {aggregated_group_probs, importance}, {"G", "S"});
  for (int64_t t = 0; t < G * S; ++t) {
    aggregated_group_probs_important.f32[t] = aggregated_group_probs.f32[t] * (importance.f32[t] == 1.0f ? 1.0f : 0.0f);
  }
  // true_group_size = mtf.reduce_sum(importance, reduced_dim=group_size_dim)  [G]
  Tensor& true_group_size = f.float32_step("true_group_size", {importance}, {"G"});
  for (int64_t g = 0; g < G; ++g) {
    double sum = 0.0;
    for (int64_t s = 0; s < S; ++s) sum += static_cast<double>(importance.f32[g * S + s]);
    true_group_size.f32[g] = static_cast<float>(sum);
  }
  // loss = mtf.reduce_mean(aggregated_group_probs * aggregated_group_probs * true_group_size)
  //        * float(group_size_dim.size)
  double sum = 0.0;
  for (int64_t t = 0; t < G * S; ++t) {
    const float agg = aggregated_group_probs_important.f32[t];
    sum += static_cast<double>(agg * agg * true_group_size.f32[t / S]);
  }
  const float mean = static_cast<float>(sum) * static_cast<float>(1.0 / static_cast<double>(G * S));
  const Tensor* loss = &f.scalar_step("load_balancing_loss", {aggregated_group_probs_important, true_group_size},
                                      mean * static_cast<float>(S));
  if (hp.num_microbatches && *hp.num_microbatches > 1) {
    // loss /= num_microbatches: loss * f32(1 / num_microbatches).
    const float scale = static_cast<float>(1.0 / static_cast<double>(*hp.num_microbatches));
    loss = &f.scalar_step("load_balancing_loss_microbatches", {loss}, loss->f32[0] * scale);
  }

  // ## Logging ##
  if (train) {
    // entropy = reduce_sum(-raw_gates * log(raw_gates + 1e-9), reduced_dim=group_size_dim)  [G, E]
    const Tensor& entropy = f.step("entropy", {raw_gates}, ops::mtf_entropy(raw_gates, 1));
    f.scalar_step("batch_entropy", {entropy}, ops::mtf_reduce_mean_all(entropy));
    // num_experts_sent_per_token = reduce_sum(dispatch_tensor, output_shape=[group_size_dim])
    //                              * float(E * C): the summaries "group_token/...", one per s.
    Tensor& group_token = f.float32_step("group_token", {dispatch_tensor}, {"S"});  // [S]
    std::vector<int64_t> count(static_cast<size_t>(S), 0);
    for (int64_t k = 0; k < G * S * E * C; ++k) count[static_cast<size_t>((k / (E * C)) % S)] += dispatch_tensor.i32[k];
    for (int64_t s = 0; s < S; ++s) {
      group_token.f32[s] = static_cast<float>(count[static_cast<size_t>(s)]) * static_cast<float>(E * C);
    }
    // mtf.scalar_summary("aux_loss", mtf.reduce_mean(loss))
    f.scalar_step("aux_loss", {loss}, ops::mtf_reduce_mean_all(*loss));
  }
  const float gating_loss = loss->f32[0];
  f.scalar_step("gating_loss", {loss}, gating_loss);
  return {&dispatch_tensor, &combine_tensor, gating_loss};
}

void mtf_expert_selection(Frame& f, const MtfExpertSelectionHparams& hp) {
  mtf_moe_layer(f, hp, [&](const MtfGatingInputs& in) { return expert_selection_gating(f, in, hp); });
}

// The one decision a backend may make the other way at a near tie: which tokens
// each expert takes, in which slot (expert_gate_indices, ranked by raw_gates over S).
std::optional<NearTie> mtf_expert_selection_near_tie(const NearTieQuery& query, const MtfExpertSelectionHparams&) {
  if (query.step != "expert_gate_indices") return std::nullopt;
  return mtf_ranked_near_tie(query, "raw_gates", true);
}

}  // namespace

VariantSpec mtf_expert_selection_variant() {
  VariantSpec spec = define_variant<MtfExpertSelectionHparams>(
      {"mtf_expert_selection",
       "Mesh TensorFlow expert-choice MoE layer (softmax over tokens, each expert takes its top-C tokens)",
       "tensorflow/mesh mesh_tensorflow/transformer/moe.py: transformer_moe_layer_v1, _expert_selection_gating",
       "spec/variants/mtf_expert_selection.md"},
      declare_hparams, mtf_expert_selection, mtf_expert_selection_near_tie);
  // transformer_moe_layer_v1 keeps its groups apart from the gating to the outputs:
  // shards by group merge exactly (spec/sharding.md).
  spec.group_shards = true;
  return spec;
}

}  // namespace moeref
