#include "moeref/layers/deepspeed_moe_layer.hpp"

#include <optional>

#include "moeref/frame/mtf_expert_layer.hpp"
#include "moeref/layers/torch_tokens.hpp"
#include "moeref/ops/dispatch_tensor.hpp"
#include "moeref/ops/torch_random.hpp"

namespace moeref {

void resolve_deepspeed_dims(Frame& f) {
  resolve_torch_token_dims(f, TorchTokenGroups::kAllTokensOneGroup, "hidden_size", "the expert's hidden size");
}

DeepspeedGatingOutputs deepspeed_gate_outputs(Frame& f, float l_aux, const Tensor& combine_weights,
                                              const Tensor& exp_counts) {
  DeepspeedGatingOutputs out;
  out.l_aux = l_aux;
  out.combine_weights = &combine_weights;
  // dispatch_mask = combine_weights.bool()
  out.dispatch_mask = &f.step("dispatch_mask", {combine_weights}, ops::dispatch_from_combine(combine_weights));
  out.exp_counts = &exp_counts;
  return out;
}

void deepspeed_moe_layer(Frame& f, const DeepspeedGateHparams& hp, const DeepspeedGatingFunction& gating) {
  resolve_deepspeed_dims(f);
  const int64_t G = f.dim("G"), S = f.dim("S");
  // reshaped_input = input[0].reshape(-1, d_model)
  const Tensor* reshaped_input = take_torch_tokens_inputs(f);  // [G, S, M]

  // TopKGate.forward: input_fp32 = input.float() (float32 already).
  const Tensor* input_fp32 = reshaped_input;
  if (hp.noisy_gate_policy == "Jitter" && f.train() && !f.supplied("logits")) {
    // input_fp32 = multiplicative_jitter(input_fp32): x * Uniform(1 - 1e-2, 1 + 1e-2).rsample(x.shape).
    // Not in place: the experts get the clean reshaped_input.
    const int64_t M = f.dim("M");
    const Tensor& jitter_uniform = f.inputs().uniform_draw("jitter_uniform", {"G", "S", "M"}, {G, S, M});
    const Tensor& jitter =
        f.step("jitter", {jitter_uniform}, ops::torch_distributions_uniform(jitter_uniform, 1.0 - 1e-2, 1.0 + 1e-2));
    Tensor& jittered = f.float32_step("input_jittered", {input_fp32, jitter}, {"G", "S", "M"});  // [G, S, M]
    for (size_t i = 0; i < jittered.f32.size(); ++i) jittered.f32[i] = input_fp32->f32[i] * jitter.f32[i];
    input_fp32 = &jittered;
  }
  // logits = torch.nn.functional.linear(input_fp32, weight=self.wg.weight.float(), bias=None)
  const Tensor& logits = torch_router_logits(f, input_fp32, false);  // [G, S, E]

  // gate_output = top1gating / top2gating / topkgating(logits, ...)
  const DeepspeedGatingOutputs gated = gating({&logits});

  if (f.layer_scope()) {
    // dispatched_input = einsum("sec,sm->ecm", dispatch_mask, reshaped_input); expert_output =
    // self.experts(dispatched_input); combined_output = einsum("sec,ecm->sm", combine_weights,
    // expert_output). The experts are the user's module; moeref's is act(x . wi) . wo with relu.
    const int64_t E = f.dim("E"), M = f.dim("M"), H = f.dim("H"), N = f.dim("N");
    const MtfExpertWeights weights = take_mtf_expert_weights(f, 1, E, M, H, N);
    mtf_expert_layer(f, *reshaped_input, *gated.dispatch_mask, *gated.combine_weights, {ops::Activation::kRelu},
                     weights, std::nullopt);
  }
  // MoE.forward returns (output, l_aux, exp_counts); the caller scales l_aux.
  f.loss("l_aux", gated.l_aux);
}

}  // namespace moeref
