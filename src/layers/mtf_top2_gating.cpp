// _top_2_gating (tensorflow/mesh, mesh_tensorflow/transformer/moe.py at da90793),
// one statement (or a few) per step, in the source's order, under the source's
// variable names. Where the source reassigns a variable (gate_1 *= ...,
// mask_1 *= ...), the trace keeps every version under a suffix naming the stage:
// mask_1 -> mask_1_important -> mask_1_capacity. Spec: spec/variants/mtf_top2.md
// (and spec/variants/mtf_moe2d.md for the two MoE2D sites).
//
// Dims: the site's batch dims (product G), group S, experts E, capacity C.

#include "moeref/layers/mtf_top2_gating.hpp"

#include <algorithm>
#include <cstdint>
#include <utility>

#include "moeref/frame/routing_index_form.hpp"
#include "moeref/ops/dispatch_tensor.hpp"
#include "moeref/ops/mtf_balance_loss.hpp"
#include "moeref/ops/mtf_position_in_expert.hpp"
#include "moeref/ops/mtf_softmax.hpp"
#include "moeref/ops/one_hot.hpp"
#include "moeref/ops/top1.hpp"

namespace moeref {

namespace {

// The site's dims with `tail` after the batch dims.
std::vector<std::string> site_dims(const MtfTop2Site& site, std::initializer_list<std::string> tail) {
  std::vector<std::string> dims = site.batch;
  dims.insert(dims.end(), tail);
  return dims;
}

// The same values under other dims: the flat [G, S, E] view the ops take, or the
// site's dims for a result the ops return as [G, E].
Tensor relabeled(Tensor tensor, std::vector<std::string> dims, std::vector<int64_t> shape) {
  tensor.dims = std::move(dims);
  tensor.shape = std::move(shape);
  return tensor;
}

// Where the checker forced a top-1 decision, take the forced expert and its gate.
void force_top_1(const Tensor* forced, const Tensor& scores, Tensor& index, Tensor& gate) {
  if (forced == nullptr) return;
  const int64_t E = scores.shape.back();
  for (size_t t = 0; t < index.i32.size(); ++t) {
    const int32_t choice = forced->i32[t];
    if (choice < 0 || choice >= E) continue;
    index.i32[t] = choice;
    gate.f32[t] = scores.f32[t * static_cast<size_t>(E) + static_cast<size_t>(choice)];
  }
}

}  // namespace

MtfTop2Gated mtf_top_2_gating(Frame& f, const MtfTop2Site& site, const Tensor& logits, const Tensor* importance,
                              const MtfTop2GatingHparams& hp, const std::optional<int64_t>& num_microbatches) {
  const std::vector<int64_t> batch_shape = f.extents(site.batch);
  int64_t G = 1;
  for (int64_t extent : batch_shape) G *= extent;
  const int64_t S = f.extents({site.group})[0], E = f.extents({site.experts})[0];
  const int64_t C = f.extents({site.capacity})[0];
  const std::string& p = site.prefix;
  const std::vector<std::string> gse = site_dims(site, {site.group, site.experts});  // [G, S, E]
  const std::vector<std::string> gs = site_dims(site, {site.group});                 // [G, S]
  const std::vector<std::string> ge = site_dims(site, {site.experts});               // [G, E]
  const std::vector<int64_t> gs_shape = f.extents(gs);
  const std::vector<int64_t> ge_shape = f.extents(ge);
  // The ops take one flat batch dim: [G, S, E] views of the site's tensors.
  auto flat_gse = [&](const Tensor& tensor) { return relabeled(tensor, {"G", "S", "E"}, {G, S, E}); };
  auto density = [&](const Tensor& values) { return relabeled(ops::mtf_density(flat_gse(values)), ge, ge_shape); };

  const std::string& policy = hp.second_policy(f.train());
  const double threshold = hp.second_threshold(f.train());
  const Tensor* second_policy_uniform =
      policy == "random" ? &f.inputs().uniform_draw(p + "second_policy_uniform", gs, gs_shape) : nullptr;
  // Python scalars become float32 constants when they meet a float32 tensor.
  const float kDenomEpsilon = 1e-9f;

  // raw_gates = mtf.softmax(raw_gates, experts_dim)
  Tensor& raw_gates = f.float32_step(p + "raw_gates", {logits}, gse);  // [G, S, E]
#pragma omp parallel for schedule(static)
  for (int64_t g = 0; g < G; ++g) {
    ops::mtf_softmax(logits.f32.data() + g * S * E, raw_gates.f32.data() + g * S * E, S, E);
  }

  // gate_1, index_1 = mtf.top_1(raw_gates, experts_dim). The index is recorded first:
  // it is the decision, and a wrong choice shows up there.
  Tensor& index_1 = f.int32_step(p + "index_1", {raw_gates}, gs);  // [G, S]
  Tensor& gate_1 = f.float32_step(p + "gate_1", {raw_gates}, gs);  // [G, S]
  ops::top_1_lowest_index(raw_gates.f32.data(), G * S, E, gate_1.f32.data(), index_1.i32.data());
  force_top_1(f.forced_decision(p + "index_1", gs_shape), raw_gates, index_1, gate_1);
  // mask_1 = mtf.one_hot(index_1, experts_dim)
  const Tensor& mask_1 = f.step(p + "mask_1", {index_1}, ops::one_hot(index_1, E, site.experts));  // [G, S, E]

  // With importance: mask_1, gate_1 and density_1_proxy keep only importance == 1.0:
  // x *= to_float(equal(importance, 1.0)).
  const Tensor* mask_1_now = &mask_1;
  const Tensor* gate_1_now = &gate_1;
  const Tensor* density_1_proxy_now = &raw_gates;  // density_1_proxy = raw_gates
  if (importance != nullptr) {
    auto is_one = [&](int64_t token) { return importance->f32[static_cast<size_t>(token)] == 1.0f; };
    Tensor& mask_1_important = f.int32_step(p + "mask_1_important", {mask_1, importance}, gse);
    for (int64_t k = 0; k < G * S * E; ++k) mask_1_important.i32[k] = is_one(k / E) ? mask_1.i32[k] : 0;
    Tensor& gate_1_important = f.float32_step(p + "gate_1_important", {gate_1, importance}, gs);
    for (int64_t t = 0; t < G * S; ++t) gate_1_important.f32[t] = gate_1.f32[t] * (is_one(t) ? 1.0f : 0.0f);
    Tensor& proxy = f.float32_step(p + "density_1_proxy_per_token", {raw_gates, importance}, gse);
    for (int64_t k = 0; k < G * S * E; ++k) proxy.f32[k] = raw_gates.f32[k] * (is_one(k / E) ? 1.0f : 0.0f);
    mask_1_now = &mask_1_important;
    gate_1_now = &gate_1_important;
    density_1_proxy_now = &proxy;
  }

  // gates_without_top_1 = raw_gates * (1.0 - mask_1)
  Tensor& gates_without_top_1 = f.float32_step(p + "gates_without_top_1", {raw_gates, mask_1_now}, gse);
  for (int64_t k = 0; k < G * S * E; ++k) {
    gates_without_top_1.f32[k] = raw_gates.f32[k] * (1.0f - static_cast<float>(mask_1_now->i32[k]));
  }
  // gate_2, index_2 = mtf.top_1(gates_without_top_1, experts_dim); mask_2 = one_hot(index_2)
  Tensor& index_2 = f.int32_step(p + "index_2", {gates_without_top_1}, gs);  // [G, S]
  Tensor& gate_2 = f.float32_step(p + "gate_2", {gates_without_top_1}, gs);  // [G, S]
  ops::top_1_lowest_index(gates_without_top_1.f32.data(), G * S, E, gate_2.f32.data(), index_2.i32.data());
  force_top_1(f.forced_decision(p + "index_2", gs_shape), gates_without_top_1, index_2, gate_2);
  const Tensor& mask_2 = f.step(p + "mask_2", {index_2}, ops::one_hot(index_2, E, site.experts));  // [G, S, E]
  const Tensor* mask_2_now = &mask_2;
  if (importance != nullptr) {
    // mask_2 *= to_float(greater(importance, 0.0))
    Tensor& mask_2_important = f.int32_step(p + "mask_2_important", {mask_2, importance}, gse);
    for (int64_t k = 0; k < G * S * E; ++k) {
      mask_2_important.i32[k] = importance->f32[static_cast<size_t>(k / E)] > 0.0f ? mask_2.i32[k] : 0;
    }
    mask_2_now = &mask_2_important;
  }

  // denom = gate_1 + gate_2 + 1e-9; gate_i /= denom is gate_i * reciprocal(denom).
  Tensor& denom = f.float32_step(p + "denom", {gate_1_now, gate_2}, gs);  // [G, S]
  for (int64_t t = 0; t < G * S; ++t) denom.f32[t] = (gate_1_now->f32[t] + gate_2.f32[t]) + kDenomEpsilon;
  Tensor& gate_1_normalized = f.float32_step(p + "gate_1_normalized", {gate_1_now, denom}, gs);
  for (int64_t t = 0; t < G * S; ++t) gate_1_normalized.f32[t] = gate_1_now->f32[t] * (1.0f / denom.f32[t]);
  Tensor& gate_2_normalized = f.float32_step(p + "gate_2_normalized", {gate_2, denom}, gs);
  for (int64_t t = 0; t < G * S; ++t) gate_2_normalized.f32[t] = gate_2.f32[t] * (1.0f / denom.f32[t]);

  // density_1 = reduce_mean(mask_1, group_size_dim);
  // density_1_proxy = reduce_mean(density_1_proxy, group_size_dim);
  // loss = reduce_mean(density_1_proxy * density_1) * E^2
  const Tensor& density_1 = f.step(p + "density_1", {mask_1_now}, density(*mask_1_now));  // [G, E]
  const Tensor& density_1_proxy =
      f.step(p + "density_1_proxy", {density_1_proxy_now}, density(*density_1_proxy_now));  // [G, E]
  const Tensor& loss_1 =
      f.scalar_step(p + "loss_1", {density_1_proxy, density_1}, ops::mtf_balance_loss(density_1_proxy, density_1));
  float loss = loss_1.f32[0];
  const Tensor* loss_2 = nullptr;
  if (hp.use_second_place_loss) {
    // density_2 = reduce_mean(mask_2); normalized = gates_without_top_1 / (reduce_sum(., experts) + 1e-9);
    // density_2_proxy = reduce_mean(normalized); loss += balance loss of the second choices * 0.5
    const Tensor& density_2 = f.step(p + "density_2", {mask_2_now}, density(*mask_2_now));  // [G, E]
    Tensor& normalized = f.float32_step(p + "normalized", {gates_without_top_1}, gse);      // [G, S, E]
    for (int64_t t = 0; t < G * S; ++t) {
      double row_sum = 0.0;
      for (int64_t e = 0; e < E; ++e) row_sum += static_cast<double>(gates_without_top_1.f32[t * E + e]);
      const float reciprocal = 1.0f / (static_cast<float>(row_sum) + kDenomEpsilon);
      for (int64_t e = 0; e < E; ++e) normalized.f32[t * E + e] = gates_without_top_1.f32[t * E + e] * reciprocal;
    }
    const Tensor& density_2_proxy = f.step(p + "density_2_proxy", {normalized}, density(normalized));  // [G, E]
    loss_2 =
        &f.scalar_step(p + "loss_2", {density_2_proxy, density_2}, ops::mtf_balance_loss(density_2_proxy, density_2));
    loss = loss + loss_2->f32[0] * 0.5f;
  }
  if (num_microbatches && *num_microbatches > 1) {
    // loss /= num_microbatches: a Python scalar, so loss * f32(1/num_microbatches).
    loss = loss * static_cast<float>(1.0 / static_cast<double>(*num_microbatches));
  }
  f.scalar_step(p + "gating_loss", {loss_1, loss_2}, loss);

  // Second-expert policy, applied to mask_2 only. threshold: greater(gate_2, threshold);
  // random: less(random_uniform, gate_2 / max(threshold, 1e-9)), a scalar divide: x * f32(1/t).
  const Tensor* second_policy_keep = nullptr;
  if (policy == "threshold" || policy == "random") {
    const float threshold_f = static_cast<float>(threshold);
    const float inverse_threshold = static_cast<float>(1.0 / std::max(threshold, 1e-9));
    const Tensor* forced_keep = f.forced_decision(p + "second_policy_keep", gs_shape);
    Tensor& keep = f.int32_step(p + "second_policy_keep", {gate_2_normalized, second_policy_uniform}, gs);
    for (int64_t t = 0; t < G * S; ++t) {
      bool kept = policy == "threshold" ? gate_2_normalized.f32[t] > threshold_f
                                        : second_policy_uniform->f32[t] < gate_2_normalized.f32[t] * inverse_threshold;
      if (forced_keep != nullptr && forced_keep->i32[t] >= 0) kept = forced_keep->i32[t] != 0;
      keep.i32[t] = kept ? 1 : 0;
    }
    second_policy_keep = &keep;
  }
  // mask_2 *= the policy's keep (all: 1, none: 0)
  Tensor& mask_2_policy = f.int32_step(p + "mask_2_policy", {mask_2_now, second_policy_keep}, gse);
  for (int64_t k = 0; k < G * S * E; ++k) {
    const bool kept = second_policy_keep != nullptr ? second_policy_keep->i32[k / E] != 0 : policy == "all";
    mask_2_policy.i32[k] = kept ? mask_2_now->i32[k] : 0;
  }

  // position_in_expert_1 = cumsum(mask_1, group_size_dim, exclusive=True) * mask_1;
  // mask_1 *= to_float(less(position_in_expert_1, expert_capacity_f))
  Tensor& position_in_expert_1 = f.int32_step(p + "position_in_expert_1", {mask_1_now}, gse);
  Tensor& mask_1_capacity = f.int32_step(p + "mask_1_capacity", {position_in_expert_1, mask_1_now}, gse);
  ops::mtf_position_in_expert(flat_gse(*mask_1_now), nullptr, C, position_in_expert_1, mask_1_capacity);
  // mask_1_count = reduce_sum(mask_1, group_size_dim)
  Tensor& mask_1_count = f.int32_step(p + "mask_1_count", {mask_1_capacity}, ge);  // [G, E]
  for (int64_t k = 0; k < G * S * E; ++k) mask_1_count.i32[(k / (S * E)) * E + k % E] += mask_1_capacity.i32[k];
  // mask_1_flat = reduce_sum(mask_1, experts_dim)
  const Tensor& mask_1_flat = f.step(p + "mask_1_flat", {mask_1_capacity}, ops::sum_over_last(mask_1_capacity));
  // position_in_expert_1 = reduce_sum(position_in_expert_1, experts_dim)
  const Tensor& position_in_expert_1_flat =
      f.step(p + "position_in_expert_1_flat", {position_in_expert_1}, ops::sum_over_last(position_in_expert_1));
  // gate_1 *= mask_1_flat
  Tensor& gate_1_capacity = f.float32_step(p + "gate_1_capacity", {gate_1_normalized, mask_1_flat}, gs);
  for (int64_t t = 0; t < G * S; ++t)
    gate_1_capacity.f32[t] = gate_1_normalized.f32[t] * static_cast<float>(mask_1_flat.i32[t]);

  // position_in_expert_2 = (cumsum(mask_2, exclusive=True) + mask_1_count) * mask_2:
  // second choices queue behind every kept first choice of their expert.
  Tensor& position_in_expert_2 = f.int32_step(p + "position_in_expert_2", {mask_2_policy, mask_1_count}, gse);
  Tensor& mask_2_capacity = f.int32_step(p + "mask_2_capacity", {position_in_expert_2, mask_2_policy}, gse);
  ops::mtf_position_in_expert(flat_gse(mask_2_policy), &mask_1_count, C, position_in_expert_2, mask_2_capacity);
  // mask_2_flat = reduce_sum(mask_2, experts_dim); gate_2 *= mask_2_flat
  const Tensor& mask_2_flat = f.step(p + "mask_2_flat", {mask_2_capacity}, ops::sum_over_last(mask_2_capacity));
  Tensor& gate_2_capacity = f.float32_step(p + "gate_2_capacity", {gate_2_normalized, mask_2_flat}, gs);
  for (int64_t t = 0; t < G * S; ++t)
    gate_2_capacity.f32[t] = gate_2_normalized.f32[t] * static_cast<float>(mask_2_flat.i32[t]);
  // position_in_expert_2 = reduce_sum(position_in_expert_2, experts_dim)
  const Tensor& position_in_expert_2_flat =
      f.step(p + "position_in_expert_2_flat", {position_in_expert_2}, ops::sum_over_last(position_in_expert_2));

  // The same routing in index form (per token and rank: expert, slot or -1, weight),
  // for backends that never build [G, S, E, C] tensors (transformer_moe_layer_v1 only).
  if (site.batch.size() == 1 && p.empty()) {
    record_routing_index_form(f, {{&index_1, &position_in_expert_1_flat, &mask_1_flat, &gate_1_capacity},
                                  {&index_2, &position_in_expert_2_flat, &mask_2_flat, &gate_2_capacity}});
  }

  // combine_tensor = gate_1 * mask_1_flat * one_hot(index_1, E) * one_hot(int(pos_1), C)
  //                + gate_2 * mask_2_flat * one_hot(index_2, E) * one_hot(int(pos_2), C).
  // one_hot of a position >= C is an all-zero row: that is how an over-capacity token vanishes.
  const std::vector<std::string> gsec = site_dims(site, {site.group, site.experts, site.capacity});
  Tensor& combine_tensor =
      f.float32_step_written_whole(p + "combine_tensor",
                                   {gate_1_capacity, mask_1_flat, index_1, position_in_expert_1_flat, gate_2_capacity,
                                    mask_2_flat, index_2, position_in_expert_2_flat},
                                   gsec, f.extents(gsec));
  // Element (e, c) of a token's row is term_1 + term_2, each term its weight times two
  // one-hot factors; it depends on (e, c) only through the four tests e == index_k,
  // c == pos_k. So the 16 possible sums are computed once per token, each with the
  // source's operations, and the row is filled from them: the same bits, NaN and -0
  // included, without E * C products per token. The row is written in this one pass
  // (no zeros first), on every thread: the first touches of this large step too.
#pragma omp parallel for schedule(static)
  for (int64_t t = 0; t < G * S; ++t) {
    const float weight_1 = gate_1_capacity.f32[t] * static_cast<float>(mask_1_flat.i32[t]);
    const float weight_2 = gate_2_capacity.f32[t] * static_cast<float>(mask_2_flat.i32[t]);
    float sums[2][2][2][2];  // [e == index_1][c == pos_1][e == index_2][c == pos_2]
    for (int e1 = 0; e1 < 2; ++e1) {
      for (int c1 = 0; c1 < 2; ++c1) {
        for (int e2 = 0; e2 < 2; ++e2) {
          for (int c2 = 0; c2 < 2; ++c2) {
            const float term_1 = weight_1 * (e1 ? 1.0f : 0.0f) * (c1 ? 1.0f : 0.0f);
            const float term_2 = weight_2 * (e2 ? 1.0f : 0.0f) * (c2 ? 1.0f : 0.0f);
            sums[e1][c1][e2][c2] = term_1 + term_2;
          }
        }
      }
    }
    const int64_t expert_1 = index_1.i32[t], expert_2 = index_2.i32[t];
    const int64_t slot_1 = position_in_expert_1_flat.i32[t], slot_2 = position_in_expert_2_flat.i32[t];
    auto value_at = [&](int64_t e, int64_t c) { return sums[e == expert_1][c == slot_1][e == expert_2][c == slot_2]; };
    float* row = combine_tensor.f32.data() + t * E * C;  // [E, C]
    std::fill(row, row + E * C, sums[0][0][0][0]);       // the step starts unset: every row is written whole
    for (const int64_t e : {expert_1, expert_2}) {
      if (e < 0 || e >= E) continue;
      for (int64_t c = 0; c < C; ++c) row[e * C + c] = value_at(e, c);
    }
    for (const int64_t c : {slot_1, slot_2}) {
      if (c < 0 || c >= C) continue;
      for (int64_t e = 0; e < E; ++e) row[e * C + c] = value_at(e, c);
    }
  }
  // dispatch_tensor = cast(cast(combine_tensor, bool)): nonzero (or NaN) means dispatched.
  const Tensor& dispatch_tensor =
      f.step(p + "dispatch_tensor", {combine_tensor}, ops::dispatch_from_combine(combine_tensor));
  return {&dispatch_tensor, &combine_tensor, loss};
}

std::optional<NearTie> mtf_top_2_near_tie(const NearTieQuery& query, const MtfTop2GatingHparams& hp,
                                          const std::string& prefix) {
  if (query.step.compare(0, prefix.size(), prefix) != 0) return std::nullopt;
  const std::string step = query.step.substr(prefix.size());
  // top_1 over raw_gates (index_1) or over gates_without_top_1 (index_2).
  if (step == "index_1") return top_1_near_tie(query, prefix + "raw_gates");
  if (step == "index_2") return top_1_near_tie(query, prefix + "gates_without_top_1");
  if (step != "second_policy_keep") return std::nullopt;
  const std::string& policy = hp.second_policy(query.train());
  const double threshold = hp.second_threshold(query.train());
  // greater(gate_2, threshold)
  if (policy == "threshold") {
    return threshold_near_tie(query, prefix + "gate_2_normalized", static_cast<float>(threshold));
  }
  if (policy == "random") {
    // less(uniform, gate_2 / max(threshold, 1e-9)), computed as gate_2 * f32(1 / max(threshold, 1e-9))
    const float inverse_threshold = static_cast<float>(1.0 / std::max(threshold, 1e-9));
    return random_keep_near_tie(
        query, prefix + "second_policy_uniform", prefix + "gate_2_normalized",
        [inverse_threshold](float gate) { return gate * inverse_threshold; }, static_cast<double>(inverse_threshold),
        "gate_2_normalized / threshold");
  }
  return std::nullopt;
}

}  // namespace moeref
