// flaxformer_experts_choose: flaxformer's experts-choose router in MoeLayer, literal to the
// source.
//
// Source: google/flaxformer at 399ea3a (399ea3a85e9807ada653fd0de1a9de627eb0acde),
//   flaxformer/architectures/moe/routing.py: ExpertsChooseMaskedRouter
//     ._compute_routing_instructions, _top_k; Router.__call__ and the layer (MoeLayer.__call__,
//     grouping, capacity, experts, metrics) are in layers/flaxformer_moe_layer.hpp.
// Spec: spec/variants/flaxformer_experts_choose.md.
//
// Dims: B batch, L length, G groups, S group size (tokens_per_group), E experts, C expert
//       capacity (the number of tokens each expert takes), M model dim, H expert hidden dim,
//       N = M.
//
// Each expert takes its C most probable tokens of the group (Expert Choice routing): a token
// may go to several experts or to none. There is no load-balancing loss.

#include <optional>
#include <string>

#include "moeref/error.hpp"
#include "moeref/frame/define_variant.hpp"
#include "moeref/layers/flaxformer_moe_layer.hpp"
#include "moeref/ops/top_k.hpp"

namespace moeref {

namespace {

struct FlaxformerExpertsChooseHparams : FlaxformerLayerHparams {};

void declare_hparams(HparamTable<FlaxformerExpertsChooseHparams>& table) {
  // experts_choose_base.gin: TRAIN_EXPERT_CAPACITY_FACTOR = EVAL_EXPERT_CAPACITY_FACTOR = 1.0;
  // the router's dtype is MOE_TRUNCATED_DTYPE (bfloat16).
  declare_flaxformer_layer_hparams(table, 1.0, 1.0, "bfloat16");
}

// ExpertsChooseMaskedRouter._compute_routing_instructions(router_probs, padding_mask, expert_capacity)
FlaxformerRouting experts_choose_router(Frame& f, const FlaxformerExpertsChooseHparams& hp, const Tensor& router_probs,
                                        const Tensor* padding_mask) {
  const int64_t G = f.dim("G"), S = f.dim("S"), E = f.dim("E"), C = f.dim("C");
  const Tensor* probs = &router_probs;
  if (padding_mask != nullptr) {
    // router_probs *= jnp.expand_dims(padding_mask, axis=-1): padding tokens can still be
    // chosen, with probability 0.
    Tensor& masked = f.float32_step("router_probs_masked", {router_probs, padding_mask}, {"G", "S", "E"});
    for (int64_t i = 0; i < G * S * E; ++i) masked.f32[i] = router_probs.f32[i] * padding_mask->f32[i / E];
    probs = &masked;
  }
  // router_probs_t = jax.vmap(lambda m: m.transpose())(router_probs)
  Tensor& router_probs_t = f.float32_step("router_probs_t", {probs}, {"G", "E", "S"});  // [G, E, S]
  for (int64_t g = 0; g < G; ++g) {
    for (int64_t s = 0; s < S; ++s) {
      for (int64_t e = 0; e < E; ++e) router_probs_t.f32[(g * E + e) * S + s] = probs->f32[(g * S + s) * E + e];
    }
  }
  // expert_gate, expert_index = _top_k(router_probs_t, k=expert_capacity): per expert, its C
  // most probable tokens in descending order (jax.lax.top_k: equal values in token order).
  const Tensor* forced = f.forced_decision("expert_index", {G, E, C});
  Tensor& expert_index = f.int32_step("expert_index", {router_probs_t}, {"G", "E", "C"});  // [G, E, C]
  Tensor& expert_gate = f.float32_step("expert_gate", {router_probs_t, expert_index}, {"G", "E", "C"});
  for (int64_t r = 0; r < G * E; ++r) {
    ops::tf_top_k_indices(router_probs_t.f32.data() + r * S, S, C, expert_index.i32.data() + r * C);
    for (int64_t c = 0; c < C; ++c) {
      int32_t& token = expert_index.i32[static_cast<size_t>(r * C + c)];
      const int32_t forced_token = forced != nullptr ? forced->i32[static_cast<size_t>(r * C + c)] : -1;
      if (forced_token >= 0 && forced_token < S) token = forced_token;
      expert_gate.f32[static_cast<size_t>(r * C + c)] = router_probs_t.f32[static_cast<size_t>(r * S + token)];
    }
  }
  // dispatch_mask = jax.nn.one_hot(expert_index, tokens_per_group, dtype=int32), then
  // jnp.moveaxis(dispatch_mask, 3, 1): [G, S, E, C].
  Tensor& dispatch = f.int32_step("dispatch_mask", {expert_index}, {"G", "S", "E", "C"});  // [G, S, E, C]
  // combine_array = einsum('...ec,...tec->...tec', expert_gate, dispatch_mask)
  Tensor& combine = f.float32_step("combine_array", {expert_gate, dispatch}, {"G", "S", "E", "C"});
  for (int64_t g = 0; g < G; ++g) {
    for (int64_t e = 0; e < E; ++e) {
      for (int64_t c = 0; c < C; ++c) {
        const size_t choice = static_cast<size_t>((g * E + e) * C + c);
        const size_t at = static_cast<size_t>(((g * S + expert_index.i32[choice]) * E + e) * C + c);
        dispatch.i32[at] = 1;
        combine.f32[at] = expert_gate.f32[choice];
      }
    }
  }
  FlaxformerRouting out;
  out.dispatch_tensor = &dispatch;
  // combine_array = jax.lax.convert_element_type(combine_array, self.dtype)
  out.combine_tensor = &convert_to_router_dtype(f, "combine_array", combine, hp.dtype);
  // auxiliary_loss = 0.0: each expert fills its buffer, no load balancing is needed.
  out.auxiliary_loss = 0.0f;
  out.experts_choose = true;
  return out;
}

void flaxformer_experts_choose(Frame& f, const FlaxformerExpertsChooseHparams& hp) {
  resolve_flaxformer_layer_dims(f, hp);
  // jax.lax.top_k(router_probs_t, k=expert_capacity) needs k <= tokens_per_group.
  if (f.dim("C") > f.dim("S")) {
    fail_input("dims.C", std::to_string(f.dim("C")),
               "at most S = " + std::to_string(f.dim("S")) +
                   " (each expert takes its C most probable tokens: jax.lax.top_k needs k <= tokens_per_group); "
                   "lower the capacity factor or min_expert_capacity");
  }
  flaxformer_moe_layer(f, hp, [&](const Tensor& probs, const Tensor* padding_mask) {
    return experts_choose_router(f, hp, probs, padding_mask);
  });
}

// Which tokens an expert takes is a top-C choice over its tokens' probabilities: at a near
// tie, another backend can take another token.
std::optional<NearTie> flaxformer_experts_choose_near_tie(const NearTieQuery& query,
                                                          const FlaxformerExpertsChooseHparams&) {
  if (query.step != "expert_index") return std::nullopt;
  return ranked_choice_near_tie(query, "router_probs_t", false);
}

}  // namespace

VariantSpec flaxformer_experts_choose_variant() {
  return define_variant<FlaxformerExpertsChooseHparams>(
      {"flaxformer_experts_choose", "flaxformer experts-choose router (each expert takes its top C tokens) in MoeLayer",
       "google/flaxformer flaxformer/architectures/moe/routing.py: ExpertsChooseMaskedRouter; moe_layers.py: "
       "MoeLayer",
       "spec/variants/flaxformer_experts_choose.md"},
      declare_hparams, flaxformer_experts_choose, flaxformer_experts_choose_near_tie);
}

}  // namespace moeref
