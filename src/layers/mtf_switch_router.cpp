#include "moeref/layers/mtf_switch_router.hpp"

#include <cmath>
#include <string>
#include <vector>

#include "moeref/error.hpp"
#include "moeref/frame/forced_choice.hpp"
#include "moeref/ops/mtf_router_noise.hpp"
#include "moeref/ops/mtf_softmax.hpp"
#include "moeref/ops/mtf_switch_loss.hpp"
#include "moeref/ops/mtf_top_k.hpp"
#include "moeref/ops/one_hot.hpp"
#include "moeref/ops/top1.hpp"

namespace moeref {

namespace {

// Policies that choose by top_1 of raw_gates in _switch_gating and _switch_max_gating.
bool argmax_like(const std::string& policy) {
  return policy == "argmax" || policy == "input_dropout" || policy == "input_jitter";
}

// x * cast(equal(importance, 1.0)) for x [G, S, ...] (each token's entries).
template <typename Values>
void keep_important(const Values& x, const Tensor& importance, Values& out) {
  const size_t per_token = x.size() / importance.f32.size();
  for (size_t k = 0; k < x.size(); ++k) {
    out[k] = importance.f32[k / per_token] == 1.0f ? x[k] : typename Values::value_type{0};
  }
}

}  // namespace

void mtf_require_importance(const MtfGatingInputs& in, const std::string& variant, const std::string& why) {
  if (in.importance != nullptr) return;
  fail_input("inputs.importance", "not supplied",
             "an importance tensor ([B, L] or [G, S], like x; all ones when nothing is padded): " + variant +
                 " reads importance " + why +
                 ", and mtf raises when it is None (transformer_moe_layer_v1 passes "
                 "nonpadding, None without a sequence_id)");
}

const Tensor& mtf_switch_gate_logits(Frame& f, const MtfGatingInputs& in, const std::string& policy,
                                     const MtfSwitchRouterHparams& hp, MtfRouterPerturbation kind) {
  if (in.logits != nullptr) return mtf_router_logits(f, in);
  const int64_t G = f.dim("G"), S = f.dim("S"), M = f.dim("M");
  const double keep_prob = 1.0 - hp.switch_dropout;
  // mtf.dropout returns x unchanged when keep_prob == 1.0 or not is_training.
  const bool dropout =
      kind == MtfRouterPerturbation::kSwitch && policy == "input_dropout" && f.train() && keep_prob != 1.0;
  // multiplicative_jitter returns x unchanged when epsilon == 0.
  const bool jitter = policy == "input_jitter" && f.train() && hp.switch_jitter != 0.0;
  MtfGatingInputs perturbed = in;
  if (dropout) {
    // noise = cast(less(random_uniform(x.shape), keep_prob)); noise /= keep_prob; x * noise
    const Tensor& uniform = f.inputs().uniform_draw("input_dropout_uniform", {"G", "S", "M"}, {G, S, M});
    perturbed.inputs =
        &f.step("gate_inputs", {in.inputs, uniform}, ops::mtf_dropout(*in.inputs, uniform, keep_prob));  // [G, S, M]
  } else if (jitter) {
    // x * mtf.random_uniform(x.shape, minval=1.0 - epsilon, maxval=1.0 + epsilon, dtype=x.dtype)
    const Tensor& uniform = f.inputs().uniform_draw("input_jitter_uniform", {"G", "S", "M"}, {G, S, M});
    const Tensor& jitter_noise =
        f.step("jitter_noise", {uniform},
               ops::tf_uniform_in_range(uniform, 1.0 - hp.switch_jitter, 1.0 + hp.switch_jitter));  // [G, S, M]
    perturbed.inputs =
        &f.step("gate_inputs", {in.inputs, jitter_noise}, ops::mtf_multiply(*in.inputs, jitter_noise));  // [G, S, M]
  }
  return mtf_router_logits(f, perturbed);
}

MtfSwitchChoice mtf_switch_choose_expert(Frame& f, const Tensor& gate_logits, const std::string& policy,
                                         const MtfSwitchRouterHparams& hp) {
  const int64_t G = f.dim("G"), S = f.dim("S"), E = f.dim("E");
  // raw_gates = mtf.softmax(gate_logits, reduced_dim=experts_dim)
  Tensor& raw_gates = f.float32_step("raw_gates", {gate_logits}, {"G", "S", "E"});  // [G, S, E]
#pragma omp parallel for schedule(static)
  for (int64_t g = 0; g < G; ++g) {
    ops::mtf_softmax(gate_logits.f32.data() + g * S * E, raw_gates.f32.data() + g * S * E, S, E);
  }
  const Tensor* forced = f.forced_decision("expert_index", {G, S});
  const Tensor* expert_index = nullptr;
  const Tensor* expert_gate = nullptr;
  if (argmax_like(policy)) {
    // expert_gate, expert_index = mtf.top_1(raw_gates, reduced_dim=experts_dim)
    Tensor index = Tensor::int32({"G", "S"}, {G, S});
    Tensor gate = Tensor::float32({"G", "S"}, {G, S});
    ops::top_1_lowest_index(raw_gates.f32.data(), G * S, E, gate.f32.data(), index.i32.data());
    index = with_forced_top_1(std::move(index), forced, E);
    for (int64_t t = 0; t < G * S; ++t) gate.f32[t] = raw_gates.f32[t * E + index.i32[t]];
    expert_index = &f.step("expert_index", {raw_gates}, std::move(index));             // [G, S]
    expert_gate = &f.step("expert_gate", {raw_gates, expert_index}, std::move(gate));  // [G, S]
    // if train: mtf.scalar_summary("expert_gate", mtf.reduce_mean(expert_gate))
    if (f.train()) f.scalar_step("expert_gate_summary", {expert_gate}, ops::mtf_reduce_mean_all(*expert_gate));
  } else {
    // expert_index = mtf.sample_with_temperature(gate_logits, experts_dim, temperature):
    // if temperature != 0: logits += -log(-log(random_uniform(minval=1e-9, maxval=1.))) * temperature;
    // argmax(logits, experts_dim).
    const Tensor* scores = &gate_logits;
    if (hp.switch_temperature != 0.0) {
      const Tensor& uniform = f.inputs().uniform_draw("sample_uniform", {"G", "S", "E"}, {G, S, E});
      const Tensor& gumbel_uniform =
          f.step("gumbel_uniform", {uniform}, ops::tf_uniform_in_range(uniform, 1e-9, 1.0));       // [G, S, E]
      const Tensor& gumbel = f.step("gumbel", {gumbel_uniform}, ops::mtf_gumbel(gumbel_uniform));  // [G, S, E]
      scores = &f.step("sample_logits", {gate_logits, gumbel},
                       ops::mtf_add_scaled(gate_logits, gumbel, hp.switch_temperature));  // [G, S, E]
    }
    expert_index =
        &f.step("expert_index", {scores}, with_forced_top_1(ops::argmax_lowest_index(*scores), forced, E));  // [G, S]
    // expert_gate = mtf.gather(raw_gates, expert_index, dim=experts_dim)
    Tensor& gate = f.float32_step("expert_gate", {raw_gates, expert_index}, {"G", "S"});  // [G, S]
    for (int64_t t = 0; t < G * S; ++t) gate.f32[t] = raw_gates.f32[t * E + expert_index->i32[t]];
    expert_gate = &gate;
  }
  // expert_mask = mtf.one_hot(expert_index, experts_dim, dtype=raw_gates.dtype)
  const Tensor& expert_mask = f.step("expert_mask", {expert_index}, ops::one_hot(*expert_index, E, "E"));  // [G, S, E]
  return {&raw_gates, expert_index, expert_gate, &expert_mask};
}

MtfLoadBalance mtf_switch_load_balancing(Frame& f, const Tensor& raw_gates, const Tensor& expert_mask,
                                         const Tensor& expert_gate, const Tensor* importance,
                                         const std::optional<int64_t>& num_microbatches) {
  // density_1 = reduce_mean(expert_mask, reduced_dim=group_size_dim);
  // density_1_proxy = reduce_mean(raw_gates, reduced_dim=group_size_dim)
  const Tensor& density_1 = f.step("density_1", {expert_mask}, ops::mtf_density_over_s(expert_mask));  // [G, (K,) E]
  const Tensor* density_1_proxy =
      &f.step("density_1_proxy", {raw_gates}, ops::mtf_density_over_s(raw_gates));  // [G, E]
  MtfLoadBalance out{&expert_mask, &expert_gate, nullptr};
  if (importance != nullptr) {
    // x *= mtf.cast(mtf.equal(importance, 1.0)) for expert_mask, expert_gate and density_1_proxy;
    // the proxy gains the group dim.
    Tensor mask = Tensor::int32(expert_mask.dims, expert_mask.shape);
    keep_important(expert_mask.i32, *importance, mask.i32);
    out.expert_mask = &f.step("expert_mask_important", {expert_mask, importance}, std::move(mask));
    Tensor gate = Tensor::float32(expert_gate.dims, expert_gate.shape);
    keep_important(expert_gate.f32, *importance, gate.f32);
    out.expert_gate = &f.step("expert_gate_important", {expert_gate, importance}, std::move(gate));
    Tensor important = Tensor::int32({"G", "S"}, importance->shape);
    for (size_t t = 0; t < important.i32.size(); ++t) important.i32[t] = importance->f32[t] == 1.0f ? 1 : 0;
    density_1_proxy = &f.step("density_1_proxy_important", {density_1_proxy, importance},
                              ops::mtf_proxy_times_important(*density_1_proxy, important));  // [G, E, S]
  }
  // loss = mtf.reduce_mean(density_1_proxy * density_1) * float(experts_dim.size * experts_dim.size)
  out.loss = &f.scalar_step("load_balancing_loss", {density_1_proxy, density_1},
                            ops::mtf_union_balance_loss(*density_1_proxy, density_1));
  if (num_microbatches && *num_microbatches > 1) {
    // loss /= num_microbatches: a Python scalar, so loss * f32(1 / num_microbatches).
    const float scale = static_cast<float>(1.0 / static_cast<double>(*num_microbatches));
    out.loss = &f.scalar_step("load_balancing_loss_microbatches", {out.loss}, out.loss->f32[0] * scale);
  }
  return out;
}

void mtf_switch_logging(Frame& f, const Tensor& raw_gates, const Tensor& expert_mask, const Tensor& loss) {
  const int64_t E = f.dim("E");
  // entropy = reduce_sum(-raw_gates * log(raw_gates + 1e-9), reduced_dim=experts_dim)
  const Tensor& entropy = f.step("entropy", {raw_gates}, ops::mtf_entropy(raw_gates, 2));  // [G, S]
  // mtf.scalar_summary(name + "/entropy", reduce_mean(entropy))
  f.scalar_step("batch_entropy", {entropy}, ops::mtf_reduce_mean_all(entropy));
  // mask_count_experts = reduce_sum(expert_mask, output_shape=[experts_dim]); total_routed = reduce_sum(...)
  Tensor& mask_count_experts = f.int32_step("mask_count_experts", {expert_mask}, {"E"});  // [E]
  for (size_t k = 0; k < expert_mask.i32.size(); ++k)
    mask_count_experts.i32[k % static_cast<size_t>(E)] += expert_mask.i32[k];
  int64_t total_routed = 0;
  for (int32_t count : mask_count_experts.i32) total_routed += count;
  // expert_fraction = to_float(mask_count_experts / total_routed): a tensor division,
  // count * reciprocal(total); 0/0 is NaN. Summaries "experts/...": one per expert.
  Tensor& expert_fraction = f.float32_step("expert_fraction", {mask_count_experts}, {"E"});  // [E]
  for (int64_t e = 0; e < E; ++e) {
    expert_fraction.f32[e] =
        ops::mtf_divide(static_cast<float>(mask_count_experts.i32[e]), static_cast<float>(total_routed));
  }
  // mtf.scalar_summary("aux_loss", mtf.reduce_mean(loss))
  f.scalar_step("aux_loss", {loss}, ops::mtf_reduce_mean_all(loss));
}

MtfSwitchTop1 mtf_switch_top_1(Frame& f, const MtfGatingInputs& in, const std::string& policy,
                               const MtfSwitchRouterHparams& hp) {
  MtfSwitchTop1 out;
  out.gate_logits = &mtf_switch_gate_logits(f, in, policy, hp, MtfRouterPerturbation::kSwitch);
  out.choice = mtf_switch_choose_expert(f, *out.gate_logits, policy, hp);
  out.balance = mtf_switch_load_balancing(f, *out.choice.raw_gates, *out.choice.expert_mask, *out.choice.expert_gate,
                                          in.importance, hp.num_microbatches);
  if (f.train()) mtf_switch_logging(f, *out.choice.raw_gates, *out.balance.expert_mask, *out.balance.loss);
  return out;
}

void mtf_fraction_routed(Frame& f, int64_t total_routed, const Reads& reads, const Tensor& importance) {
  Reads all = reads;
  all.emplace_back(importance);
  // mtf.scalar_summary("fraction_routed", total_routed / mtf.reduce_sum(importance))
  f.scalar_step("fraction_routed", all,
                ops::mtf_divide(static_cast<float>(total_routed), ops::mtf_reduce_sum_all(importance)));
}

MtfTokenTopK mtf_token_top_k(Frame& f, const Tensor& x, const std::string& variant) {
  const int64_t G = f.dim("G"), S = f.dim("S"), E = f.dim("E"), C = f.dim("C");
  if (!ops::mtf_top_k_runs(S, C)) {
    fail_input("dims.C", "C = " + std::to_string(C) + " > S = " + std::to_string(S),
               "C <= S (or 2 <= C <= 4, which mtf runs with garbage -1e9 weights): " + variant +
                   " calls mtf.top_k(..., reduced_dim=group_size_dim, k_dim=expert_capacity_dim), and for C >= 5 "
                   "TopKOperation raises ValueError (k_dim.size must be <= reduced_dim.size); lower "
                   "min_expert_capacity or give expert_capacity");
  }
  const Tensor* forced = f.forced_decision("expert_gate_indices", {G, E, C});
  Tensor indices = Tensor::int32({"G", "E", "C"}, {G, E, C});
  Tensor probs = Tensor::float32({"G", "E", "C"}, {G, E, C});
#pragma omp parallel for schedule(static)
  for (int64_t g = 0; g < G; ++g) {
    for (int64_t e = 0; e < E; ++e) {
      const float* column = x.f32.data() + g * S * E + e;  // x[g, :, e]
      const size_t at = static_cast<size_t>((g * E + e) * C);
      ops::mtf_top_k(column, E, S, C, probs.f32.data() + at, indices.i32.data() + at);
      if (forced != nullptr) {
        mtf_force_ranking(forced->i32.data() + at, C, S, column, E, probs.f32.data() + at, indices.i32.data() + at);
      }
    }
  }
  MtfTokenTopK out;
  out.expert_gate_indices = &f.step("expert_gate_indices", {x}, std::move(indices));                     // [G, E, C]
  out.expert_gate_probs = &f.step("expert_gate_probs", {x, out.expert_gate_indices}, std::move(probs));  // [G, E, C]
  return out;
}

Tensor mtf_token_one_hot(const Tensor& expert_gate_indices, int64_t S) {
  const int64_t G = expert_gate_indices.shape[0], E = expert_gate_indices.shape[1], C = expert_gate_indices.shape[2];
  Tensor dispatch = Tensor::int32({"G", "S", "E", "C"}, {G, S, E, C});
  for (int64_t g = 0; g < G; ++g) {
    for (int64_t e = 0; e < E; ++e) {
      for (int64_t c = 0; c < C; ++c) {
        const int32_t s = expert_gate_indices.i32[static_cast<size_t>((g * E + e) * C + c)];
        if (s >= 0 && s < S) dispatch.i32[static_cast<size_t>(((g * S + s) * E + e) * C + c)] = 1;
      }
    }
  }
  return dispatch;
}

void mtf_force_ranking(const int32_t* forced, int64_t k, int64_t n, const float* row, int64_t stride, float* values,
                       int32_t* indices) {
  std::vector<int32_t> reference(indices, indices + k);
  std::vector<bool> forced_here(static_cast<size_t>(k), false);
  std::vector<bool> taken(static_cast<size_t>(n), false);
  bool any = false;
  for (int64_t c = 0; c < k; ++c) {
    if (forced[c] >= 0 && forced[c] < n) {
      forced_here[static_cast<size_t>(c)] = true;
      taken[static_cast<size_t>(forced[c])] = true;
      any = true;
    }
  }
  if (!any) return;
  size_t next = 0;  // the next reference entry for an unforced rank
  for (int64_t c = 0; c < k; ++c) {
    int32_t chosen = forced[c];
    if (!forced_here[static_cast<size_t>(c)]) {
      while (next < reference.size() && taken[static_cast<size_t>(reference[next])]) ++next;
      if (next >= reference.size()) continue;  // nothing left: keep the reference's entry
      chosen = reference[next++];
    }
    if (chosen != indices[c]) {
      indices[c] = chosen;
      values[c] = row[chosen * stride];
    }
  }
}

std::optional<NearTie> mtf_ranked_near_tie(const NearTieQuery& query, const std::string& scores_step,
                                           bool rows_over_s) {
  const Tensor* choices = query.reference.find_step(query.step);
  const Tensor* scores = query.reference.find_step(scores_step);
  if (choices == nullptr || scores == nullptr || choices->dtype != DType::kInt32 || choices->rank() != 3 ||
      scores->dtype != DType::kFloat32 || scores->rank() != 3 || query.flat >= choices->num_elements()) {
    return std::nullopt;
  }
  const int64_t S = scores->shape[1], E = scores->shape[2];
  const std::vector<int64_t> at = choices->unravel(query.flat);  // [g, e, c] or [g, s, k]
  const int64_t n = rows_over_s ? S : E;
  const int64_t stride = rows_over_s ? E : 1;
  const int64_t base = rows_over_s ? at[0] * S * E + at[1] : (at[0] * S + at[1]) * E;
  const int32_t chosen = choices->i32[static_cast<size_t>(query.flat)];
  if (query.candidate < 0 || query.candidate >= n || chosen < 0 || chosen >= n) return std::nullopt;
  const float reference_score = scores->f32[static_cast<size_t>(base + chosen * stride)];
  const float candidate_score = scores->f32[static_cast<size_t>(base + query.candidate * stride)];
  NearTie tie;
  tie.margin = std::fabs(static_cast<double>(reference_score) - static_cast<double>(candidate_score));
  tie.tolerance = query.tolerance_for(scores_step).allowed(reference_score);
  const std::string letter = rows_over_s ? "s" : "e";
  tie.detail = scores_step + ": " + letter + "=" + std::to_string(chosen) + " " + float_text(reference_score) + " vs " +
               letter + "=" + std::to_string(query.candidate) + " " + float_text(candidate_score) + " at rank " +
               std::to_string(at[2]);
  return tie;
}

std::optional<NearTie> mtf_switch_expert_index_near_tie(const NearTieQuery& query, const MtfSwitchRouterHparams& hp) {
  if (query.step != "expert_index") return std::nullopt;
  const std::string& policy = hp.switch_policy(query.train());
  if (argmax_like(policy)) return top_1_near_tie(query, "raw_gates");
  return top_1_near_tie(query, hp.switch_temperature != 0.0 ? "sample_logits" : "logits");
}

}  // namespace moeref
