// mtf_switch_max: Mesh TensorFlow's top-1 gating in which each expert keeps its
// most confident tokens, literal to the source.
//
// Source: tensorflow/mesh, mesh_tensorflow/transformer/moe.py at da90793,
//   transformer_moe_layer_v1 (grouping, capacity, experts, combine) and
//   _switch_max_gating (the gating function; added in commit 91b35d1).
//   Spec: spec/variants/mtf_switch_max.md.
//
// Dims: B batch, L length, G groups, S group size, E experts, C expert capacity,
//       M model dim, H expert hidden dim, N expert output dim.
//
// The expert choice, the load-balancing loss and the summaries are those of
// _switch_gating (layers/mtf_switch_router.hpp; no z-loss here). Then, instead
// of queueing tokens in token order, every expert takes its C highest gates
// with mtf.top_k over the group: an overflowing expert drops its least
// confident tokens, and slot c holds the (c+1)-th most confident token. With
// C > S mtf.top_k either re-picks tokens with -1e9 weights (2 <= C <= 4,
// reproduced as the source computes it) or raises (C >= 5, refused).

#include <optional>
#include <string>

#include "moeref/frame/define_variant.hpp"
#include "moeref/layers/mtf_switch_router.hpp"
#include "moeref/ops/dispatch_tensor.hpp"

namespace moeref {

namespace {

// transformer_moe_layer_v1's hyperparameters and the switch_* ones.
struct MtfSwitchMaxHparams : MtfSwitchRouterHparams {};

void declare_hparams(HparamTable<MtfSwitchMaxHparams>& table) {
  declare_mtf_switch_router_hparams(table, "moe.py: _switch_max_gating", MtfSwitchPolicyUse::kChooseExpert);
}

// _switch_max_gating(inputs, ..., importance, num_microbatches): dispatch, combine and loss.
MtfGatingOutputs switch_max_gating(Frame& f, const MtfGatingInputs& in, const MtfSwitchMaxHparams& hp) {
  const int64_t G = f.dim("G"), S = f.dim("S"), E = f.dim("E"), C = f.dim("C");
  const bool train = f.train();
  // if train: policy = hparams.moe_switch_policy_train, else hparams.moe_switch_policy_eval
  const std::string& policy = hp.switch_policy(train);
  if (train) {
    mtf_require_importance(in, "mtf_switch_max",
                           "when training (the fraction_routed summary divides by reduce_sum(importance))");
  }
  const Tensor* importance = in.importance;

  // gate_inputs = mtf.to_float(inputs); # Input perturbations; gate_logits = mtf.layers.dense(...);
  // raw_gates = mtf.softmax(gate_logits, experts_dim); expert_gate, expert_index by policy;
  // expert_mask = mtf.one_hot(expert_index, experts_dim); # LOAD BALANCING LOSS (densities before
  // the importance mask, the proxy masked after); # Logging when training.
  const MtfSwitchTop1 top_1 = mtf_switch_top_1(f, in, policy, hp);
  const MtfLoadBalance& balance = top_1.balance;
  const float loss = balance.loss->f32[0];
  f.scalar_step("gating_loss", {balance.loss}, loss);

  // expert_masked_probs = expert_mask * expert_gate: each token's gate at its expert, 0 elsewhere.
  const Tensor& expert_mask = *balance.expert_mask;
  const Tensor& expert_gate = *balance.expert_gate;
  Tensor& expert_masked_probs =
      f.float32_step("expert_masked_probs", {expert_mask, expert_gate}, {"G", "S", "E"});  // [G, S, E]
  for (int64_t k = 0; k < G * S * E; ++k) {
    expert_masked_probs.f32[k] = static_cast<float>(expert_mask.i32[k]) * expert_gate.f32[k / E];
  }
  // expert_gate_probs, expert_gate_indices = mtf.top_k(expert_masked_probs,
  //     reduced_dim=group_size_dim, k_dim=expert_capacity_dim)            [G, E, C] each
  const MtfTokenTopK top_k = mtf_token_top_k(f, expert_masked_probs, "mtf_switch_max");

  // dispatch_tensor = mtf.one_hot(expert_gate_indices, group_size_dim);
  // combine_tensor = dispatch_tensor * expert_gate_probs. mtf's dims are named, so the
  // source's [G, E, C, S] is recorded as [G, S, E, C]; a token re-picked by the
  // iterative top-k (C > S) holds two slots of one expert.
  Tensor& combine_tensor = f.float32_step("combine_tensor", {top_k.expert_gate_indices, top_k.expert_gate_probs},
                                          {"G", "S", "E", "C"});  // [G, S, E, C]
  for (int64_t g = 0; g < G; ++g) {
    for (int64_t e = 0; e < E; ++e) {
      for (int64_t c = 0; c < C; ++c) {
        const size_t at = static_cast<size_t>((g * E + e) * C + c);
        const int64_t token = top_k.expert_gate_indices->i32[at];
        for (int64_t s = 0; s < S; ++s) {
          combine_tensor.f32[((g * S + s) * E + e) * C + c] =
              (s == token ? 1.0f : 0.0f) * top_k.expert_gate_probs->f32[at];
        }
      }
    }
  }
  if (train) {
    // total_routed = reduce_sum(cast(greater(combine_tensor, 0.0))); fraction_routed = total_routed /
    // reduce_sum(importance). A -1e9 weight (C > S) is not counted.
    int64_t total_routed = 0;
    for (float weight : combine_tensor.f32) total_routed += weight > 0.0f ? 1 : 0;
    mtf_fraction_routed(f, total_routed, {combine_tensor}, *importance);
  }
  // dispatch_tensor = mtf.cast(mtf.cast(combine_tensor, tf.bool), combine_tensor.dtype):
  // an unfilled slot (a zero-gate token) is not dispatched; a -1e9 weight is.
  const Tensor& dispatch_tensor =
      f.step("dispatch_tensor", {combine_tensor}, ops::dispatch_from_combine(combine_tensor));  // [G, S, E, C]
  return {&dispatch_tensor, &combine_tensor, loss};
}

void mtf_switch_max(Frame& f, const MtfSwitchMaxHparams& hp) {
  mtf_moe_layer(f, hp, [&](const MtfGatingInputs& in) { return switch_max_gating(f, in, hp); });
}

// The decisions a backend may make the other way at a near tie: expert_index (as
// _switch_gating), and which tokens an expert keeps, in which slot
// (expert_gate_indices, ranked by expert_masked_probs).
std::optional<NearTie> mtf_switch_max_near_tie(const NearTieQuery& query, const MtfSwitchMaxHparams& hp) {
  if (query.step == "expert_gate_indices") return mtf_ranked_near_tie(query, "expert_masked_probs", true);
  return mtf_switch_expert_index_near_tie(query, hp);
}

}  // namespace

VariantSpec mtf_switch_max_variant() {
  VariantSpec spec = define_variant<MtfSwitchMaxHparams>(
      {"mtf_switch_max", "Mesh TensorFlow top-1 MoE layer in which each expert keeps its C most confident tokens",
       "tensorflow/mesh mesh_tensorflow/transformer/moe.py: transformer_moe_layer_v1, _switch_max_gating",
       "spec/variants/mtf_switch_max.md"},
      declare_hparams, mtf_switch_max, mtf_switch_max_near_tie);
  // transformer_moe_layer_v1 keeps its groups apart from the gating to the outputs:
  // shards by group merge exactly (spec/sharding.md).
  spec.group_shards = true;
  return spec;
}

}  // namespace moeref
