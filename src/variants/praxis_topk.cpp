// praxis_topk: praxis's top-k gating, literal to the source.
//
// Source: google/praxis at feeaff1 (feeaff19915ca9c3de8b372b7427d15c81f0d757),
//   praxis/gshard_utils.py: topk_gating_on_logits (the gating function), cum_sum,
//   _create_over_capacity_ratio_summary. At this commit compute_gating does not call
//   it (TransformerFeedForwardMoe offers top2, expert_choice, expert_choice_v2), so
//   moeref runs it inside the same layer scaffolding as praxis_top2
//   (layers/praxis_moe_layer.hpp: grouping, router einsum, experts, combine).
// Spec: spec/variants/praxis_topk.md.
//
// Dims: B batch, L length, G groups, S group size, E experts, C expert capacity,
//       K = k ranks, M model dim, H expert hidden dim, N = M.
//
// Each step is one statement (or a few) of topk_gating_on_logits, in its order, under
// its variable name with the rank as the source numbers it (index_1, mask_2, gate_3);
// a reassigned variable gets a suffix naming the stage (mask_2 -> mask_2_nonpadding
// -> mask_2_capacity; gate_2 -> gate_2_normalized -> gate_2_capacity). Masks,
// positions and counts are int32 (mask_dtype=jnp.int32).

#include <cmath>
#include <optional>
#include <string>
#include <vector>

#include "moeref/error.hpp"
#include "moeref/frame/define_variant.hpp"
#include "moeref/frame/forced_choice.hpp"
#include "moeref/frame/routing_index_form.hpp"
#include "moeref/layers/praxis_moe_layer.hpp"
#include "moeref/ops/dispatch_tensor.hpp"
#include "moeref/ops/elementwise.hpp"
#include "moeref/ops/gshard_balance_loss.hpp"
#include "moeref/ops/gshard_gates.hpp"
#include "moeref/ops/gshard_over_capacity.hpp"
#include "moeref/ops/gshard_position_in_expert.hpp"
#include "moeref/ops/jax_softmax.hpp"
#include "moeref/ops/one_hot.hpp"
#include "moeref/ops/praxis_cap_logits.hpp"
#include "moeref/ops/top1.hpp"

namespace moeref {

namespace {

// topk_gating_on_logits's arguments, and the layer's.
struct PraxisTopkHparams : PraxisLayerHparams {
  int64_t k = 2;
  std::optional<int64_t> expert_capacity_dim;
  std::optional<double> capacity_factor;
  double gating_logit_cap = 0.0;
};

void declare_hparams(HparamTable<PraxisTopkHparams>& table) {
  using P = PraxisTopkHparams;
  const char* gating = "gshard_utils.py: topk_gating_on_logits";
  declare_praxis_layer_hparams(table);
  table.integer("k", &P::k)
      .defaults_to(2)
      .between(1, kMaxHparamExtent)
      .means("Experts per token.")
      .cites(gating)
      .about("top_k");
  table.optional_integer("expert_capacity_dim", &P::expert_capacity_dim)
      .defaults_to(0)
      .between(0, kMaxHparamExtent)
      .means("C0: the capacity unless capacity_factor raises it (null fails the source's comparisons).")
      .cites(gating)
      .about("explicit_capacity");
  table.optional_number("capacity_factor", &P::capacity_factor)
      .defaults_to(2.0)
      .at_least(0.0)
      .means("If not None (0.0 included), C0 is raised to roundup4(int(S * capacity_factor / E)) when below it.")
      .cites(gating)
      .known_as({"unadjusted_expert_capacity_factor"})
      .about("capacity_factor");
  table.number("gating_logit_cap", &P::gating_logit_cap)
      .defaults_to(0.0)
      .at_least(0.0)
      .means("If > 0, logits become cap * tanh(logits / cap) before the softmax.")
      .cites(gating)
      .about("logit_cap");
}

std::string name(const char* stem, int64_t rank, const char* suffix = "") {
  return std::string(stem) + "_" + std::to_string(rank) + suffix;
}

// The argmax of `scores` as the checker forces it.
const Tensor& argmax(Frame& f, const std::string& index_name, const Tensor& scores) {
  const Tensor* forced = f.forced_decision(index_name, {scores.shape[0], scores.shape[1]});
  return f.step(index_name, {scores}, with_forced_top_1(ops::argmax_lowest_index(scores), forced, scores.shape.back()));
}

// topk_gating_on_logits(paddings, logits, experts_dim, expert_capacity_dim, fprop_dtype,
// capacity_factor, mask_dtype=jnp.int32, k, gating_logit_cap).
PraxisGatingOutputs topk_gating_on_logits(Frame& f, const PraxisTopkHparams& hp, const PraxisGatingInputs& in) {
  const int64_t E = f.dim("E"), C = f.dim("C"), K = hp.k;
  const Tensor* paddings = in.paddings;
  // logits = _cap_logits(logits); raw_gates = jax.nn.softmax(logits, axis=-1)
  const Tensor* logits = in.logits;
  if (hp.gating_logit_cap > 0.0) {
    logits =
        &f.step("logits_capped", {logits}, ops::praxis_cap_logits(*logits, static_cast<float>(hp.gating_logit_cap)));
  }
  Tensor& raw_gates = f.float32_step("raw_gates", {logits}, {"G", "S", "E"});  // [G, S, E]
  ops::jax_softmax(logits->f32.data(), raw_gates.f32.data(), f.dim("G") * f.dim("S"), E);

  // index_1 = jnp.argmax(raw_gates); mask_1 = one_hot(index_1); density_1_proxy = raw_gates;
  // with paddings: mask_1 *= nonpaddings.astype(int32) (truncation), density_1_proxy *= nonpaddings.
  std::vector<const Tensor*> index_list, masks_list, gates_list;
  index_list.push_back(&argmax(f, "index_1", raw_gates));
  masks_list.push_back(&f.step("mask_1", {index_list[0]}, ops::one_hot(*index_list[0], E, "E")));
  const Tensor* density_1_proxy = &raw_gates;
  const Tensor* nonpaddings = paddings ? &f.step("nonpaddings", {paddings}, ops::one_minus(*paddings)) : nullptr;
  if (nonpaddings != nullptr) {
    masks_list[0] =
        &f.step("mask_1_nonpadding", {masks_list[0], nonpaddings}, ops::scale_by(*masks_list[0], *nonpaddings));
    density_1_proxy =
        &f.step("density_1_proxy_per_token", {&raw_gates, nonpaddings}, ops::scale_by(raw_gates, *nonpaddings));
  }
  // density_1 = jnp.mean(mask_1.astype(f32), axis=-2); density_1_proxy = jnp.mean(..., axis=-2);
  // aux_loss = jnp.mean(density_1_proxy * density_1) * experts_dim * experts_dim
  const Tensor& density_1 = f.step("density_1", {masks_list[0]}, ops::gshard_density(*masks_list[0], nullptr));
  const Tensor& proxy = f.step("density_1_proxy", {density_1_proxy}, ops::gshard_density(*density_1_proxy, nullptr));
  const float aux_loss = f.scalar_step("aux_loss", {proxy, density_1}, ops::gshard_aux_loss(proxy, density_1)).f32[0];

  // gate_1 = einsum('GSE,GSE->GS', raw_gates, mask_1); denom = gate_1 + 1e-9 if k > 1 else 1.0
  gates_list.push_back(&f.step("gate_1", {&raw_gates, masks_list[0]}, ops::gshard_gate(raw_gates, *masks_list[0])));
  Tensor denom = ops::add(*gates_list[0], 1e-9f);
  if (K == 1) {
    for (float& value : denom.f32) value = 1.0f;  // the Python 1.0
  }
  const Tensor* raw_gates_i = &raw_gates;
  for (int64_t i = 2; i <= K; ++i) {
    // raw_gates_i *= 1.0 - masks_list[i - 1]: the previous choice removed (kept for a padded token).
    raw_gates_i = &f.step(name("raw_gates", i), {raw_gates_i, masks_list.back()},
                          ops::gshard_gates_without_top_1(*raw_gates_i, *masks_list.back()));
    index_list.push_back(&argmax(f, name("index", i), *raw_gates_i));
    const Tensor* mask_i = &f.step(name("mask", i), {index_list.back()}, ops::one_hot(*index_list.back(), E, "E"));
    if (nonpaddings != nullptr) {
      mask_i = &f.step(name("mask", i, "_nonpadding"), {mask_i, nonpaddings}, ops::scale_by(*mask_i, *nonpaddings));
    }
    masks_list.push_back(mask_i);
    gates_list.push_back(&f.step(name("gate", i), {raw_gates_i, mask_i}, ops::gshard_gate(*raw_gates_i, *mask_i)));
    denom = ops::add(denom, *gates_list.back());  // denom += gate_i
  }
  Reads denom_reads(gates_list.begin(), gates_list.end());
  const Tensor& denom_step = f.step("denom", denom_reads, std::move(denom));
  // gates_list = [x / denom for x in gates_list]
  for (int64_t i = 1; i <= K; ++i) {
    const Tensor& gate = *gates_list[static_cast<size_t>(i - 1)];
    gates_list[static_cast<size_t>(i - 1)] =
        &f.step(name("gate", i, "_normalized"), {&gate, denom_step}, ops::divide(gate, denom_step));
  }

  // position_in_expert_i = cum_sum(mask_i, exclusive=True, axis=-2) (+ mask_count_all for i > 1);
  // mask_i *= less(position, C); position flat; mask_count_all += count; mask_i_flat = sum(mask_i, -1).
  const Tensor* mask_count_all = nullptr;
  std::vector<const Tensor*> positions_flat, masks_flat;
  for (int64_t i = 1; i <= K; ++i) {
    const Tensor& mask = *masks_list[static_cast<size_t>(i - 1)];
    const Tensor& position = f.step(name("position_in_expert", i), {&mask, mask_count_all},
                                    ops::gshard_position_in_expert(mask, mask_count_all));
    f.scalar_step(name("over_capacity", i), {&mask, &position}, ops::gshard_over_capacity(mask, position, C).ratio);
    const Tensor& kept =
        f.step(name("mask", i, "_capacity"), {&mask, &position}, ops::gshard_within_capacity(mask, position, C));
    Tensor count = ops::gshard_expert_count(kept);
    for (size_t e = 0; mask_count_all != nullptr && e < count.i32.size(); ++e) count.i32[e] += mask_count_all->i32[e];
    mask_count_all = &f.step(i == 1 ? std::string("mask_1_count") : name("mask_count_all", i), {mask_count_all, &kept},
                             std::move(count));
    positions_flat.push_back(
        &f.step(name("position_in_expert", i, "_flat"), {&position, &kept}, ops::gshard_flat_position(position, kept)));
    masks_flat.push_back(&f.step(name("mask", i, "_flat"), {&kept}, ops::sum_over_last(kept)));
  }
  // gate_i *= mask_i_flat
  std::vector<RankRouting> ranks;
  for (int64_t i = 1; i <= K; ++i) {
    const size_t r = static_cast<size_t>(i - 1);
    gates_list[r] = &f.step(name("gate", i, "_capacity"), {gates_list[r], masks_flat[r]},
                            ops::scale_by(*gates_list[r], *masks_flat[r]));
    ranks.push_back({index_list[r], positions_flat[r], masks_flat[r], gates_list[r]});
  }
  record_routing_index_form(f, ranks);
  // combine_tensor += einsum('GSE,GSC->GSEC', (gate_i * mask_i_flat) * one_hot(index_i), one_hot(position_i)), rank by
  // rank.
  Reads combine_reads;
  for (const RankRouting& rank : ranks)
    combine_reads.insert(combine_reads.end(), {rank.weight, rank.occupies_slot, rank.expert, rank.position});
  Tensor& combine = f.float32_step("combine_tensor", combine_reads, {"G", "S", "E", "C"});  // [G, S, E, C]
  for (const RankRouting& rank : ranks) {
    for (size_t t = 0; t < rank.expert->i32.size(); ++t) {
      const float a = rank.weight->f32[t] * static_cast<float>(rank.occupies_slot->i32[t]);
      const int32_t e = rank.expert->i32[t], c = rank.position->i32[t];
      for (int64_t ee = 0; ee < E; ++ee) {
        for (int64_t cc = 0; cc < C; ++cc) {
          const float term = (ee == e ? a : 0.0f) * (cc == c ? 1.0f : 0.0f);
          float& cell = combine.f32[(t * static_cast<size_t>(E) + static_cast<size_t>(ee)) * static_cast<size_t>(C) +
                                    static_cast<size_t>(cc)];
          cell = cell + term;
        }
      }
    }
  }
  PraxisGatingOutputs out;
  out.combine_tensor = &combine;
  // dispatch_tensor = combine_tensor.astype(bool).astype(fprop_dtype)
  out.dispatch_tensor = &f.step("dispatch_tensor", {combine}, ops::dispatch_from_combine(combine));
  out.aux_loss = aux_loss;
  return out;
}

void praxis_topk(Frame& f, const PraxisTopkHparams& hp) {
  resolve_praxis_layer_dims(f, hp);
  const int64_t S = f.dim("S"), E = f.dim("E");
  // assert capacity_factor or expert_capacity_dim
  if (!(hp.capacity_factor && *hp.capacity_factor != 0.0) &&
      !(hp.expert_capacity_dim && *hp.expert_capacity_dim != 0)) {
    fail_input("hparams.capacity_factor", "null or 0 with expert_capacity_dim null or 0",
               "a non-zero capacity_factor or expert_capacity_dim (topk_gating_on_logits asserts one of them)");
  }
  // if capacity_factor is not None: auto = int(S * capacity_factor / E); if expert_capacity_dim < auto:
  // expert_capacity_dim = ((auto + 3) // 4) * 4.
  int64_t capacity = hp.expert_capacity_dim ? *hp.expert_capacity_dim : 0;
  std::string rule = "given: expert_capacity_dim (capacity_factor is None)";
  if (hp.capacity_factor) {
    if (!hp.expert_capacity_dim) {
      fail_input("hparams.expert_capacity_dim", "null",
                 "an integer with a capacity_factor (`expert_capacity_dim < auto_expert_capacity` raises TypeError "
                 "on None)");
    }
    const int64_t automatic =
        static_cast<int64_t>(static_cast<double>(S) * *hp.capacity_factor / static_cast<double>(E));
    rule = "praxis topk: expert_capacity_dim, raised to roundup4(int(S * capacity_factor / E)) when below it";
    if (capacity < automatic) capacity = ((automatic + 3) / 4) * 4;
  }
  f.derived_dim("C", capacity, "the topk_gating_on_logits capacity rule");
  f.check_routing_size();
  f.capacity({{"expert_capacity", capacity}, {"rule", rule}, {"group_size", S}, {"num_groups", f.dim("G")}});
  praxis_moe_layer(f, hp, [&](const PraxisGatingInputs& in) { return topk_gating_on_logits(f, hp, in); });
}

// The decisions a backend may take the other way at a near tie: each rank's argmax.
std::optional<NearTie> praxis_topk_near_tie(const NearTieQuery& query, const PraxisTopkHparams& hp) {
  if (query.step == "index_1") return top_1_near_tie(query, "raw_gates");
  for (int64_t i = 2; i <= hp.k; ++i) {
    if (query.step == name("index", i)) return top_1_near_tie(query, name("raw_gates", i));
  }
  return std::nullopt;
}

}  // namespace

VariantSpec praxis_topk_variant() {
  return define_variant<PraxisTopkHparams>(
      {"praxis_topk", "praxis top-k gating (greedy ranks, renormalised before capacity, rank-major slots)",
       "google/praxis praxis/gshard_utils.py: topk_gating_on_logits", "spec/variants/praxis_topk.md"},
      declare_hparams, praxis_topk, praxis_topk_near_tie);
}

}  // namespace moeref
