// The token scaffolding of the PyTorch MoE sources (Hugging Face Switch
// Transformers and NLLB-MoE, DeepSpeed, fairseq, Tutel, MegaBlocks): how each
// holds its tokens, its router (a torch.nn.Linear), and the per-token experts
// of the sources that dispatch by boolean masks instead of [G, S, E, C]
// tensors.
//
// Dims: B batch, L length, G groups, S tokens per group, E experts, K ranks,
//       M model dim, H expert hidden dim, N expert output dim (= M).
// The sources route [batch, sequence, hidden] inputs either one sequence per
// group (Hugging Face Switch: G = B, S = L) or every token of the call as one
// group (`input.reshape(-1, d_model)`: G = 1, S = B * L); spec/notation.md §1.
#pragma once

#include <string>
#include <vector>

#include "moeref/frame/frame.hpp"
#include "moeref/ops/mtf_activations.hpp"

namespace moeref {

enum class TorchTokenGroups {
  kOneSequencePerGroup,  // G = B, S = L
  kAllTokensOneGroup,    // G = 1, S = B * L
};

// E (required); tokens given as B and L, or as G and S (G must be 1 for
// kAllTokensOneGroup); M when the router runs or in scope "layer", H in scope
// "layer", N = M. `model_name` and `hidden_name` are the source's names for M
// and H, for messages.
void resolve_torch_token_dims(Frame& frame, TorchTokenGroups groups, const std::string& model_name,
                              const std::string& hidden_name);

// x [B, L, M] or [G, S, M], U[-1, 1) when generated, recorded as the step
// "inputs" [G, S, M] (a row-major reshape); nullptr in scope "gating" when the
// logits are supplied and x is not.
const Tensor* take_torch_tokens_inputs(Frame& frame);

// An optional per-token input `name` ([B, L] or [G, S], as x), float32, and
// its row-major reshape to [G, S] recorded as the step `step_name`; nullptr
// when the config does not supply it.
const Tensor* take_torch_tokens_optional(Frame& frame, const std::string& name, const std::string& step_name);

// The router: the supplied logits [G, S, E], or torch.nn.Linear(M, E) on
// `hidden` [G, S, M]: logits = hidden . router_weights (+ router_bias). The
// weight is the input "router_weights" [M, E] (the transpose of Linear.weight
// [E, M]), generated as torch's default init U(-1/sqrt(M), 1/sqrt(M)); with
// `bias`, "router_bias" [E] likewise. Each logit is the sum over m (and the
// bias) accumulated in double in index order and rounded once (notation
// §4.5). Records the step "logits".
const Tensor& torch_router_logits(Frame& frame, const Tensor* hidden, bool bias);

// index = torch.argmax(scores, dim=-1) (the first maximum), as the checker
// forces it (Frame::forced_decision), recorded as `index_name` [G, S]; and
// mask = F.one_hot(index, E), recorded as `mask_name` [G, S, E].
struct TorchArgmaxChoice {
  const Tensor* index = nullptr;
  const Tensor* mask = nullptr;
};
TorchArgmaxChoice torch_argmax_choice(Frame& frame, const std::string& index_name, const std::string& mask_name,
                                      const Tensor& scores);

// One rank of a per-token dispatch, each [G, S] int32: the expert chosen and
// whether the token is sent to it (0 or 1).
struct TorchTokenRank {
  const Tensor* expert = nullptr;
  const Tensor* dispatched = nullptr;
};

// The experts of a sparse MLP that gathers each expert's tokens by a boolean
// mask (`expert(hidden_states[router_mask[:, :, idx]])`) and writes the outputs
// back at the same tokens: per token and rank, h = act(x . wi[e]) [H], then
// torch.nn.Dropout in training when `dropout_rate` > 0 (keep iff U <
// f32(1 - rate), kept values times f32(1 / f32(1 - rate))), then h . wo[e] [N].
// A token not dispatched at a rank gets zeros. Weights are the inputs "wi"
// [E, M, H] and "wo" [E, H, N] (frame/mtf_expert_layer.hpp), the draw
// "dropout_uniform" [G, S, K, H]. Records expert_hidden [G, S, K, H],
// expert_hidden_dropout (with dropout) and expert_outputs [G, S, K, N]; returns
// expert_outputs. Products are Eigen float32 GEMMs over each expert's gathered
// tokens (notation §4.6).
// With `biases` (nn.Linear(..., bias=True), NLLB-MoE's fc1 and fc2), the inputs
// "wi_bias" [E, H] and "wo_bias" [E, N] are added after each product.
const Tensor& torch_token_experts(Frame& frame, const Tensor& x, const std::vector<TorchTokenRank>& ranks,
                                  ops::Activation activation, double dropout_rate, bool biases = false);

// The index form (frame/routing_index_form.hpp) of a top-k routing held as
// per-expert masks: `top_idx` [G, S, K] int32 (each token's experts, rank by
// rank), `kept` [G, S, E] int32 0/1 (the choice holds a slot), `locations`
// [G, S, E] int32 (its slot), `weights` [G, S, E] float32 (its combine weight).
// Records routing_expert, routing_slot and routing_weight [G, S, K].
void record_topk_index_form(Frame& frame, const Tensor& top_idx, const Tensor& kept, const Tensor& locations,
                            const Tensor& weights);

}  // namespace moeref
