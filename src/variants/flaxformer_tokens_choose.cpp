// flaxformer_tokens_choose: flaxformer's tokens-choose top-k routers in MoeLayer, literal to
// the source.
//
// Source: google/flaxformer at 399ea3a (399ea3a85e9807ada653fd0de1a9de627eb0acde),
//   flaxformer/architectures/moe/routing.py: TokensChooseMaskedRouter and
//     TokensChooseScatterRouter ._compute_routing_instructions (the hparam `router` picks
//     one), _top_k, _load_balancing_loss; Router.__call__ and the layer (MoeLayer.__call__,
//     grouping, capacity, experts, metrics) are in layers/flaxformer_moe_layer.hpp.
// Spec: spec/variants/flaxformer_tokens_choose.md.
//
// Dims: B batch, L length, G groups (num_groups), S group size (tokens_per_group),
//       E experts, C expert capacity, M model dim, H expert hidden dim, N = M,
//       K = num_selected_experts.
//
// Each step is one statement (or a few) of _compute_routing_instructions, in the source's
// order, under the source's variable name; a reassigned variable gets a suffix naming the
// stage. Indices, priorities and masks are exact integers (the source holds token_priority
// as float32, from `... - 1.0`); moeref stores them as int32.

#include <algorithm>
#include <numeric>
#include <optional>
#include <string>
#include <vector>

#include "moeref/error.hpp"
#include "moeref/frame/define_variant.hpp"
#include "moeref/layers/flaxformer_moe_layer.hpp"
#include "moeref/ops/top_k.hpp"

namespace moeref {

namespace {

struct FlaxformerTokensChooseHparams : FlaxformerLayerHparams {
  std::string router;
  int64_t num_selected_experts = 0;
  bool batch_prioritized_routing = false;
};

void declare_hparams(HparamTable<FlaxformerTokensChooseHparams>& table) {
  using P = FlaxformerTokensChooseHparams;
  const char* routing = "routing.py: TokensChooseMaskedRouter, TokensChooseScatterRouter";
  table.choice("router", &P::router, {"TokensChooseMaskedRouter", "TokensChooseScatterRouter"})
      .defaults_to("TokensChooseMaskedRouter")
      .means("The router class: masked matmuls (dispatch_mask, combine_array) or scatter/gather indices.")
      .cites(routing)
      .about("gating_function");
  table.integer("num_selected_experts", &P::num_selected_experts)
      .defaults_to(2)
      .between(1, kMaxHparamExtent)
      .means("K: experts per token (1 is the Switch router); jax.lax.top_k needs K <= E.")
      .cites(routing)
      .about("top_k");
  table.flag("batch_prioritized_routing", &P::batch_prioritized_routing)
      .defaults_to(true)
      .means("Tokens claim slots in descending order of their top-1 probability (stable argsort).")
      .cites(routing)
      .about("slot_priority");
  declare_flaxformer_layer_hparams(table, 1.25, 2.0, "float32");
}

// _top_k(router_probs, k) = jax.lax.top_k: the k largest in descending order, equal values in
// ascending index order (XLA's TopK is stable; ops::tf_top_k_indices has that rule). Records the
// index step first (the decision), then the values.
std::pair<const Tensor*, const Tensor*> top_k(Frame& f, const Tensor& probs, const char* index_name,
                                              const char* value_name) {
  const int64_t G = f.dim("G"), S = f.dim("S"), E = f.dim("E"), K = f.dim("K");
  const Tensor* forced = f.forced_decision(index_name, {G, S, K});
  Tensor& index = f.int32_step(index_name, {probs}, {"G", "S", "K"});  // [G, S, K]
  Tensor& value = f.float32_step(value_name, {probs, index}, {"G", "S", "K"});
  for (int64_t t = 0; t < G * S; ++t) {
    ops::tf_top_k_indices(probs.f32.data() + t * E, E, K, index.i32.data() + t * K);
    for (int64_t k = 0; k < K; ++k) {
      int32_t& chosen = index.i32[static_cast<size_t>(t * K + k)];
      if (forced != nullptr && forced->i32[static_cast<size_t>(t * K + k)] >= 0) {
        chosen = std::min<int32_t>(forced->i32[static_cast<size_t>(t * K + k)], static_cast<int32_t>(E - 1));
      }
      value.f32[static_cast<size_t>(t * K + k)] = probs.f32[static_cast<size_t>(t * E + chosen)];
    }
  }
  return {&index, &value};
}

// _load_balancing_loss(router_probs, expert_indices): expert_mask = max over k of
// one_hot(expert_indices) (a negative index is no expert); tokens_per_group_and_expert =
// jnp.mean(expert_mask, dtype=float32, axis=-2); router_prob_per_group_and_expert =
// jnp.mean(router_probs, dtype=float32, axis=-2); jnp.mean(product) * num_experts ** 2.
// jnp.mean is sum / f32(count).
float load_balancing_loss(Frame& f, const Tensor& probs, const Tensor& indices) {
  const int64_t G = f.dim("G"), S = f.dim("S"), E = f.dim("E"), K = f.dim("K");
  Tensor& tokens = f.float32_step("tokens_per_group_and_expert", {indices}, {"G", "E"});   // [G, E]
  Tensor& prob = f.float32_step("router_prob_per_group_and_expert", {probs}, {"G", "E"});  // [G, E]
  for (int64_t g = 0; g < G; ++g) {
    for (int64_t e = 0; e < E; ++e) {
      double count = 0.0, sum = 0.0;
      for (int64_t s = 0; s < S; ++s) {
        bool chosen = false;
        for (int64_t k = 0; k < K; ++k) chosen = chosen || indices.i32[static_cast<size_t>((g * S + s) * K + k)] == e;
        count += chosen ? 1.0 : 0.0;
        sum += static_cast<double>(probs.f32[static_cast<size_t>((g * S + s) * E + e)]);
      }
      tokens.f32[g * E + e] = static_cast<float>(count) / static_cast<float>(S);
      prob.f32[g * E + e] = static_cast<float>(sum) / static_cast<float>(S);
    }
  }
  double products = 0.0;
  for (int64_t i = 0; i < G * E; ++i) products += static_cast<double>(tokens.f32[i] * prob.f32[i]);
  const float loss = (static_cast<float>(products) / static_cast<float>(G * E)) * static_cast<float>(E * E);
  f.scalar_step("auxiliary_loss", {tokens, prob}, loss);
  return loss;
}

// argsort(-gate[..., 0], axis=-1): stable, so equal probabilities keep token order.
const Tensor& token_order(Frame& f, const char* name, const Tensor& gate) {
  const int64_t G = f.dim("G"), S = f.dim("S"), K = f.dim("K");
  Tensor& order = f.int32_step(name, {gate}, {"G", "S"});  // [G, S]
  for (int64_t g = 0; g < G; ++g) {
    int32_t* row = order.i32.data() + g * S;
    std::iota(row, row + S, 0);
    std::stable_sort(row, row + S, [&](int32_t a, int32_t b) {
      return -gate.f32[static_cast<size_t>((g * S + a) * K)] < -gate.f32[static_cast<size_t>((g * S + b) * K)];
    });
  }
  return order;
}

// The priority queue shared by both routers: experts [G, S, K] (already permuted when BPR),
// swapped to [G, K, S], flattened to K*S, one_hot over E, cumsum over K*S times the mask,
// minus 1: k-major, so every top-1 choice comes before any top-2 choice. Returns
// token_priority [G, S, K, E] (-1 where not chosen).
std::vector<int32_t> k_major_priority(const Frame& f, const Tensor& experts, const Tensor* order) {
  const int64_t G = f.dim("G"), S = f.dim("S"), E = f.dim("E"), K = f.dim("K");
  std::vector<int32_t> priority(static_cast<size_t>(G * S * K * E), -1);
  for (int64_t g = 0; g < G; ++g) {
    std::vector<int32_t> count(static_cast<size_t>(E), 0);
    for (int64_t k = 0; k < K; ++k) {
      for (int64_t s = 0; s < S; ++s) {
        // take_along_axis(expert_index, permutation): position s holds token order[s].
        const int64_t token = order != nullptr ? order->i32[static_cast<size_t>(g * S + s)] : s;
        const int32_t e = experts.i32[static_cast<size_t>((g * S + token) * K + k)];
        if (e < 0 || e >= E) continue;  // one_hot of a negative index is all zero
        priority[static_cast<size_t>(((g * S + token) * K + k) * E + e)] = count[static_cast<size_t>(e)]++;
      }
    }
  }
  return priority;
}

FlaxformerRouting masked_router(Frame& f, const FlaxformerTokensChooseHparams& hp, const Tensor& router_probs,
                                const Tensor* padding_mask) {
  const int64_t G = f.dim("G"), S = f.dim("S"), E = f.dim("E"), C = f.dim("C"), K = f.dim("K");
  // expert_gate, expert_index = _top_k(router_probs, k=num_selected_experts)
  auto [expert_index, expert_gate] = top_k(f, router_probs, "expert_index", "expert_gate");
  const Tensor* probs = &router_probs;
  if (padding_mask != nullptr) {
    // expert_gate *= gate_mask; expert_index *= 2 * gate_mask - 1.; expert_index += repeat(gate_mask - 1.):
    // padding tokens get index -index - 1 (negative, dropped by one_hot); router_probs *= gate_mask.
    Tensor& gate = f.float32_step("expert_gate_masked", {expert_gate, padding_mask}, {"G", "S", "K"});
    Tensor& index = f.int32_step("expert_index_masked", {expert_index, padding_mask}, {"G", "S", "K"});
    for (int64_t i = 0; i < G * S * K; ++i) {
      const float mask = padding_mask->f32[i / K];
      gate.f32[i] = expert_gate->f32[i] * mask;
      index.i32[i] =
          static_cast<int32_t>(static_cast<float>(expert_index->i32[i]) * (2.0f * mask - 1.0f) + (mask - 1.0f));
    }
    Tensor& masked = f.float32_step("router_probs_masked", {router_probs, padding_mask}, {"G", "S", "E"});
    for (int64_t i = 0; i < G * S * E; ++i) masked.f32[i] = router_probs.f32[i] * padding_mask->f32[i / E];
    expert_gate = &gate;
    expert_index = &index;
    probs = &masked;
  }
  FlaxformerRouting out;
  out.auxiliary_loss = load_balancing_loss(f, *probs, *expert_index);
  // permutation = jnp.argsort(-expert_gate[..., 0]); expert_index = _take_along_axis(...)
  const Tensor* permutation = hp.batch_prioritized_routing ? &token_order(f, "permutation", *expert_gate) : nullptr;
  // token_priority = cumsum(expert_mask, axis=1) * expert_mask - 1.0, reshaped, max over k,
  // then back in token order (inv_permutation = argsort(permutation)).
  const std::vector<int32_t> per_choice = k_major_priority(f, *expert_index, permutation);
  Tensor& token_priority = f.int32_step("token_priority", {expert_index, permutation}, {"G", "S", "E"});
  for (int64_t t = 0; t < G * S; ++t) {
    for (int64_t e = 0; e < E; ++e) {
      int32_t best = -1;
      for (int64_t k = 0; k < K; ++k) best = std::max(best, per_choice[static_cast<size_t>((t * K + k) * E + e)]);
      token_priority.i32[static_cast<size_t>(t * E + e)] = best;
    }
  }
  // dispatch_mask = jax.nn.one_hot(token_priority, expert_capacity, dtype=bool): -1 and >= C drop.
  Tensor& dispatch = f.int32_step("dispatch_mask", {token_priority}, {"G", "S", "E", "C"});  // [G, S, E, C]
  for (int64_t i = 0; i < G * S * E; ++i) {
    const int32_t p = token_priority.i32[i];
    if (p >= 0 && p < C) dispatch.i32[static_cast<size_t>(i * C + p)] = 1;
  }
  // combine_array = einsum('...te,...tec->...tec', router_probs, dispatch_mask): the raw
  // probabilities, never renormalised; then convert_element_type(combine_array, dtype=float32).
  Tensor& combine = f.float32_step("combine_array", {probs, dispatch}, {"G", "S", "E", "C"});  // [G, S, E, C]
  for (size_t i = 0; i < combine.f32.size(); ++i) {
    combine.f32[i] = probs->f32[i / static_cast<size_t>(C)] * static_cast<float>(dispatch.i32[i]);
  }
  out.dispatch_tensor = &dispatch;
  out.combine_tensor = &convert_to_router_dtype(f, "combine_array", combine, hp.dtype);
  return out;
}

FlaxformerRouting scatter_router(Frame& f, const FlaxformerTokensChooseHparams& hp, const Tensor& router_probs,
                                 const Tensor* padding_mask) {
  const int64_t G = f.dim("G"), S = f.dim("S"), E = f.dim("E"), C = f.dim("C"), K = f.dim("K");
  const Tensor* probs = &router_probs;
  if (padding_mask != nullptr) {
    // router_probs *= padding_mask[..., None] BEFORE top_k: padding tokens still choose experts.
    Tensor& masked = f.float32_step("router_probs_masked", {router_probs, padding_mask}, {"G", "S", "E"});
    for (int64_t i = 0; i < G * S * E; ++i) masked.f32[i] = router_probs.f32[i] * padding_mask->f32[i / E];
    probs = &masked;
  }
  // combine_weights, expert_indices = _top_k(router_probs, k=num_selected_experts)
  auto [expert_indices, combine_weights] = top_k(f, *probs, "expert_indices", "combine_weights");
  FlaxformerRouting out;
  out.auxiliary_loss = load_balancing_loss(f, *probs, *expert_indices);
  const Tensor* token_ordering =
      hp.batch_prioritized_routing ? &token_order(f, "token_ordering", *combine_weights) : nullptr;
  // token_priority = max over experts of the k-major priority: [G, S, K]; preferred_experts and
  // token_priority back in token order (inverse_token_ordering).
  const std::vector<int32_t> per_choice = k_major_priority(f, *expert_indices, token_ordering);
  Tensor& token_priority = f.int32_step("token_priority", {expert_indices, token_ordering}, {"G", "S", "K"});
  for (int64_t i = 0; i < G * S * K; ++i) {
    int32_t best = -1;
    for (int64_t e = 0; e < E; ++e) best = std::max(best, per_choice[static_cast<size_t>(i * E + e)]);
    token_priority.i32[i] = best;
  }
  // combine_weights *= token_priority < expert_capacity (not renormalised)
  Tensor& weights = f.float32_step("combine_weights_capacity", {combine_weights, token_priority}, {"G", "S", "K"});
  for (int64_t i = 0; i < G * S * K; ++i) {
    weights.f32[i] = combine_weights->f32[i] * (token_priority.i32[i] < C ? 1.0f : 0.0f);
  }
  // combine_weights = jax.lax.convert_element_type(combine_weights, self.dtype)
  const Tensor& converted = convert_to_router_dtype(f, "combine_weights_capacity", weights, hp.dtype);
  // MoeLayer._scatter_to_experts: successfully_routed = (expert < E) & (priority < C).
  Tensor& routed = f.int32_step("successfully_routed", {expert_indices, token_priority}, {"G", "S", "K"});
  for (int64_t i = 0; i < G * S * K; ++i) routed.i32[i] = token_priority.i32[i] < C ? 1 : 0;
  // The scatter (scatter_nd of the routed inputs into [G, E, C, M]) and the gather-and-weight
  // combine, as the dense tensors the expert layer reads: (expert, slot) of every routed choice,
  // weighted by combine_weights.
  Tensor& dispatch = f.int32_step("dispatch_mask", {expert_indices, routed}, {"G", "S", "E", "C"});
  Tensor& combine = f.float32_step("combine_array", {expert_indices, token_priority, &converted}, {"G", "S", "E", "C"});
  for (int64_t i = 0; i < G * S * K; ++i) {
    if (routed.i32[i] == 0) continue;
    const size_t at = static_cast<size_t>(((i / K) * E + expert_indices->i32[i]) * C + token_priority.i32[i]);
    dispatch.i32[at] = 1;
    combine.f32[at] = converted.f32[i];
  }
  out.dispatch_tensor = &dispatch;
  out.combine_tensor = &combine;
  out.successfully_routed = &routed;
  out.combine_weights = &converted;
  return out;
}

void flaxformer_tokens_choose(Frame& f, const FlaxformerTokensChooseHparams& hp) {
  resolve_flaxformer_layer_dims(f, hp);
  if (hp.num_selected_experts > f.dim("E")) {
    fail_input("hparams.num_selected_experts", std::to_string(hp.num_selected_experts),
               "an integer in [1, E = " + std::to_string(f.dim("E")) + "] (jax.lax.top_k needs k <= num_experts)");
  }
  f.derived_dim("K", hp.num_selected_experts, "num_selected_experts");
  const bool scatter = hp.router == "TokensChooseScatterRouter";
  flaxformer_moe_layer(f, hp, [&](const Tensor& probs, const Tensor* padding_mask) {
    return scatter ? scatter_router(f, hp, probs, padding_mask) : masked_router(f, hp, probs, padding_mask);
  });
}

// The top-k choice is the decision a backend can legitimately make the other way at a near
// tie (equal probabilities: jax.lax.top_k takes the lower index).
std::optional<NearTie> flaxformer_tokens_choose_near_tie(const NearTieQuery& query,
                                                         const FlaxformerTokensChooseHparams& hp) {
  const bool scatter = hp.router == "TokensChooseScatterRouter";
  if (query.step != (scatter ? "expert_indices" : "expert_index")) return std::nullopt;
  const bool masked_first = scatter && query.reference.find_step("router_probs_masked") != nullptr;
  return ranked_choice_near_tie(query, masked_first ? "router_probs_masked" : "router_probs", false);
}

}  // namespace

VariantSpec flaxformer_tokens_choose_variant() {
  return define_variant<FlaxformerTokensChooseHparams>(
      {"flaxformer_tokens_choose",
       "flaxformer tokens-choose top-k routers (masked or scatter) in MoeLayer (k = 1: Switch)",
       "google/flaxformer flaxformer/architectures/moe/routing.py: TokensChooseMaskedRouter, "
       "TokensChooseScatterRouter; moe_layers.py: MoeLayer",
       "spec/variants/flaxformer_tokens_choose.md"},
      declare_hparams, flaxformer_tokens_choose, flaxformer_tokens_choose_near_tie);
}

}  // namespace moeref
