// megablocks_dropless: MegaBlocks' LearnedRouter and dropless MoE (dMoE), literal to the source.
//
// Source: databricks/megablocks at 78eea65 (78eea65fda01e638af36ae38853bc51efb04a4b4),
//   megablocks/layers/router.py: LearnedRouter (jitter, _top_k, forward), batched_router_zloss;
//   megablocks/layers/moe.py: MoE.forward, ParallelMLP.forward, batched_load_balancing_loss;
//   megablocks/layers/dmoe.py: ParallelDroplessMLP (indices_and_padded_bins,
//     sparse_forward_once, grouped_forward_once); megablocks/backend/kernels.py:
//     padded_gather, padded_scatter; megablocks/layers/mlp.py: SparseMLP, GroupedMLP.
// Spec: spec/variants/megablocks_dropless.md.
//
// Dims: B batch, L length, G = 1 group, S = B * L tokens (`x.view(-1, x.shape[-1])`),
//       E experts, K = moe_top_k ranks, M model dim (hidden_size), H expert hidden dim
//       (ffn_hidden_size), N = M. There is no capacity: every choice is computed.
//
// Each step is one statement (or a few) of the source, in its order, under its
// variable name; a reassigned variable gets a suffix naming the stage. The token's
// top-k selection is recorded as the 0/1 "topk_mask" before "expert_indices": torch
// leaves the choice among equal scores unspecified.

#include <algorithm>
#include <optional>
#include <string>
#include <vector>

#include "moeref/error.hpp"
#include "moeref/frame/define_variant.hpp"
#include "moeref/frame/forced_choice.hpp"
#include "moeref/layers/torch_tokens.hpp"
#include "moeref/ops/deepspeed_gating.hpp"
#include "moeref/ops/hf_router_losses.hpp"
#include "moeref/ops/megablocks_router.hpp"
#include "moeref/ops/torch_softmax.hpp"

namespace moeref {

namespace {

// The megablocks Arguments fields the router and the dropless MLP read.
struct MegablocksDroplessHparams {
  int64_t moe_top_k = 1;
  std::optional<double> moe_normalize_expert_weights;
  std::optional<double> moe_jitter_eps;
  double moe_loss_weight = 0.0;
  double moe_zloss_weight = 0.0;
  bool uniform_expert_assignment = false;
  std::string activation_fn;
};

void declare_hparams(HparamTable<MegablocksDroplessHparams>& table) {
  using P = MegablocksDroplessHparams;
  const char* router = "router.py: LearnedRouter";
  table.integer("moe_top_k", &P::moe_top_k)
      .defaults_to(1)
      .between(1, kMaxHparamExtent)
      .means("Experts per token: scores.max for 1, torch.topk otherwise.")
      .cites(router)
      .about("top_k");
  table.optional_number("moe_normalize_expert_weights", &P::moe_normalize_expert_weights)
      .at_least(1e-6)
      .means(
          "If set (p), the top-k weights are divided by their p-norm (1: renormalise to sum 1); null: raw "
          "probabilities.")
      .cites(router)
      .about("gate_renormalization");
  table.optional_number("moe_jitter_eps", &P::moe_jitter_eps)
      .between(0.0, 1.0)
      .train_only()
      .means("If set, when training the router input (only) is multiplied by U(1 - eps, 1 + eps).")
      .cites(router)
      .about("jitter");
  table.number("moe_loss_weight", &P::moe_loss_weight)
      .defaults_to(0.1)
      .at_least(0.0)
      .train_only()
      .means("The load-balancing loss weight (the loss is saved in training only).")
      .cites("moe.py: ParallelMLP.forward, batched_load_balancing_loss")
      .about("balance_loss_coef");
  table.number("moe_zloss_weight", &P::moe_zloss_weight)
      .defaults_to(0.0)
      .at_least(0.0)
      .means("If > 0, the router z-loss mean(logsumexp(logits)^2) times this.")
      .cites("router.py: batched_router_zloss")
      .about("z_loss_coef");
  table.flag("uniform_expert_assignment", &P::uniform_expert_assignment)
      .defaults_to(false)
      .means("Benchmarking mode: rank r of token t goes to expert (t * K + r) % E; the weights are unchanged.")
      .cites(router)
      .about("gating_function");
  table.choice("activation_fn", &P::activation_fn, {"gelu_tanh", "relu"})
      .defaults_to("gelu_tanh")
      .means("The experts' activation (Arguments default: F.gelu(approximate='tanh')).")
      .cites("arguments.py: DEFAULT_ACTIVATION_FN")
      .about("activation");
}

// dMoE.forward: router(x), then experts(x, scores, expert_weights, top_experts).
void megablocks_dropless(Frame& f, const MegablocksDroplessHparams& hp) {
  resolve_torch_token_dims(f, TorchTokenGroups::kAllTokensOneGroup, "hidden_size", "ffn_hidden_size");
  const int64_t G = f.dim("G"), S = f.dim("S"), E = f.dim("E");
  if (hp.moe_top_k > E) {
    fail_input("hparams.moe_top_k", std::to_string(hp.moe_top_k),
               "at most E = " + std::to_string(E) + " (torch.topk(scores, moe_top_k) raises)");
  }
  const int64_t K = hp.moe_top_k;
  const Tensor* x = take_torch_tokens_inputs(f);  // [G, S, M]

  // ---- LearnedRouter.forward ---------------------------------------------------------
  // if self.training and moe_jitter_eps is not None: x = x * self.jitter(x) (the router's x only)
  const Tensor* router_x = x;
  if (f.train() && hp.moe_jitter_eps && !f.supplied("logits")) {
    const int64_t M = f.dim("M");
    const Tensor& uniform = f.inputs().uniform_draw("jitter_uniform", {"G", "S", "M"}, {G, S, M});
    const Tensor& jitter = f.step("jitter", {uniform}, ops::megablocks_jitter(uniform, *hp.moe_jitter_eps));
    Tensor& jittered = f.float32_step("x_jittered", {x, jitter}, {"G", "S", "M"});  // [G, S, M]
    for (size_t i = 0; i < jittered.f32.size(); ++i) jittered.f32[i] = x->f32[i] * jitter.f32[i];
    router_x = &jittered;
  }
  // logits = self.layer(x.view(-1, x.shape[-1])); scores = logits.softmax(dim=-1)
  const Tensor& logits = torch_router_logits(f, router_x, false);  // [G, S, E]
  Tensor& scores = f.float32_step("scores", {logits}, {"G", "S", "E"});
  ops::torch_softmax(logits.f32.data(), scores.f32.data(), G * S, E);
  // expert_weights, expert_indices = self._top_k(scores): scores.max(dim=-1) for k = 1 (the first
  // maximum), torch.topk otherwise; the selection as the checker forces it.
  const Tensor& topk_mask = f.step("topk_mask", {scores},
                                   with_forced_keep(ops::torch_topk_over_e_mask(scores, K),
                                                    f.forced_decision("topk_mask", {G, S, E})));  // [G, S, E]
  const Tensor* expert_indices =
      &f.step("expert_indices", {topk_mask, scores}, ops::topk_indices_of_mask(topk_mask, scores, K));  // [G, S, K]
  Tensor weights = Tensor::float32({"G", "S", "K"}, {G, S, K});
  for (size_t i = 0; i < weights.f32.size(); ++i) {
    const int32_t e = expert_indices->i32[i];
    weights.f32[i] =
        e >= 0 ? scores.f32[(i / static_cast<size_t>(K)) * static_cast<size_t>(E) + static_cast<size_t>(e)] : 0.0f;
  }
  const Tensor* expert_weights = &f.step("expert_weights", {scores, expert_indices}, std::move(weights));
  if (hp.moe_normalize_expert_weights) {
    // expert_weights = expert_weights / torch.norm(expert_weights, p=..., dim=-1, keepdim=True)
    const Tensor& norm = f.step("expert_weights_norm", {expert_weights},
                                ops::torch_norm_p(*expert_weights, *hp.moe_normalize_expert_weights));  // [G, S]
    Tensor normalized = *expert_weights;
    for (size_t i = 0; i < normalized.f32.size(); ++i)
      normalized.f32[i] = normalized.f32[i] / norm.f32[i / static_cast<size_t>(K)];
    expert_weights = &f.step("expert_weights_normalized", {expert_weights, norm}, std::move(normalized));
  }
  if (hp.uniform_expert_assignment) {
    expert_indices =
        &f.step("expert_indices_uniform", {expert_indices}, ops::megablocks_uniform_assignment(*expert_indices, E));
  }

  // ---- ParallelDroplessMLP: sort, histogram, bins; no capacity ------------------------
  // tokens_per_expert = ops.histogram(top_experts, num_experts)
  const Tensor& tokens_per_expert =
      f.step("tokens_per_expert", {expert_indices}, ops::megablocks_tokens_per_expert(*expert_indices, E));  // [E]
  // The row each (token, rank) takes in its expert's bin after ops.sort: moeref's index form slot.
  const Tensor& bin_rows = f.step("bin_rows", {expert_indices}, ops::megablocks_bin_rows(*expert_indices, E));
  f.step("routing_expert", {expert_indices}, *expert_indices);
  f.step("routing_slot", {bin_rows}, bin_rows);
  f.step("routing_weight", {expert_weights}, *expert_weights);
  // No capacity: the record holds the largest bin (what MoE's expert_capacity == 0 would use).
  f.capacity({{"expert_capacity", *std::max_element(tokens_per_expert.i32.begin(), tokens_per_expert.i32.end())},
              {"rule", "megablocks dMoE: dropless; the largest tokens_per_expert, nothing dropped"},
              {"num_tokens", S}});

  if (f.layer_scope()) {
    // padded_gather, self.mlp (act(x . w1^T) . w2, no biases), padded_scatter: out[t, k] = y * w, then
    // out.sum(dim=1) over the ranks.
    std::vector<TorchTokenRank> ranks;
    std::vector<Tensor> columns;
    for (int64_t k = 0; k < K; ++k) {
      Tensor expert = Tensor::int32({"G", "S"}, {G, S}), all = Tensor::int32({"G", "S"}, {G, S});
      for (int64_t t = 0; t < G * S; ++t) {
        expert.i32[static_cast<size_t>(t)] = expert_indices->i32[static_cast<size_t>(t * K + k)];
        all.i32[static_cast<size_t>(t)] = 1;
      }
      columns.push_back(std::move(expert));
      columns.push_back(std::move(all));
    }
    for (int64_t k = 0; k < K; ++k) {
      const Tensor& expert =
          f.step("top_experts_" + std::to_string(k), {expert_indices}, columns[static_cast<size_t>(2 * k)]);
      ranks.push_back({&expert, &f.step("dispatched_" + std::to_string(k), {expert_indices},
                                        columns[static_cast<size_t>(2 * k + 1)])});
    }
    const ops::Activation activation = hp.activation_fn == "relu" ? ops::Activation::kRelu : ops::Activation::kGelu;
    const Tensor& y = torch_token_experts(f, *x, ranks, activation, 0.0);  // [G, S, K, N]
    const int64_t N = f.dim("N");
    Tensor& outputs = f.float32_step("outputs", {y, expert_weights}, {"G", "S", "N"});  // [G, S, N]
    for (int64_t t = 0; t < G * S; ++t) {
      for (int64_t n = 0; n < N; ++n) {
        float sum = 0.0f;
        for (int64_t k = 0; k < K; ++k) {
          const float scaled =
              y.f32[static_cast<size_t>((t * K + k) * N + n)] * expert_weights->f32[static_cast<size_t>(t * K + k)];
          sum = k == 0 ? scaled : sum + scaled;
        }
        outputs.f32[static_cast<size_t>(t * N + n)] = sum;
      }
    }
  }

  // ---- Losses ------------------------------------------------------------------------
  if (f.train() && hp.moe_loss_weight > 0.0) {
    // save_load_balancing_loss((tokens_per_expert, scores)); batched_load_balancing_loss for one layer.
    f.loss("load_balancing_loss",
           ops::megablocks_load_balancing_loss(tokens_per_expert, scores, hp.moe_loss_weight, K));
  }
  if (hp.moe_zloss_weight > 0.0) {
    // batched_router_zloss: moe_zloss_weight * torch.logsumexp(logits, dim=1).square().mean()
    const Tensor& log_z = f.step("log_z", {logits}, ops::torch_logsumexp(logits));  // [G, S]
    const float mean = ops::hf_router_z_loss(ops::torch_square(log_z));
    f.loss("router_zloss", static_cast<float>(hp.moe_zloss_weight) * mean);
  }
}

// The one decision a backend may take the other way at a near tie: each token's top-k over the scores.
std::optional<NearTie> megablocks_dropless_near_tie(const NearTieQuery& query, const MegablocksDroplessHparams&) {
  if (query.step == "topk_mask") return top_k_selection_near_tie(query, "scores");
  return std::nullopt;
}

}  // namespace

VariantSpec megablocks_dropless_variant() {
  return define_variant<MegablocksDroplessHparams>(
      {"megablocks_dropless", "MegaBlocks LearnedRouter with the dropless dMoE: top-k, no capacity, nothing dropped",
       "databricks/megablocks megablocks/layers/router.py: LearnedRouter; dmoe.py: ParallelDroplessMLP; moe.py: "
       "batched_load_balancing_loss",
       "spec/variants/megablocks_dropless.md"},
      declare_hparams, megablocks_dropless, megablocks_dropless_near_tie);
}

}  // namespace moeref
