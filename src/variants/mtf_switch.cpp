// mtf_switch: the Switch Transformer's top-1 MoE layer in Mesh TensorFlow, literal to the source.
//
// Source: tensorflow/mesh, mesh_tensorflow/transformer/moe.py at da90793,
//   transformer_moe_layer_v1 (grouping, capacity, experts, combine) and
//   _switch_gating (the gating function; named _rand_1_gating before commit
//   b1b5364). Spec: spec/variants/mtf_switch.md.
//
// Dims: B batch, L length, G groups, S group size, E experts, C expert capacity,
//       M model dim, H expert hidden dim, N expert output dim.
//
// Each token goes to one expert: the top-1 of the router softmax, or a Gumbel
// sample under the "sample" policy. The router may first see its inputs
// perturbed (dropout or multiplicative jitter, training only); the experts
// always get the unperturbed inputs. Tokens queue in token order; a token past
// capacity gets no expert output. The gate is the raw probability, never
// renormalised. Steps shared with _switch_max_gating (perturbation, choice,
// load-balancing loss, summaries) are recorded by layers/mtf_switch_router.hpp.

#include <optional>
#include <string>

#include "moeref/error.hpp"
#include "moeref/frame/define_variant.hpp"
#include "moeref/frame/routing_index_form.hpp"
#include "moeref/layers/mtf_switch_router.hpp"
#include "moeref/ops/dispatch_tensor.hpp"
#include "moeref/ops/mtf_position_in_expert.hpp"
#include "moeref/ops/mtf_softmax.hpp"
#include "moeref/ops/mtf_switch_loss.hpp"
#include "moeref/ops/one_hot.hpp"

namespace moeref {

namespace {

// transformer_moe_layer_v1's hyperparameters, the switch_* ones, and _switch_gating's z_loss.
struct MtfSwitchHparams : MtfSwitchRouterHparams {
  std::optional<double> z_loss;
};

void declare_hparams(HparamTable<MtfSwitchHparams>& table) {
  using P = MtfSwitchHparams;
  const char* gating = "moe.py: _switch_gating";
  declare_mtf_switch_router_hparams(table, gating, MtfSwitchPolicyUse::kChooseExpert);
  table.optional_number("z_loss", &P::z_loss)
      .at_least(0.0)
      .train_only()
      .means(
          "Router z-loss coefficient; when training and not null the loss gains z_loss * sum over tokens with "
          "importance 1 of logsumexp(logits)^2 / (their count * num_microbatches).")
      .cites(gating)
      .known_as({"moe_z_loss"})
      .about("z_loss_coef");
}

// _switch_gating(inputs, ..., importance, num_microbatches): dispatch, combine and loss.
MtfGatingOutputs switch_gating(Frame& f, const MtfGatingInputs& in, const MtfSwitchHparams& hp) {
  const int64_t G = f.dim("G"), S = f.dim("S"), E = f.dim("E"), C = f.dim("C");
  const bool train = f.train();
  // if train: policy = hparams.moe_switch_policy_train, else hparams.moe_switch_policy_eval
  const std::string& policy = hp.switch_policy(train);
  const bool use_z_loss = train && hp.z_loss.has_value();
  if (train) {
    mtf_require_importance(in, "mtf_switch",
                           "when training (the fraction_routed summary divides by reduce_sum(importance), and the "
                           "z-loss counts equal(importance, 1.0))");
  }
  if (use_z_loss && !hp.num_microbatches) {
    fail_input("hparams.num_microbatches", "null",
               "an integer >= 1 when z_loss is set: _switch_gating computes reduce_sum(z_loss) / (denom * "
               "num_microbatches), and None raises TypeError");
  }
  const Tensor* importance = in.importance;

  // gate_inputs = mtf.to_float(inputs); # Input perturbations; gate_logits = mtf.layers.dense(...);
  // raw_gates = mtf.softmax(gate_logits, experts_dim); expert_gate, expert_index by policy;
  // expert_mask = mtf.one_hot(expert_index, experts_dim); # LOAD BALANCING LOSS (densities before
  // the importance mask, the proxy masked after); # Logging when training.
  const MtfSwitchTop1 top_1 = mtf_switch_top_1(f, in, policy, hp);
  const MtfSwitchChoice& choice = top_1.choice;
  const MtfLoadBalance& balance = top_1.balance;
  const Tensor& gate_logits = *top_1.gate_logits;  // [G, S, E]

  // # Add in the z_loss for router.
  float loss = balance.loss->f32[0];
  const Tensor* z_loss = nullptr;
  if (use_z_loss) {
    // log_z = mtf.reduce_logsumexp(gate_logits, experts_dim)
    Tensor& log_z = f.float32_step("log_z", {gate_logits}, {"G", "S"});  // [G, S]
    for (int64_t t = 0; t < G * S; ++t) log_z.f32[t] = ops::mtf_logsumexp(gate_logits.f32.data() + t * E, E);
    // z_loss = mtf.square(log_z)
    Tensor& z_loss_square = f.float32_step("z_loss_square", {log_z}, {"G", "S"});  // [G, S]
    for (int64_t t = 0; t < G * S; ++t) z_loss_square.f32[t] = log_z.f32[t] * log_z.f32[t];
    // z_loss *= mtf.cast(mtf.equal(importance, 1.0)); denom = reduce_sum(cast(equal(importance, 1.0)))
    Tensor& z_loss_important = f.float32_step("z_loss_important", {z_loss_square, importance}, {"G", "S"});
    int32_t denom = 0;
    for (int64_t t = 0; t < G * S; ++t) {
      const bool important = importance->f32[t] == 1.0f;
      z_loss_important.f32[t] = z_loss_square.f32[t] * (important ? 1.0f : 0.0f);
      denom += important ? 1 : 0;
    }
    const Tensor& z_loss_denom = f.int32_scalar_step("z_loss_denom", {importance}, denom);
    // z_loss = mtf.reduce_sum(z_loss) / (denom * num_microbatches): denom * f32(num_microbatches),
    // then a tensor division (sum * reciprocal); no importance-1 token gives 0 * inf = NaN.
    const float denominator = static_cast<float>(denom) * static_cast<float>(*hp.num_microbatches);
    z_loss = &f.scalar_step("z_loss", {z_loss_important, z_loss_denom},
                            ops::mtf_divide(ops::mtf_reduce_sum_all(z_loss_important), denominator));
    // loss += hparams.moe_z_loss * z_loss: z_loss * f32(coefficient), then the addition.
    loss = loss + z_loss->f32[0] * static_cast<float>(*hp.z_loss);
  }
  f.scalar_step("gating_loss", {balance.loss, z_loss}, loss);

  // # COMPUTE ASSIGNMENT TO EXPERT
  // position_in_expert = mtf.cumsum(expert_mask, group_size_dim, exclusive=True) * expert_mask;
  // expert_mask *= mtf.cast(mtf.less(position_in_expert, expert_capacity_float))
  const Tensor& expert_mask = *balance.expert_mask;
  Tensor& position_in_expert = f.int32_step("position_in_expert", {expert_mask}, {"G", "S", "E"});  // [G, S, E]
  Tensor& expert_mask_capacity =
      f.int32_step("expert_mask_capacity", {position_in_expert, expert_mask}, {"G", "S", "E"});  // [G, S, E]
  ops::mtf_position_in_expert(expert_mask, nullptr, C, position_in_expert, expert_mask_capacity);
  // expert_mask_flat = mtf.reduce_sum(expert_mask, reduced_dim=experts_dim)
  const Tensor& expert_mask_flat =
      f.step("expert_mask_flat", {expert_mask_capacity}, ops::sum_over_last(expert_mask_capacity));  // [G, S]
  if (train) {
    // total_routed = mtf.reduce_sum(expert_mask_flat); fraction_routed = total_routed / reduce_sum(importance)
    int64_t total_routed = 0;
    for (int32_t routed : expert_mask_flat.i32) total_routed += routed;
    mtf_fraction_routed(f, total_routed, {expert_mask_flat}, *importance);
  }
  // expert_gate *= expert_mask_flat
  const Tensor& expert_gate = *balance.expert_gate;
  Tensor& expert_gate_capacity = f.float32_step("expert_gate_capacity", {expert_gate, expert_mask_flat}, {"G", "S"});
  for (int64_t t = 0; t < G * S; ++t) {
    expert_gate_capacity.f32[t] = expert_gate.f32[t] * static_cast<float>(expert_mask_flat.i32[t]);
  }

  // The routing in index form (K = 1), for backends that never build [G, S, E, C]
  // tensors; position_in_expert_flat (moeref addition) is each token's position.
  const Tensor& position_in_expert_flat =
      f.step("position_in_expert_flat", {position_in_expert}, ops::sum_over_last(position_in_expert));  // [G, S]
  record_routing_index_form(
      f, {{choice.expert_index, &position_in_expert_flat, &expert_mask_flat, &expert_gate_capacity}});

  // combine_tensor = expert_gate * expert_mask_flat * one_hot(expert_index, experts_dim)
  //                  * one_hot(to_int32(position_in_expert), expert_capacity_dim).
  // A position >= C selects no slot: the over-capacity token gets no expert output.
  Tensor& combine_tensor = f.float32_step(
      "combine_tensor", {expert_gate_capacity, expert_mask_flat, choice.expert_index, position_in_expert},
      {"G", "S", "E", "C"});  // [G, S, E, C]
#pragma omp parallel for schedule(static)
  for (int64_t t = 0; t < G * S; ++t) {
    const float weight = expert_gate_capacity.f32[t] * static_cast<float>(expert_mask_flat.i32[t]);
    for (int64_t e = 0; e < E; ++e) {
      const float chosen = weight * (choice.expert_index->i32[t] == e ? 1.0f : 0.0f);
      for (int64_t c = 0; c < C; ++c) {
        combine_tensor.f32[(t * E + e) * C + c] = chosen * (position_in_expert.i32[t * E + e] == c ? 1.0f : 0.0f);
      }
    }
  }
  // dispatch_tensor = mtf.cast(mtf.cast(combine_tensor, tf.bool), combine_tensor.dtype)
  const Tensor& dispatch_tensor =
      f.step("dispatch_tensor", {combine_tensor}, ops::dispatch_from_combine(combine_tensor));  // [G, S, E, C]
  return {&dispatch_tensor, &combine_tensor, loss};
}

void mtf_switch(Frame& f, const MtfSwitchHparams& hp) {
  mtf_moe_layer(f, hp, [&](const MtfGatingInputs& in) { return switch_gating(f, in, hp); });
}

// The one decision a backend may legitimately make the other way at a near tie:
// expert_index (top_1 of raw_gates, or the argmax of the sampled logits).
std::optional<NearTie> mtf_switch_near_tie(const NearTieQuery& query, const MtfSwitchHparams& hp) {
  return mtf_switch_expert_index_near_tie(query, hp);
}

}  // namespace

VariantSpec mtf_switch_variant() {
  VariantSpec spec = define_variant<MtfSwitchHparams>(
      {"mtf_switch", "Mesh TensorFlow Switch top-1 MoE layer (router perturbation policies, z-loss)",
       "tensorflow/mesh mesh_tensorflow/transformer/moe.py: transformer_moe_layer_v1, _switch_gating",
       "spec/variants/mtf_switch.md"},
      declare_hparams, mtf_switch, mtf_switch_near_tie);
  // transformer_moe_layer_v1 keeps its groups apart from the gating to the outputs:
  // shards by group merge exactly (spec/sharding.md).
  spec.group_shards = true;
  return spec;
}

}  // namespace moeref
