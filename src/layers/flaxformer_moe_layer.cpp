#include "moeref/layers/flaxformer_moe_layer.hpp"

#include <algorithm>
#include <cmath>

#include "moeref/error.hpp"
#include "moeref/frame/mtf_expert_layer.hpp"
#include "moeref/ops/bfloat16.hpp"
#include "moeref/ops/flaxformer_grouping.hpp"
#include "moeref/ops/jax_softmax.hpp"
#include "moeref/ops/mtf_activations.hpp"
#include "moeref/ops/router.hpp"
#include "moeref/ops/torch_softmax.hpp"

namespace moeref {

namespace {

bool batch_length(const Frame& f) { return f.config().dims.count("B") > 0; }

ops::FlaxformerPadding padding_of(const Frame& f, const FlaxformerLayerHparams& hp) {
  if (!batch_length(f)) return {};
  return ops::flaxformer_padding(f.dim("B"), f.dim("L"), f.dim("E"), hp.num_expert_replicas);
}

// _maybe_pad (zeros appended to the batch or to every sequence), then
// jnp.reshape(padded_inputs, (num_groups, tokens_per_group, *hidden_dims)).
Tensor grouped_inputs(const Frame& f, const Tensor& x, const ops::FlaxformerPadding& pad) {
  const int64_t G = f.dim("G"), S = f.dim("S"), M = x.shape.back();
  Tensor out = Tensor::float32({"G", "S", "M"}, {G, S, M});
  if (!batch_length(f)) {
    out.f32 = x.f32;
    return out;
  }
  const int64_t B = f.dim("B"), L = f.dim("L"), padded_L = L + pad.seq_padding;
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t l = 0; l < L; ++l) {
      std::copy_n(x.f32.data() + (b * L + l) * M, M, out.f32.data() + (b * padded_L + l) * M);
    }
  }
  return out;
}

// Router._compute_router_probabilities: jitter on the router input (training only),
// RouterWeights, jax.nn.softmax. Returns router_logits.
const Tensor& router_logits(Frame& f, const FlaxformerLayerHparams& hp, const Tensor* token_inputs) {
  const int64_t G = f.dim("G"), S = f.dim("S"), E = f.dim("E");
  const bool bfloat16 = hp.router_weights_dtype == "bfloat16";
  auto rounded = [&](const Tensor& tensor) {
    Tensor out = tensor;
    for (float& v : out.f32) v = bfloat16 ? ops::round_to_bfloat16(v) : v;
    return out;
  };
  const Tensor* given = f.inputs().optional_input("router_logits", {"G", "S", "E"}, {G, S, E});
  if (given != nullptr) return f.step("router_logits", {given}, rounded(*given));
  const int64_t M = f.dim("M");
  const Tensor* inputs = token_inputs;
  // if apply_jitter and self.jitter_noise > 0: token_inputs *= jax.random.uniform(make_rng('jitter'),
  // shape, float32, minval=1.0 - jitter_noise, maxval=1.0 + jitter_noise). apply_jitter is
  // enable_dropout, i.e. training.
  if (f.train() && hp.jitter_noise > 0.0) {
    const Tensor& uniform = f.inputs().uniform_draw("jitter_uniform", {"G", "S", "M"}, {G, S, M});
    // jax.random.uniform: max(minval, floats * (maxval - minval) + minval), minval and maxval
    // float32 constants.
    const float minval = static_cast<float>(1.0 - hp.jitter_noise);
    const float maxval = static_cast<float>(1.0 + hp.jitter_noise);
    Tensor& jitter = f.float32_step("jitter", {uniform}, {"G", "S", "M"});  // [G, S, M]
    for (size_t i = 0; i < jitter.f32.size(); ++i) {
      jitter.f32[i] = std::max(minval, uniform.f32[i] * (maxval - minval) + minval);
    }
    Tensor& jittered = f.float32_step("token_inputs_jittered", {token_inputs, jitter}, {"G", "S", "M"});
    for (size_t i = 0; i < jittered.f32.size(); ++i) jittered.f32[i] = token_inputs->f32[i] * jitter.f32[i];
    inputs = &jittered;
  }
  // RouterWeights: DenseGeneral(features=E, use_bias, kernel_init=normal(2e-2), bias_init=zeros).
  // moeref draws the kernel from U(-0.02 * sqrt(3), 0.02 * sqrt(3)): the same variance.
  const double bound = 0.02 * std::sqrt(3.0);
  const Tensor& kernel = f.inputs().float_input("router_weights", {"M", "E"}, {M, E}, -bound, bound);
  const Tensor* bias = hp.use_bias ? &f.inputs().float_input("router_bias", {"E"}, {E}, -bound, bound) : nullptr;
  if (bfloat16) {
    // DenseGeneral: inputs = jnp.asarray(inputs, dtype); kernel = jnp.asarray(kernel, dtype);
    // lax.dot_general in bfloat16; bias = jnp.asarray(bias, dtype); out + bias in bfloat16.
    const Tensor& inputs_bf16 = f.step("token_inputs_bfloat16", {inputs}, rounded(*inputs));    // [G, S, M]
    const Tensor& kernel_bf16 = f.step("router_weights_bfloat16", {&kernel}, rounded(kernel));  // [M, E]
    Tensor& logits = f.float32_step("router_logits", {inputs_bf16, kernel_bf16, bias}, {"G", "S", "E"});
    ops::bfloat16_matmul(inputs_bf16.f32.data(), kernel_bf16.f32.data(), G * S, M, E, logits.f32.data());
    for (int64_t i = 0; bias != nullptr && i < G * S * E; ++i) {
      logits.f32[i] = ops::round_to_bfloat16(logits.f32[i] + ops::round_to_bfloat16(bias->f32[i % E]));
    }
    return logits;
  }
  Tensor& logits = f.float32_step("router_logits", {inputs, &kernel, bias}, {"G", "S", "E"});  // [G, S, E]
  ops::router_logits(inputs->f32.data(), kernel.f32.data(), G * S, M, E, logits.f32.data());
  for (int64_t i = 0; bias != nullptr && i < G * S * E; ++i) logits.f32[i] = logits.f32[i] + bias->f32[i % E];
  return logits;
}

// The metrics MoeLayer sows, from the dense dispatch and combine tensors (masked routers) or
// from successfully_routed and combine_weights (scatter routers).
void sow_expert_metrics(Frame& f, const FlaxformerLayerHparams& hp, const FlaxformerRouting& routing,
                        const Tensor* token_inputs) {
  const int64_t G = f.dim("G"), S = f.dim("S"), E = f.dim("E"), C = f.dim("C");
  const bool scatter = routing.successfully_routed != nullptr;
  const Tensor& routed = scatter ? *routing.successfully_routed : *routing.dispatch_tensor;
  const int64_t per_token = routed.num_elements() / (G * S);
  // num_tokens_dispatched_somewhere = max(dispatch_mask, axis=(-1, -2)).sum(), or
  // max(successfully_routed, axis=-1).sum(); num_tokens_dispatched = the sum of all.
  int64_t somewhere = 0, dispatched = 0;
  for (int64_t t = 0; t < G * S; ++t) {
    int32_t any = 0;
    for (int64_t i = 0; i < per_token; ++i) {
      any = std::max(any, routed.i32[static_cast<size_t>(t * per_token + i)]);
      dispatched += routed.i32[static_cast<size_t>(t * per_token + i)];
    }
    somewhere += any;
  }
  // num_tokens: with ignore_padding_tokens, the count of tokens with sum(|x|) > 0 among the
  // router's token_inputs (the scatter path has repeated them num_selected_experts times);
  // else float(num_groups * tokens_per_group).
  float num_tokens = static_cast<float>(G * S);
  if (hp.ignore_padding_tokens) {
    const int64_t M = token_inputs->shape.back();
    double count = 0.0;
    for (int64_t t = 0; t < G * S; ++t) {
      double sum = 0.0;
      for (int64_t m = 0; m < M; ++m) sum += std::fabs(static_cast<double>(token_inputs->f32[t * M + m]));
      count += static_cast<float>(sum) > 0.0f ? 1.0 : 0.0;
    }
    num_tokens = static_cast<float>(count * static_cast<double>(scatter ? per_token : 1));
  }
  const Tensor& somewhere_step =
      f.int32_scalar_step("num_tokens_dispatched_somewhere", {routed}, static_cast<int32_t>(somewhere));
  const Tensor& dispatched_step =
      f.int32_scalar_step("num_tokens_dispatched", {routed}, static_cast<int32_t>(dispatched));
  // fraction_tokens_left_behind = 1.0 - num_tokens_dispatched_somewhere / num_tokens
  f.scalar_step("fraction_tokens_left_behind", {somewhere_step, hp.ignore_padding_tokens ? token_inputs : nullptr},
                1.0f - static_cast<float>(somewhere) / num_tokens);
  // router_confidence = combine.sum() / num_tokens_dispatched
  const Tensor& weights = scatter ? *routing.combine_weights : *routing.combine_tensor;
  // In bfloat16 (Router.dtype), jnp.sum computes in float32 and returns bfloat16, and the
  // division by the int32 count stays bfloat16.
  const bool bfloat16 = hp.dtype == "bfloat16";
  auto in_dtype = [&](float v) { return bfloat16 ? ops::round_to_bfloat16(v) : v; };
  double weight_sum = 0.0;
  for (float w : weights.f32) weight_sum += static_cast<double>(w);
  f.scalar_step("router_confidence", {&weights, dispatched_step},
                in_dtype(in_dtype(static_cast<float>(weight_sum)) / static_cast<float>(dispatched)));
  // expert_usage = num_tokens_dispatched / (num_experts * expert_capacity * num_groups), or 1.0
  // for experts-choose routing.
  f.scalar_step("expert_usage", {dispatched_step},
                routing.experts_choose ? 1.0f : static_cast<float>(dispatched) / static_cast<float>(E * C * G));
}

}  // namespace

const Tensor& convert_to_router_dtype(Frame& f, const std::string& name, const Tensor& combine,
                                      const std::string& dtype) {
  if (dtype != "bfloat16") return combine;
  Tensor rounded = combine;
  for (float& v : rounded.f32) v = ops::round_to_bfloat16(v);
  return f.step(name + "_dtype", {combine}, std::move(rounded));
}

void resolve_flaxformer_layer_dims(Frame& f, const FlaxformerLayerHparams& hp) {
  const int64_t E = f.required_dim("E", "the number of experts (num_experts), an integer >= 1");
  if (f.batch_length_layout("_maybe_pad and _num_groups")) {
    const ops::FlaxformerPadding pad = padding_of(f, hp);
    const int64_t num_tokens = (f.dim("B") + pad.batch_padding) * (f.dim("L") + pad.seq_padding);
    const int64_t G =
        ops::flaxformer_num_groups(num_tokens, hp.max_group_size, E, hp.num_expert_replicas, hp.strict_group_size);
    f.derived_dim("G", G, "_num_groups(padded B*L, max_group_size, E, num_expert_replicas)");
    f.derived_dim("S", num_tokens / G, "tokens_per_group = padded B*L / G");
  }
  const bool needs_inputs = f.layer_scope() || !f.supplied("router_logits") || hp.ignore_padding_tokens;
  f.resolve_model_dims(needs_inputs, "hidden_dims", "intermediate_dim");
  if (f.layer_scope()) f.derived_dim("N", f.dim("M"), "N = M (MlpBlock out_dim is None)");
  const double capacity_factor = f.train() ? hp.train_capacity_factor : hp.eval_capacity_factor;
  const int64_t C = ops::flaxformer_expert_capacity(f.dim("S"), capacity_factor, E, hp.min_expert_capacity);
  f.derived_dim("C", C, "max(int(round(capacity_factor * S / E)), min_expert_capacity)");
  f.check_routing_size();
  const ops::FlaxformerPadding pad = padding_of(f, hp);
  f.capacity({{"expert_capacity", C},
              {"rule", "flaxformer: max(int(round(capacity_factor * S / E)), min_expert_capacity), round half to even"},
              {"capacity_factor", capacity_factor},
              {"group_size", f.dim("S")},
              {"num_groups", f.dim("G")},
              {"batch_padding", pad.batch_padding},
              {"seq_padding", pad.seq_padding}});
}

void flaxformer_moe_layer(Frame& f, const FlaxformerLayerHparams& hp, const FlaxformerInstructions& instructions) {
  const int64_t G = f.dim("G"), S = f.dim("S"), E = f.dim("E");
  const ops::FlaxformerPadding pad = padding_of(f, hp);
  const Tensor* token_inputs = nullptr;
  if (f.layer_scope() || !f.supplied("router_logits") || hp.ignore_padding_tokens || f.supplied("x")) {
    const std::vector<std::string> dims = {batch_length(f) ? "B" : "G", batch_length(f) ? "L" : "S", "M"};
    const Tensor& x = f.inputs().float_input("x", dims, f.extents(dims), -1.0, 1.0);
    // padded_inputs = _maybe_pad(inputs, ...); grouped_inputs = jnp.reshape(padded_inputs, [G, S, M])
    token_inputs = &f.step("grouped_inputs", {x}, grouped_inputs(f, x, pad));  // [G, S, M]
  }

  // ---- Router.__call__ -------------------------------------------------------------
  const Tensor& logits = router_logits(f, hp, token_inputs);
  // router_probabilities = jax.nn.softmax(router_logits, axis=-1), in the logits' dtype
  const bool bfloat16 = hp.router_weights_dtype == "bfloat16";
  Tensor& router_probs = f.float32_step("router_probs", {logits}, {"G", "S", "E"});  // [G, S, E]
  if (bfloat16) {
    ops::jax_softmax_bfloat16(logits.f32.data(), router_probs.f32.data(), G * S, E);
  } else {
    ops::jax_softmax(logits.f32.data(), router_probs.f32.data(), G * S, E);
  }
  const Tensor* padding_mask = nullptr;
  const Tensor* z_logits = &logits;
  if (hp.ignore_padding_tokens) {
    // padding_mask = jnp.array(jnp.sum(jnp.abs(token_inputs), axis=-1) > 0, dtype=token_inputs.dtype):
    // from the un-jittered inputs; router_logits *= padding_mask[..., None] (after the softmax,
    // so it reaches only the z-loss). The mask is float32, so bfloat16 logits become float32.
    const int64_t M = token_inputs->shape.back();
    Tensor& mask = f.float32_step("padding_mask", {token_inputs}, {"G", "S"});  // [G, S]
    for (int64_t t = 0; t < G * S; ++t) {
      double sum = 0.0;
      for (int64_t m = 0; m < M; ++m) sum += std::fabs(static_cast<double>(token_inputs->f32[t * M + m]));
      mask.f32[t] = static_cast<float>(sum) > 0.0f ? 1.0f : 0.0f;
    }
    Tensor& masked = f.float32_step("router_logits_masked", {logits, mask}, {"G", "S", "E"});
    for (int64_t i = 0; i < G * S * E; ++i) masked.f32[i] = logits.f32[i] * mask.f32[i / E];
    padding_mask = &mask;
    z_logits = &masked;
  }
  const FlaxformerRouting routing = instructions(router_probs, padding_mask);
  // _router_z_loss: log_z = jax.nn.logsumexp(router_logits, axis=-1); z_loss = log_z ** 2;
  // jnp.sum(z_loss, dtype=float32) / (num_groups * tokens_per_group)
  Tensor& log_z = f.float32_step("log_z", {z_logits}, {"G", "S"});  // [G, S]
  const bool bfloat16_z = bfloat16 && padding_mask == nullptr;
  if (bfloat16_z) {
    ops::jax_logsumexp_bfloat16(z_logits->f32.data(), log_z.f32.data(), G * S, E);
  } else {
    ops::torch_logsumexp(z_logits->f32.data(), log_z.f32.data(), G * S, E);  // jax's logsumexp: the same ops
  }
  // z_loss = log_z ** 2 in the logits' dtype; jnp.sum(z_loss, dtype=float32)
  double z_sum = 0.0;
  for (float v : log_z.f32) z_sum += static_cast<double>(bfloat16_z ? ops::round_to_bfloat16(v * v) : v * v);
  const float router_z_loss = static_cast<float>(z_sum) / static_cast<float>(G * S);
  f.scalar_step("router_z_loss", {log_z}, router_z_loss);

  if (f.layer_scope()) {
    // _call_experts: every expert's MlpBlock (no bias, no dropout) on its [G * C, M] slots;
    // combined_outputs = einsum('gec...,gtec->gt...', expert_outputs, combine_array).
    const std::vector<ops::Activation> activations = ops::activations_named(hp.activations);
    const MtfExpertWeights weights =
        take_mtf_expert_weights(f, activations.size(), E, f.dim("M"), f.dim("H"), f.dim("N"));
    const Tensor& outputs = mtf_expert_layer(f, *token_inputs, *routing.dispatch_tensor, *routing.combine_tensor,
                                             activations, weights, std::nullopt);
    if (batch_length(f)) {
      // result = outputs.reshape(padded B, padded L, ...)[:B, :L]
      const int64_t B = f.dim("B"), L = f.dim("L"), M = f.dim("M"), padded_L = L + pad.seq_padding;
      Tensor& result = f.float32_step("result", {outputs}, {"B", "L", "M"});  // [B, L, M]
      for (int64_t b = 0; b < B; ++b) {
        for (int64_t l = 0; l < L; ++l) {
          std::copy_n(outputs.f32.data() + (b * padded_L + l) * M, M, result.f32.data() + (b * L + l) * M);
        }
      }
    }
  }
  // MoeLayer sows its metrics after the combine; moeref records them in scope "gating" too.
  sow_expert_metrics(f, hp, routing, token_inputs);
  f.loss("auxiliary_loss", routing.auxiliary_loss);
  f.loss("router_z_loss", router_z_loss);
}

}  // namespace moeref
