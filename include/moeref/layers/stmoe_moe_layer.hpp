// st-moe-pytorch's layers around TopNGating: MoE and SparseMoEBlock
// (lucidrains/st-moe-pytorch, st_moe_pytorch/st_moe_pytorch.py at d94e65d:
// MoE.forward, SparseMoEBlock.forward, Experts.forward, Expert, GEGLU, RMSNorm).
//
// MoE: the gate gives dispatch and combine tensors; expert_inputs =
// einsum('b n d, b n e c -> b e c d', x, dispatch); every expert is a GEGLU
// feed-forward with biases; output = einsum('b e c d, b n e c -> b n d',
// expert_outputs, combine); total_aux_loss = balance_loss * balance_loss_coef +
// router_z_loss * router_z_loss_coef.
// SparseMoEBlock: x = ff_before(x) + x (optional); x = moe(moe_prenorm(x)) + x;
// x = ff_after(x) + x (optional); ff_before and ff_after are Expert(dim,
// prenorm=True): RMSNorm, then the same GEGLU feed-forward.
//
// Dims: B batch, L length (st-moe's b and n when given as B and L), G groups and
//       S group size (one group is one sequence: G = b, S = n), E experts,
//       C expert capacity, M model dim (dim), H expert hidden dim
//       (int(M * expert_hidden_mult * 2 / 3)), F hidden dim of ff_before and
//       ff_after (int(M * 4 * 2 / 3)), K = top_n.
#pragma once

#include <functional>
#include <string>

#include "moeref/frame/frame.hpp"
#include "moeref/frame/hparam_table.hpp"

namespace moeref {

// MoE's and SparseMoEBlock's hyperparameters; the variant's struct derives from it.
struct StmoeLayerHparams {
  std::string module;  // "MoE" or "SparseMoEBlock"
  double expert_hidden_mult = 4.0;
  double balance_loss_coef = 0.0;
  double router_z_loss_coef = 0.0;
  bool add_ff_before = false;
  bool add_ff_after = false;
};

// What the gate (TopNGating.forward) returns.
struct StmoeGatingOutputs {
  const Tensor* dispatch_tensor = nullptr;  // [G, S, E, C]: float32 (straight-through) or int32 0/1
  const Tensor* combine_tensor = nullptr;   // [G, S, E, C] float32
  float balance_loss = 0.0f;
  float router_z_loss = 0.0f;
};

// The gate, given the tensor it routes ([G, S, M] or [B, L, M]; nullptr when the
// config supplies gate_logits in scope "gating").
using StmoeGatingFunction = std::function<StmoeGatingOutputs(const Tensor* x)>;

// E; G and S (given, or G = B and S = L: one group per sequence); M when the
// router or the layer needs it; H and, with the feed-forwards of
// SparseMoEBlock, F in scope "layer".
void resolve_stmoe_layer_dims(Frame& frame, const StmoeLayerHparams& hparams, bool needs_router);

// Runs the layer (scope "layer") or only the gate (scope "gating") around `gating`,
// and records the losses balance_loss and router_z_loss (and, in scope "layer",
// total_aux_loss).
void stmoe_moe_layer(Frame& frame, const StmoeLayerHparams& hparams, const StmoeGatingFunction& gating);

// Declares MoE's and SparseMoEBlock's hyperparameters (expert_hidden_mult, the two
// loss coefficients, module, add_ff_before, add_ff_after) in a variant's table.
template <typename P>
void declare_stmoe_layer_hparams(HparamTable<P>& table) {
  const char* moe = "st_moe_pytorch.py: MoE";
  const char* block = "st_moe_pytorch.py: SparseMoEBlock";
  table.number("expert_hidden_mult", &P::expert_hidden_mult)
      .defaults_to(4.0)
      .at_least(0.0)
      .means("H = int(M * expert_hidden_mult * 2 / 3), each expert's GEGLU width.")
      .cites(moe)
      .about("expert_hidden");
  table.number("balance_loss_coef", &P::balance_loss_coef)
      .defaults_to(1e-2)
      .means("total_aux_loss = balance_loss * balance_loss_coef + router_z_loss * router_z_loss_coef.")
      .cites(moe)
      .about("balance_loss_coef");
  table.number("router_z_loss_coef", &P::router_z_loss_coef)
      .defaults_to(1e-3)
      .means("The router z-loss's weight in total_aux_loss.")
      .cites(moe)
      .about("z_loss_coef");
  table.choice("module", &P::module, {"MoE", "SparseMoEBlock"})
      .defaults_to("MoE")
      .means("Scope layer runs MoE, or SparseMoEBlock (RMSNorm, residual, optional GEGLU feed-forwards) around it.")
      .cites(block)
      .about("moe_block");
  table.flag("add_ff_before", &P::add_ff_before)
      .defaults_to(false)
      .means("SparseMoEBlock: x = ff_before(x) + x before the MoE.")
      .cites(block)
      .about("moe_block");
  table.flag("add_ff_after", &P::add_ff_after)
      .defaults_to(true)
      .means("SparseMoEBlock: x = ff_after(x) + x after the MoE.")
      .cites(block)
      .about("moe_block");
}

}  // namespace moeref
