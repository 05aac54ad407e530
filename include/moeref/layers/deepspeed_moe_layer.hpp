// DeepSpeed's MoE layer around a gating function: TopKGate.forward (the fp32
// router, the 'Jitter' noisy gate policy) and MOELayer.forward (dispatch
// einsum, experts, combine einsum), microsoft/DeepSpeed,
// deepspeed/moe/sharded_moe.py at 38327e0 (38327e07f6cd39b63418f60cedd1651b0be3e7c3),
// with deepspeed/moe/layer.py (MoE: the defaults users get).
//
// Dims: B batch, L length, G = 1 group, S = B * L tokens (`input.reshape(-1,
// d_model)`), E experts, C expert capacity, M model dim (hidden_size), H
// expert hidden dim, N = M. DeepSpeed's einsum letters s, e, c, m are S, E, C, M.
// One process: no expert parallelism, so the all-to-alls, the all-reduce of the
// capacity and the tensor-parallel token drops are identities (not modelled).
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "moeref/frame/frame.hpp"
#include "moeref/frame/hparam_table.hpp"

namespace moeref {

// TopKGate's arguments that every k reads, under MoE's names and defaults.
struct DeepspeedGateHparams {
  double capacity_factor = 0.0;
  double eval_capacity_factor = 0.0;
  int64_t min_capacity = 0;
  std::string noisy_gate_policy;  // "None", "Jitter" or "RSample"
  bool drop_tokens = true;

  // TopKGate.forward: self.capacity_factor if self.training else self.eval_capacity_factor.
  double capacity_factor_for(bool train) const { return train ? capacity_factor : eval_capacity_factor; }
};

// What MOELayer hands its gate: the logits [G, S, E] (step "logits").
struct DeepspeedGatingInputs {
  const Tensor* logits = nullptr;
};

// What the gate returns: l_aux, combine_weights [G, S, E, C], dispatch_mask
// [G, S, E, C] int32 and exp_counts [E] int32 (steps).
struct DeepspeedGatingOutputs {
  float l_aux = 0.0f;
  const Tensor* combine_weights = nullptr;
  const Tensor* dispatch_mask = nullptr;
  const Tensor* exp_counts = nullptr;
};

using DeepspeedGatingFunction = std::function<DeepspeedGatingOutputs(const DeepspeedGatingInputs& inputs)>;

// E; the tokens (B and L, or G = 1 and S); M when the router runs or in scope
// "layer"; H in scope "layer"; N = M. The capacity is the gate's to derive.
void resolve_deepspeed_dims(Frame& frame);

// MOELayer.forward around `gating`: the dims (resolve_deepspeed_dims); x, the step "inputs" [G, S, M]; TopKGate's
// 'Jitter' (training only: "jitter_uniform" [G, S, M], steps "jitter" and
// "input_jittered"), the router "logits" = input_fp32 . router_weights (no
// bias); the gate; in scope "layer" the experts (frame/mtf_expert_layer.hpp:
// act(x . wi[e]) . wo[e] on the dispatched slots, the combine einsum) with
// activation relu; the loss "l_aux" (returned unscaled: the caller scales it).
void deepspeed_moe_layer(Frame& frame, const DeepspeedGateHparams& hparams, const DeepspeedGatingFunction& gating);

// The gate's return: records dispatch_mask = combine_weights.bool() [G, S, E, C].
DeepspeedGatingOutputs deepspeed_gate_outputs(Frame& frame, float l_aux, const Tensor& combine_weights,
                                              const Tensor& exp_counts);

// Declares capacity_factor, eval_capacity_factor, min_capacity,
// noisy_gate_policy (`policies` lists the ones the gate reads) and drop_tokens.
template <typename P>
void declare_deepspeed_gate_hparams(HparamTable<P>& table, const std::vector<std::string>& policies,
                                    const char* policy_meaning, const char* drop_tokens_meaning) {
  const char* gate = "sharded_moe.py: TopKGate; layer.py: MoE";
  table.number("capacity_factor", &P::capacity_factor)
      .defaults_to(1.0)
      .at_least(0.0)
      .train_only()
      .means("Training capacity factor: C = max(ceil(f32(S / E) * f32(k * capacity_factor)), min_capacity).")
      .cites(gate)
      .about("capacity_factor");
  table.number("eval_capacity_factor", &P::eval_capacity_factor)
      .defaults_to(1.0)
      .at_least(0.0)
      .eval_only()
      .means("The capacity factor when train is false.")
      .cites(gate)
      .about("capacity_factor");
  table.integer("min_capacity", &P::min_capacity)
      .defaults_to(4)
      .between(0, kMaxHparamExtent)
      .means("Lower bound on C (MoE's default 4; TopKGate's own default is 8).")
      .cites(gate)
      .about("min_capacity");
  table.choice("noisy_gate_policy", &P::noisy_gate_policy, policies)
      .defaults_to("None")
      .means(policy_meaning)
      .cites(gate)
      .about("router_policy");
  table.flag("drop_tokens", &P::drop_tokens).defaults_to(true).means(drop_tokens_meaning).cites(gate).about("dropless");
}

}  // namespace moeref
