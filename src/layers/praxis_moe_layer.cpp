#include "moeref/layers/praxis_moe_layer.hpp"

#include <cmath>

#include "moeref/error.hpp"
#include "moeref/frame/mtf_expert_layer.hpp"
#include "moeref/json_number.hpp"
#include "moeref/ops/bfloat16.hpp"
#include "moeref/ops/elementwise.hpp"
#include "moeref/ops/mtf_activations.hpp"
#include "moeref/ops/praxis_grouping.hpp"
#include "moeref/ops/router.hpp"

namespace moeref {

namespace {

// reshape([num_groups, g_len, ...]) keeps row-major order: only the dims are relabelled.
Tensor grouped(const Tensor& tensor, std::vector<std::string> dims, std::vector<int64_t> shape) {
  Tensor out = tensor;
  out.dims = std::move(dims);
  out.shape = std::move(shape);
  return out;
}

// WeightInit.Uniform((1 / fan_in) ** 0.5 * 3.0 ** 0.5), the scale of every weight of the layer.
double uniform_scale(int64_t fan_in) { return std::sqrt(1.0 / static_cast<double>(fan_in)) * std::sqrt(3.0); }

}  // namespace

void resolve_praxis_layer_dims(Frame& f, const PraxisLayerHparams& hp) {
  f.required_dim("E", "the number of experts (num_experts), an integer >= 1");
  if (f.batch_length_layout("num_groups")) {
    const int64_t B = f.dim("B"), L = f.dim("L");
    if (!hp.num_groups) {
      fail_input("hparams.num_groups", "null",
                 "an integer >= 1 when dims give B and L (TransformerFeedForwardMoe asserts num_groups > 0)");
    }
    const ops::PraxisGrouping grouping = ops::praxis_moe_groups(B * L, *hp.num_groups, hp.min_group_size);
    f.derived_dim("G", grouping.num_groups, "num_groups, lowered by min_group_size");
    f.derived_dim("S", grouping.group_size, "B*L / G");
  }
  f.resolve_model_dims(!f.supplied("logits"), "input_dims", "hidden_dims");
  if (f.layer_scope()) {
    // TransformerFeedForwardMoe: "Assume output_dims == input_dims".
    f.derived_dim("N", f.dim("M"), "N = M in TransformerFeedForwardMoe");
  }
}

void praxis_moe_layer(Frame& f, const PraxisLayerHparams& hp, const PraxisGatingFunction& gating) {
  if (hp.moe_load_balance_loss_weight == 0.0) {
    // __call__: assert self.moe_load_balance_loss_weight.
    fail_input("hparams.moe_load_balance_loss_weight", "0", "a number > 0 (TransformerFeedForwardMoe asserts it)");
  }
  const int64_t G = f.dim("G"), S = f.dim("S"), E = f.dim("E"), M = f.dim_or("M", 0);
  const bool batch_length_layout = f.config().dims.count("B") > 0;
  const std::vector<std::string> token_dims =
      batch_length_layout ? std::vector<std::string>{"B", "L"} : std::vector<std::string>{"G", "S"};
  const std::vector<int64_t> token_shape = f.extents(token_dims);

  // ---- Inputs --------------------------------------------------------------------
  InputSet& inputs = f.inputs();
  const Tensor* x = nullptr;
  // x feeds the router unless logits are supplied, and the experts in scope "layer";
  // when supplied with logits in scope "gating" it is only recorded as `inputs`.
  if (f.layer_scope() || !f.supplied("logits") || f.supplied("x")) {
    x = &inputs.float_input("x", {token_dims[0], token_dims[1], "M"}, {token_shape[0], token_shape[1], M}, -1.0, 1.0);
  }
  const Tensor* logits_given = inputs.optional_input("logits", {"G", "S", "E"}, {G, S, E});
  // setup: the gate weight is WeightInit.Uniform((1 / input_dims) ** 0.5 * 3.0 ** 0.5).
  const Tensor* gate =
      logits_given ? nullptr
                   : &inputs.float_input("router_weights", {"M", "E"}, {M, E}, -uniform_scale(M), uniform_scale(M));
  const Tensor* paddings = inputs.optional_input("paddings", token_dims, token_shape);
  const bool bfloat16 = hp.fprop_dtype == "bfloat16";
  for (size_t i = 0; paddings != nullptr && i < paddings->f32.size(); ++i) {
    const float p = paddings->f32[i];
    if (bfloat16 && p != 0.0f && p != 1.0f) {
      std::string value;
      append_float32(value, p);
      fail_input("inputs.paddings" + paddings->named_index(static_cast<int64_t>(i)), value,
                 "0 or 1 with fprop_dtype bfloat16 (fractional paddings in bfloat16 are not modelled)");
    }
    if (!(p >= 0.0f && p <= 1.0f)) {
      std::string value;
      append_float32(value, p);
      fail_input("inputs.paddings" + paddings->named_index(static_cast<int64_t>(i)), value,
                 "a padding in [0, 1] (1 = padded; fractions are allowed)");
    }
  }

  // ---- _dispatch_and_combine_expert_outputs: reshape [B, L, ...] to [G, S, ...] ----
  // reshaped_inputs = inputs.reshape([num_groups, g_len, m_dim])
  const Tensor* reshaped_inputs = x ? &f.step("inputs", {x}, grouped(*x, {"G", "S", "M"}, {G, S, M})) : nullptr;
  // reshaped_paddings = paddings.reshape([num_groups, g_len]).astype(fprop_dtype)
  const Tensor* reshaped_paddings =
      paddings ? &f.step("paddings", {paddings}, grouped(*paddings, {"G", "S"}, {G, S})) : nullptr;
  // logits = jnp.einsum('gsm,me->gse', reshaped_inputs, self.theta.gate), then .astype(float32).
  auto in_fprop_dtype = [&](const Tensor& tensor) {
    Tensor out = tensor;
    for (float& v : out.f32) v = bfloat16 ? ops::round_to_bfloat16(v) : v;
    return out;
  };
  const Tensor* logits = logits_given ? &f.step("logits", {logits_given}, in_fprop_dtype(*logits_given)) : nullptr;
  if (logits == nullptr && bfloat16) {
    // fprop_dtype bfloat16: the activations and self.theta.gate are bfloat16, the einsum's
    // result is bfloat16; top2_gating_on_logits then converts it to float32 (exactly).
    const Tensor& inputs_bf16 = f.step("inputs_bfloat16", {reshaped_inputs}, in_fprop_dtype(*reshaped_inputs));
    const Tensor& gate_bf16 = f.step("router_weights_bfloat16", {gate}, in_fprop_dtype(*gate));  // [M, E]
    Tensor& computed = f.float32_step("logits", {inputs_bf16, gate_bf16}, {"G", "S", "E"});      // [G, S, E]
    ops::bfloat16_matmul(inputs_bf16.f32.data(), gate_bf16.f32.data(), G * S, M, E, computed.f32.data());
    logits = &computed;
  }
  if (logits == nullptr) {
    Tensor& computed = f.float32_step("logits", {reshaped_inputs, gate}, {"G", "S", "E"});  // [G, S, E]
    ops::router_logits(reshaped_inputs->f32.data(), gate->f32.data(), G * S, M, E, computed.f32.data());
    logits = &computed;
  }

  // ---- The gating function (compute_gating) ------------------------------------------
  const PraxisGatingOutputs gated = gating({logits, reshaped_paddings});

  if (f.layer_scope()) {
    // denom = (dispatch_0 + dispatch_1 + dispatch_2).astype(f32); add_summary('dispatch_k', dispatch_k / denom).
    const std::vector<const Tensor*>& counts = gated.dispatch_counts;
    for (size_t k = 0; k < counts.size(); ++k) {
      const float denom = static_cast<float>(counts[0]->i32[0] + counts[1]->i32[0] + counts[2]->i32[0]);
      f.scalar_step("summary_dispatch_" + std::to_string(k), {counts[k], counts[0], counts[1], counts[2]},
                    static_cast<float>(counts[k]->i32[0]) / denom);
    }
    // The experts: einsum('gsec,gsm->egcm', dispatch, inputs), activation(einsum(., wi_0)),
    // einsum(., wo_0), einsum('gecm,gsec->gsm', expert_outputs, combine).
    const int64_t H = f.dim("H"), N = f.dim("N");
    MtfExpertWeights weights;
    weights.wi = {&inputs.float_input("wi_0", {"E", "M", "H"}, {E, M, H}, -uniform_scale(M), uniform_scale(M))};
    weights.wo = &inputs.float_input("wo_0", {"E", "H", "N"}, {E, H, N}, -uniform_scale(H), uniform_scale(H));
    const Tensor& outputs = mtf_expert_layer(f, *reshaped_inputs, *gated.dispatch_tensor, *gated.combine_tensor,
                                             ops::activations_named({hp.activation}), weights, std::nullopt);
    if (reshaped_paddings != nullptr) {
      // __call__: outputs *= (1.0 - paddings[..., None]).astype(fprop_dtype)
      f.step("outputs_nonpadding", {outputs, reshaped_paddings},
             ops::scale_by(outputs, ops::one_minus(*reshaped_paddings)));  // [G, S, N]
    }
  }

  // top2_gating_on_logits returns aux_loss; __call__ multiplies it by moe_load_balance_loss_weight.
  f.loss("aux_loss", gated.aux_loss);
  f.loss("aux_moe_load_balance_loss", gated.aux_loss * static_cast<float>(hp.moe_load_balance_loss_weight));
}

}  // namespace moeref
