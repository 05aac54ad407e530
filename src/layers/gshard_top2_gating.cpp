#include "moeref/layers/gshard_top2_gating.hpp"

#include "moeref/frame/forced_choice.hpp"
#include "moeref/frame/routing_index_form.hpp"
#include "moeref/ops/elementwise.hpp"
#include "moeref/ops/gshard_balance_loss.hpp"
#include "moeref/ops/gshard_combine.hpp"
#include "moeref/ops/gshard_gates.hpp"
#include "moeref/ops/gshard_position_in_expert.hpp"
#include "moeref/ops/gshard_random_policy.hpp"
#include "moeref/ops/gshard_sampling.hpp"
#include "moeref/ops/one_hot.hpp"
#include "moeref/ops/top1.hpp"

namespace moeref {

namespace {

// index_k = argmax(scores, axis=-1), where the checker forced nothing. The index
// is recorded before anything derived from it: it is the decision, and a backend
// that decided otherwise diverges there first.
const Tensor& argmax_step(Frame& f, const std::string& name, const Tensor& scores) {
  const Tensor* forced = f.forced_decision(name, {scores.shape[0], scores.shape[1]});
  return f.step(name, {scores}, with_forced_top_1(ops::argmax_lowest_index(scores), forced, scores.shape.back()));
}

}  // namespace

GshardFirstChoice gshard_first_choice(Frame& f, const Tensor& raw_gates, const Tensor* importance) {
  GshardFirstChoice first;
  first.index = &argmax_step(f, "index_1", raw_gates);                                           // [G, S]
  first.mask_1 = &f.step("mask_1", {first.index}, ops::one_hot(*first.index, f.dim("E"), "E"));  // [G, S, E]
  first.density_1_proxy = &raw_gates;
  if (importance != nullptr) {
    const Tensor importance_is_one = ops::equal_to(*importance, 1.0f);  // [G, S]
    first.mask_1 =
        &f.step("mask_1_important", {first.mask_1, importance}, ops::scale_by(*first.mask_1, importance_is_one));
    first.density_1_proxy =
        &f.step("density_1_proxy_per_token", {raw_gates, importance}, ops::scale_by(raw_gates, importance_is_one));
  }
  return first;
}

GshardSecondChoice gshard_second_choice(Frame& f, const GshardTop2PolicyHparams& hp, const std::string& noise_input,
                                        const Tensor& logits, const Tensor& raw_gates, const Tensor& mask_1) {
  GshardSecondChoice second;
  second.gate_1 = &f.step("gate_1", {raw_gates, mask_1}, ops::gshard_gate(raw_gates, mask_1));  // [G, S]
  second.gates_without_top_1 =
      &f.step("gates_without_top_1", {raw_gates, mask_1}, ops::gshard_gates_without_top_1(raw_gates, mask_1));
  const Tensor* scores = second.gates_without_top_1;
  if (hp.second_expert_policy == "sampling") {
    // Gets rid of the first expert by setting its logit to be very negative, then
    // adds Gumbel noise: the argmax samples from the softmax over the others.
    const Tensor& uniform = f.inputs().uniform_draw(noise_input, logits.dims, logits.shape);
    const Tensor& noise = f.step("noise", {uniform}, ops::gumbel_noise(uniform));
    const Tensor& updated_logits =
        f.step("updated_logits", {mask_1, logits}, ops::gshard_updated_logits(logits, mask_1));
    scores = &f.step("noised_logits", {updated_logits, noise}, ops::add(updated_logits, noise));
  }
  second.index = &argmax_step(f, "index_2", *scores);                                               // [G, S]
  second.mask_2 = &f.step("mask_2", {second.index}, ops::one_hot(*second.index, f.dim("E"), "E"));  // [G, S, E]
  return second;
}

GshardGates gshard_gate_2(Frame& f, const GshardTop2PolicyHparams& hp, const Tensor& gate_1,
                          const Tensor& gates_without_top_1, const Tensor& mask_2) {
  const Tensor& gate_2 =
      f.step("gate_2", {gates_without_top_1, mask_2}, ops::gshard_gate(gates_without_top_1, mask_2));  // [G, S]
  if (!hp.legacy_mtf_behavior) return {&gate_1, &gate_2};
  // denom = gate_1 + gate_2 + 1e-9: Python's 1e-9 meets the gates as f32(1e-9).
  const Tensor& denom = f.step("denom", {gate_1, gate_2}, ops::add(ops::add(gate_1, gate_2), 1e-9f));
  return gshard_divide_gates(f, {&gate_1, &gate_2}, denom);
}

GshardGates gshard_divide_gates(Frame& f, const GshardGates& gates, const Tensor& denom) {
  GshardGates divided;
  divided.gate_1 = &f.step("gate_1_normalized", {gates.gate_1, denom}, ops::divide(*gates.gate_1, denom));
  divided.gate_2 = &f.step("gate_2_normalized", {gates.gate_2, denom}, ops::divide(*gates.gate_2, denom));
  return divided;
}

float gshard_aux_loss(Frame& f, const Tensor& mask_1, const Tensor& density_1_proxy, const Tensor* importance,
                      bool legacy_mtf_behavior) {
  // The legacy density_denom is the Python 1.0: dividing by it changes nothing.
  const Tensor* density_denom = nullptr;
  if (!legacy_mtf_behavior) {
    Tensor ones = Tensor::float32({"G", "S"}, {mask_1.shape[0], mask_1.shape[1]});
    for (float& one : ones.f32) one = 1.0f;
    density_denom = &f.step("density_denom", {importance}, ops::gshard_density_denom(importance ? *importance : ones));
  }
  const Tensor& density_1 = f.step("density_1", {mask_1, density_denom}, ops::gshard_density(mask_1, density_denom));
  const Tensor& proxy =
      f.step("density_1_proxy", {density_1_proxy, density_denom}, ops::gshard_density(density_1_proxy, density_denom));
  return f.scalar_step("aux_loss", {proxy, density_1}, ops::gshard_aux_loss(proxy, density_1)).f32[0];
}

GshardKept gshard_keep_within_capacity(Frame& f, int rank, const Tensor& mask, const Tensor& position_in_expert) {
  const std::string k = std::to_string(rank);
  GshardKept kept;
  kept.mask = &f.step("mask_" + k + "_capacity", {mask, position_in_expert},
                      ops::gshard_within_capacity(mask, position_in_expert, f.dim("C")));
  kept.position_flat = &f.step("position_in_expert_" + k + "_flat", {position_in_expert, kept.mask},
                               ops::gshard_flat_position(position_in_expert, *kept.mask));
  // How many first choices each expert kept: the second choices queue behind them.
  if (rank == 1) kept.count = &f.step("mask_1_count", {kept.mask}, ops::gshard_expert_count(*kept.mask));
  kept.mask_flat = &f.step("mask_" + k + "_flat", {kept.mask}, ops::sum_over_last(*kept.mask));
  return kept;
}

GshardSecondKept gshard_second_expert_policy(Frame& f, const GshardTop2PolicyHparams& hp,
                                             const std::string& uniform_input, const Tensor& gate_2,
                                             const Tensor& mask_2) {
  if (hp.second_expert_policy != "random") return {&gate_2, &mask_2};
  const Tensor& uniform = f.inputs().uniform_draw(uniform_input, gate_2.dims, gate_2.shape);
  const Tensor* forced = f.forced_decision("sampled_2", gate_2.shape);
  const Tensor& sampled_2 =
      f.step("sampled_2", {uniform, gate_2},
             with_forced_keep(ops::gshard_sampled_2(uniform, gate_2, hp.second_expert_threshold), forced));
  GshardSecondKept kept;
  kept.gate_2 = &f.step("gate_2_sampled", {gate_2, sampled_2}, ops::scale_by(gate_2, sampled_2));
  kept.mask_2 = &f.step("mask_2_sampled", {mask_2, sampled_2}, ops::scale_by(mask_2, sampled_2));
  return kept;
}

GshardGates gshard_gates_within_capacity(Frame& f, const GshardGates& gates, const Tensor& mask_1_flat,
                                         const Tensor& mask_2_flat) {
  GshardGates kept;
  kept.gate_1 = &f.step("gate_1_capacity", {gates.gate_1, mask_1_flat}, ops::scale_by(*gates.gate_1, mask_1_flat));
  kept.gate_2 = &f.step("gate_2_capacity", {gates.gate_2, mask_2_flat}, ops::scale_by(*gates.gate_2, mask_2_flat));
  return kept;
}

const Tensor& gshard_combine_tensor(Frame& f, const GshardRank& first, const GshardRank& second) {
  // The same routing in index form (per token and rank: expert, slot or -1, the
  // combine weight), for backends that never build [G, S, E, C] tensors.
  record_routing_index_form(f, {{first.index, first.position_flat, first.mask_flat, first.gate},
                                {second.index, second.position_flat, second.mask_flat, second.gate}});
  return f.step("combine_tensor",
                {first.gate, first.mask_flat, first.index, first.position_flat, second.gate, second.mask_flat,
                 second.index, second.position_flat},
                ops::gshard_combine_tensor({*first.gate, *first.mask_flat, *first.index, *first.position_flat},
                                           {*second.gate, *second.mask_flat, *second.index, *second.position_flat},
                                           f.dim("E"), f.dim("C")));
}

std::optional<NearTie> gshard_top2_near_tie(const NearTieQuery& query, const GshardTop2PolicyHparams& hp,
                                            const std::string& uniform_input) {
  // index_1 = argmax(raw_gates)
  if (query.step == "index_1") return top_1_near_tie(query, "raw_gates");
  // index_2 = argmax(noised_logits) under sampling (logits + Gumbel noise), else argmax(gates_without_top_1).
  if (query.step == "index_2") {
    return top_1_near_tie(query, hp.second_expert_policy == "sampling" ? "noised_logits" : "gates_without_top_1");
  }
  if (query.step != "sampled_2" || hp.second_expert_policy != "random") return std::nullopt;
  // sampled_2 = less(U, gate_2 / max(second_expert_threshold, 1e-9)); gate_2 is the
  // legacy-normalised gate (recorded as gate_2_normalized) when legacy, else the raw one.
  const float divisor = ops::gshard_random_divisor(hp.second_expert_threshold);
  const std::string gate = hp.legacy_mtf_behavior ? "gate_2_normalized" : "gate_2";
  return random_keep_near_tie(
      query, uniform_input, gate, [divisor](float value) { return value / divisor; },
      1.0 / static_cast<double>(divisor), gate + " / max(threshold, 1e-9)");
}

}  // namespace moeref
