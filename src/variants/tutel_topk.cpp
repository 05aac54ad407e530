// tutel_topk: Tutel's top-k routing (extract_critical) in its MOELayer, literal to the source.
//
// Source: microsoft/tutel at 82af7aa (82af7aad9fc3ec981395ba97e7242a480984a55e),
//   tutel/impls/fast_dispatch.py: extract_critical (the routing), compute_sorted_location,
//     fast_encode / fast_decode (layers/tutel_moe_layer.hpp);
//   tutel/impls/losses.py: gshard_loss, load_importance_loss;
//   tutel/impls/moe_layer.py: MOELayer.forward (routing(), the layer);
//   tutel/gates/top.py: LinearTopKGate.
// Spec: spec/variants/tutel_topk.md.
//
// Dims: G = 1 group, S tokens, E experts, K = min(k, E) ranks, C expert capacity,
//       M model dim, H expert hidden dim, N = M.
//
// Each step is one statement (or a few) of extract_critical, in its order, under its
// variable name; the per-rank lists (indices_s, masks_se, gates_s, locations_s) are
// recorded one rank at a time under the list's name and the rank ("gates_s_1"). The
// token's top-k selection is recorded as the 0/1 "topk_mask" before "topk_indices":
// torch.topk leaves the choice among equal scores unspecified.

#include <algorithm>
#include <cmath>
#include <optional>
#include <string>
#include <vector>

#include "moeref/error.hpp"
#include "moeref/frame/define_variant.hpp"
#include "moeref/frame/forced_choice.hpp"
#include "moeref/layers/tutel_moe_layer.hpp"
#include "moeref/ops/deepspeed_gating.hpp"
#include "moeref/ops/fairseq_top2.hpp"
#include "moeref/ops/one_hot.hpp"
#include "moeref/ops/torch_routing.hpp"
#include "moeref/ops/torch_softmax.hpp"
#include "moeref/ops/tutel_losses.hpp"

namespace moeref {

namespace {

// MOELayer's and LinearTopKGate's arguments, and extract_critical's own.
struct TutelTopkHparams : TutelLayerHparams {
  int64_t k = 1;
  double capacity_factor = 0.0;
  bool batch_prioritized_routing = false;
  bool normalize_gate = true;
  bool is_gshard_loss = true;
};

void declare_hparams(HparamTable<TutelTopkHparams>& table) {
  using P = TutelTopkHparams;
  const char* extract = "fast_dispatch.py: extract_critical";
  table.integer("k", &P::k)
      .defaults_to(1)
      .between(1, kMaxHparamExtent)
      .means("Experts per token (gate_type {'type': 'top', 'k': k}); LinearTopKGate uses min(E, k).")
      .cites("gates/top.py: LinearTopKGate")
      .about("top_k");
  table.number("capacity_factor", &P::capacity_factor)
      .defaults_to(1.0)
      .means(
          "> 0: C = k * int(cf * ceil(S / E)); 0: C = the largest expert count (nothing dropped); < 0: that, capped "
          "at k * int(-cf * ceil(S / E)).")
      .cites(extract)
      .about("capacity_factor");
  table.flag("batch_prioritized_routing", &P::batch_prioritized_routing)
      .defaults_to(false)
      .means("Slots are taken in descending order of the token's top score instead of token order.")
      .cites(extract)
      .about("slot_priority");
  table.flag("normalize_gate", &P::normalize_gate)
      .defaults_to(true)
      .means("With k > 1, the k gates are divided by their sum, before any drop.")
      .cites(extract)
      .about("gate_renormalization");
  table.flag("is_gshard_loss", &P::is_gshard_loss)
      .defaults_to(true)
      .means("True: GShard's loss on the noisy scores; false: the importance + load loss (needs gate_noise > 0).")
      .cites("moe_layer.py: MOELayer.forward; losses.py")
      .about("balance_loss_coef");
  declare_tutel_layer_hparams(table);
}

std::string ranked(const char* name, int64_t k) { return std::string(name) + "_" + std::to_string(k); }

// extract_critical(scores, top_k, loss_fn, capacity_factor, batch_prioritized_routing, normalize_gate, ...).
TutelCritical extract_critical(Frame& f, const TutelTopkHparams& hp, const TutelRouting& routing) {
  const Tensor& scores = *routing.scores;
  const int64_t G = f.dim("G"), S = f.dim("S"), E = f.dim("E");
  // top_k = min(top_k, num_global_experts); topk_indices = torch.topk(scores, top_k, dim=1).indices
  const int64_t K = std::min(hp.k, E);
  const Tensor& topk_mask = f.step("topk_mask", {scores},
                                   with_forced_keep(ops::torch_topk_over_e_mask(scores, K),
                                                    f.forced_decision("topk_mask", {G, S, E})));  // [G, S, E]
  const Tensor& topk_indices =
      f.step("topk_indices", {topk_mask, scores}, ops::topk_indices_of_mask(topk_mask, scores, K));  // [G, S, K]

  // indices_s = topk_indices.chunk(top_k, dim=1); masks_se = one_hot(indices_s); gates_s = (scores *
  // masks_se).sum(dim=1)
  std::vector<const Tensor*> indices_s, masks_se, gates_s, locations_s;
  for (int64_t k = 0; k < K; ++k) {
    Tensor column = Tensor::int32({"G", "S"}, {G, S});
    for (int64_t t = 0; t < G * S; ++t)
      column.i32[static_cast<size_t>(t)] = topk_indices.i32[static_cast<size_t>(t * K + k)];
    indices_s.push_back(&f.step(ranked("indices_s", k), {topk_indices}, std::move(column)));
    masks_se.push_back(&f.step(ranked("masks_se", k), {indices_s.back()}, ops::one_hot(*indices_s.back(), E, "E")));
    gates_s.push_back(
        &f.step(ranked("gates_s", k), {scores, masks_se.back()}, ops::gate_of_mask(scores, *masks_se.back())));
  }
  // l_loss = loss_fn(scores, topk_indices)
  float l_aux = 0.0f;
  if (hp.is_gshard_loss) {
    l_aux = ops::tutel_gshard_loss(scores, *indices_s[0]);
  } else {
    // load_importance_loss(F.softmax(logits), logits_w_noise.gather(index=topk_ids, dim=1), E, gate_noise):
    // the threshold is the noisy logit of the last rank.
    if (!(hp.gate_noise > 0.0)) {
      fail_input("hparams.gate_noise", std::to_string(hp.gate_noise),
                 "a number > 0 with is_gshard_loss false (load_importance_loss asserts gate_noise > 0)");
    }
    Tensor& scores_wo_noise = f.float32_step("scores_wo_noise", {routing.logits}, {"G", "S", "E"});
    ops::torch_softmax(routing.logits->f32.data(), scores_wo_noise.f32.data(), G * S, E);
    Tensor& threshold = f.float32_step("threshold", {routing.logits_w_noise, indices_s[K - 1]}, {"G", "S"});
    for (int64_t t = 0; t < G * S; ++t) {
      const int32_t e = indices_s[static_cast<size_t>(K - 1)]->i32[static_cast<size_t>(t)];
      threshold.f32[static_cast<size_t>(t)] = routing.logits_w_noise->f32[static_cast<size_t>(t * E + e)];
    }
    l_aux = ops::tutel_load_importance_loss(scores_wo_noise, threshold, hp.gate_noise);
  }
  f.loss("l_aux", l_aux);

  // importance_scores = -1 * scores.max(dim=1)[0] (batch_prioritized_routing): compute_sorted_location,
  // else fast_cumsum_sub_one. locations1 = compute_location(masks_se[0]); locations_s = [sum(locations1 * masks_se[0])]
  const Tensor* importance_scores = hp.batch_prioritized_routing
                                        ? &f.step("importance_scores", {scores}, ops::bpr_importance_scores(scores))
                                        : nullptr;
  const Tensor* acc_base = nullptr;
  const Tensor* locations2 = nullptr;
  for (int64_t k = 0; k < K; ++k) {
    const Tensor& mask = *masks_se[static_cast<size_t>(k)];
    Tensor located = ops::rank_locations(mask, importance_scores);
    if (k > 0) {
      // acc_base = acc_base + torch.sum(masks_se[k - 1], dim=0, keepdim=True); locations2 += acc_base
      Tensor acc = acc_base ? *acc_base : Tensor::int32({"G", "E"}, {G, E});
      const Tensor& previous = *masks_se[static_cast<size_t>(k - 1)];
      for (int64_t i = 0; i < G * S * E; ++i)
        acc.i32[static_cast<size_t>(i % E)] += previous.i32[static_cast<size_t>(i)];
      acc_base = &f.step(ranked("acc_base", k), {acc_base, &previous}, std::move(acc));
      for (int64_t i = 0; i < G * S * E; ++i)
        located.i32[static_cast<size_t>(i)] += acc_base->i32[static_cast<size_t>(i % E)];
    }
    locations2 = &f.step(ranked("locations", k), {&mask, importance_scores, acc_base}, std::move(located));
    locations_s.push_back(
        &f.step(ranked("locations_s", k), {locations2, &mask}, ops::location_of_mask(*locations2, mask)));
  }
  if (K > 1 && hp.normalize_gate) {
    // denom_s = torch.clamp(sum(gates_s), min=eps); gates_s = [x / denom_s for x in gates_s]
    Tensor denom = Tensor::float32({"G", "S"}, {G, S});
    for (size_t t = 0; t < denom.f32.size(); ++t) {
      float sum = 0.0f;  // Python's sum(): 0 + g_0 + g_1 + ...
      for (const Tensor* gate : gates_s) sum = sum + gate->f32[t];
      denom.f32[t] = ops::torch_clamp_eps(sum);
    }
    Reads reads(gates_s.begin(), gates_s.end());
    const Tensor& denom_s = f.step("denom_s", reads, std::move(denom));
    for (int64_t k = 0; k < K; ++k) {
      Tensor normalized = *gates_s[static_cast<size_t>(k)];
      for (size_t t = 0; t < normalized.f32.size(); ++t) normalized.f32[t] = normalized.f32[t] / denom_s.f32[t];
      gates_s[static_cast<size_t>(k)] = &f.step(ranked("gates_s", k) + "_normalized",
                                                {gates_s[static_cast<size_t>(k)], denom_s}, std::move(normalized));
    }
  }
  // locations2 = locations2[-1] + 1: the last token's row (with BPR, not the largest location).
  Tensor count = Tensor::int32({"E"}, {E});
  for (int64_t e = 0; e < E; ++e)
    count.i32[static_cast<size_t>(e)] = locations2->i32[static_cast<size_t>((S - 1) * E + e)] + 1;
  const Tensor& dispatch_count = f.step("dispatch_count", {locations2}, std::move(count));  // [E]

  // samples_per_expert = ceil(S / E); capacity = top_k * int(cf * samples_per_expert) when cf > 0, else
  // locations2.max() (capped at top_k * int(-cf * samples_per_expert) when cf < 0); alignment 1.
  const int64_t samples_per_expert = (S + E - 1) / E;
  int64_t capacity = 0;
  if (hp.capacity_factor > 0.0) {
    capacity = K * static_cast<int64_t>(hp.capacity_factor * static_cast<double>(samples_per_expert));
  } else {
    capacity = *std::max_element(dispatch_count.i32.begin(), dispatch_count.i32.end());
    if (hp.capacity_factor < 0.0) {
      capacity =
          std::min(capacity, K * static_cast<int64_t>(-hp.capacity_factor * static_cast<double>(samples_per_expert)));
    }
  }
  f.derived_dim("C", capacity, "the extract_critical capacity rule");
  f.capacity({{"expert_capacity", capacity},
              {"rule", hp.capacity_factor > 0.0 ? "tutel: k * int(capacity_factor * ceil(S / E))"
                       : hp.capacity_factor == 0.0
                           ? "tutel capacity_factor 0: max(dispatch_count)"
                           : "tutel capacity_factor < 0: min(max(dispatch_count), k * int(-cf * ceil(S / E)))"},
              {"capacity_factor", hp.capacity_factor},
              {"k", K},
              {"num_tokens", S}});

  // The routing in index form: fast_encode skips a rank's token when location >= capacity.
  Tensor slot = Tensor::int32({"G", "S", "K"}, {G, S, K});
  Tensor weight = Tensor::float32({"G", "S", "K"}, {G, S, K});
  Reads slot_reads, weight_reads;
  for (int64_t k = 0; k < K; ++k) {
    const size_t r = static_cast<size_t>(k);
    slot_reads.push_back(locations_s[r]);
    weight_reads.insert(weight_reads.end(), {locations_s[r], gates_s[r]});
    for (int64_t t = 0; t < G * S; ++t) {
      const int32_t location = locations_s[r]->i32[static_cast<size_t>(t)];
      slot.i32[static_cast<size_t>(t * K + k)] = location < capacity ? location : -1;
      weight.f32[static_cast<size_t>(t * K + k)] = location < capacity ? gates_s[r]->f32[static_cast<size_t>(t)] : 0.0f;
    }
  }
  Tensor expert = topk_indices;
  f.step("routing_expert", {topk_indices}, std::move(expert));
  f.step("routing_slot", slot_reads, std::move(slot));
  f.step("routing_weight", weight_reads, std::move(weight));
  return {indices_s, locations_s, gates_s, capacity};
}

void tutel_topk(Frame& f, const TutelTopkHparams& hp) {
  tutel_moe_layer(f, hp, [&](const TutelRouting& routing) { return extract_critical(f, hp, routing); });
}

// The one decision a backend may take the other way at a near tie: each token's top-k over the scores.
std::optional<NearTie> tutel_topk_near_tie(const NearTieQuery& query, const TutelTopkHparams&) {
  if (query.step == "topk_mask") return top_k_selection_near_tie(query, "scores");
  return std::nullopt;
}

}  // namespace

VariantSpec tutel_topk_variant() {
  return define_variant<TutelTopkHparams>(
      {"tutel_topk", "Tutel top-k routing (extract_critical): capacity factor > 0, 0 (dynamic) or < 0 (capped), BPR",
       "microsoft/tutel tutel/impls/fast_dispatch.py: extract_critical; tutel/impls/moe_layer.py: MOELayer",
       "spec/variants/tutel_topk.md"},
      declare_hparams, tutel_topk, tutel_topk_near_tie);
}

}  // namespace moeref
