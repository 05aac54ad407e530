// praxis_top2: praxis's GShard top-2 gating, literal to the source.
//
// Source: google/praxis at feeaff1 (feeaff19915ca9c3de8b372b7427d15c81f0d757),
//   praxis/gshard_utils.py: top2_gating_on_logits (the gating function, the JAX
//     port of lingvo's Top2GatingOnLogits), compute_gating (its only caller),
//     _create_over_capacity_ratio_summary, cum_sum;
//   praxis/layers/transformers.py: TransformerFeedForwardMoe
//     ._dispatch_and_combine_expert_outputs and __call__ (grouping, router
//     einsum, hard-wired gating arguments, experts, combine, padding).
// Spec: spec/variants/praxis_top2.md.
//
// Dims: B batch, L length, G groups, S group size, E experts, C expert capacity,
//       M model dim, H expert hidden dim, N expert output dim (= M in praxis).
//
// Each step is one statement (or a few) of top2_gating_on_logits, in the
// source's order, under the source's variable name. Where the source reassigns
// a variable (mask_1 *= ..., gate_1 /= ...), the trace keeps every version
// under a suffix naming the stage: mask_1 -> mask_1_nonpadding -> mask_1_capacity.
// praxis holds masks, positions and counts in int32 (mask_dtype=jnp.int32, the
// default and what TransformerFeedForwardMoe passes); so does moeref.
// fprop_dtype is float32 (moeref models float32 activations only).

#include <algorithm>
#include <cmath>
#include <limits>
#include <optional>
#include <string>
#include <vector>

#include "moeref/dims.hpp"
#include "moeref/error.hpp"
#include "moeref/inputs.hpp"
#include "moeref/json_number.hpp"
#include "moeref/ops/activations.hpp"
#include "moeref/ops/cumsum.hpp"
#include "moeref/ops/decisions.hpp"
#include "moeref/ops/expert_layer.hpp"
#include "moeref/ops/jax_softmax.hpp"
#include "moeref/ops/praxis_capacity.hpp"
#include "moeref/ops/praxis_grouping.hpp"
#include "moeref/ops/router.hpp"
#include "moeref/ops/routing_form.hpp"
#include "moeref/ops/top1.hpp"
#include "moeref/variant.hpp"

namespace moeref {

namespace {

// The largest [G, S, E, C] routing tensor moeref will build.
constexpr int64_t kMaxRoutingElements = int64_t{1} << 31;

struct Shape {
  bool batch_length_layout = false;  // x given as [B, L, M] rather than [G, S, M]
  int64_t B = 0, L = 0, G = 0, S = 0, E = 0, C = 0, M = 0, H = 0, N = 0;
  ops::PraxisCapacity capacity;
};

std::optional<int64_t> optional_int(const nlohmann::json& value) {
  return value.is_null() ? std::nullopt : std::optional<int64_t>(value.get<int64_t>());
}

std::optional<double> optional_float(const nlohmann::json& value) {
  return value.is_null() ? std::nullopt : std::optional<double>(value.get<double>());
}

Shape resolve_shape(const Config& config, bool logits_supplied) {
  const nlohmann::json& hp = config.hparams;
  Shape shape;
  require_dim(config, "E", "the number of experts (num_experts), an integer >= 1");
  shape.E = config.dims.at("E");
  const bool has_bl = config.dims.count("B") && config.dims.count("L");
  const bool has_gs = config.dims.count("G") && config.dims.count("S");
  if (!has_bl && !has_gs) {
    fail_input("dims", "neither B and L nor G and S", "B and L (x is [B, L, M], grouped by num_groups) or G and S");
  }
  if (config.dims.count("B") != config.dims.count("L")) {
    fail_input("dims", "only one of B and L", "both B and L, or neither");
  }
  shape.batch_length_layout = has_bl;
  if (has_bl) {
    shape.B = config.dims.at("B");
    shape.L = config.dims.at("L");
    if (hp["num_groups"].is_null()) {
      fail_input("hparams.num_groups", "null",
                 "an integer >= 1 when dims give B and L (TransformerFeedForwardMoe asserts num_groups > 0)");
    }
    const ops::PraxisGrouping grouping =
        ops::praxis_moe_groups(shape.B * shape.L, hp["num_groups"].get<int64_t>(), optional_int(hp["min_group_size"]));
    shape.G = grouping.num_groups;
    shape.S = grouping.group_size;
    check_derived_dim(config, "G", shape.G, "num_groups, lowered by min_group_size");
    check_derived_dim(config, "S", shape.S, "B*L / G");
  } else {
    shape.G = config.dims.at("G");
    shape.S = config.dims.at("S");
  }

  if (config.scope == "layer" || !logits_supplied) {
    require_dim(config, "M", "the model dim (input_dims), needed for the router or the experts");
    shape.M = config.dims.at("M");
  } else {
    shape.M = config.dims.count("M") ? config.dims.at("M") : 0;
  }
  if (config.scope == "layer") {
    require_dim(config, "H", "the expert hidden dim (hidden_dims), needed with scope \"layer\"");
    shape.H = config.dims.at("H");
    shape.N = shape.M;  // TransformerFeedForwardMoe: "Assume output_dims == input_dims"
    check_derived_dim(config, "N", shape.N, "N = M in TransformerFeedForwardMoe");
  }

  shape.capacity = ops::praxis_top2_expert_capacity(shape.S, optional_float(hp["capacity_factor"]),
                                                    optional_int(hp["expert_capacity_dim"]), shape.E);
  shape.C = shape.capacity.expert_capacity;
  check_derived_dim(config, "C", shape.C, "the top2_gating_on_logits capacity rule");
  const double routing_elements = static_cast<double>(shape.G) * static_cast<double>(shape.S) *
                                  static_cast<double>(shape.E) * static_cast<double>(std::max<int64_t>(shape.C, 1));
  if (routing_elements > static_cast<double>(kMaxRoutingElements)) {
    fail_input("dims", "G*S*E*C = " + std::to_string(static_cast<long long>(routing_elements)),
               "at most 2^31 elements in combine_tensor");
  }
  return shape;
}

nlohmann::json resolved_config(const Config& config, const Shape& shape) {
  nlohmann::json dims = nlohmann::json::object();
  if (shape.batch_length_layout) {
    dims["B"] = shape.B;
    dims["L"] = shape.L;
  }
  dims["G"] = shape.G;
  dims["S"] = shape.S;
  dims["E"] = shape.E;
  dims["C"] = shape.C;
  if (shape.M > 0) dims["M"] = shape.M;
  if (config.scope == "layer") {
    dims["H"] = shape.H;
    dims["N"] = shape.N;
  }
  return {{"variant", config.variant}, {"scope", config.scope}, {"train", config.train},
          {"seed", config.seed},       {"dims", dims},          {"hparams", config.hparams}};
}

std::string capacity_rule(const Shape& shape) {
  if (!shape.capacity.used_capacity_factor) return "given: expert_capacity_dim (capacity_factor is null or 0)";
  if (shape.capacity.raised)
    return "praxis: expert_capacity_dim < int(S * capacity_factor / E), raised to ((auto + 3) // 4) * 4";
  return "praxis: expert_capacity_dim (None -> 1) >= int(S * capacity_factor / E), kept";
}

Tensor int_scalar(int32_t value) {
  Tensor t = Tensor::int32({}, {});
  t.i32[0] = value;
  return t;
}

}  // namespace

void run_praxis_top2(const Config& config, Trace& trace) {
  const nlohmann::json& hp = config.hparams;
  const bool logits_supplied = config.inputs.count("logits") > 0;
  const Shape shape = resolve_shape(config, logits_supplied);
  const int64_t G = shape.G, S = shape.S, E = shape.E, C = shape.C, M = shape.M;
  const std::string policy = hp["second_expert_policy"].get<std::string>();
  const double second_expert_threshold = hp["second_expert_threshold"].get<double>();
  const bool legacy_mtf_behavior = hp["legacy_mtf_behavior"].get<bool>();
  const double gating_logit_cap = hp["gating_logit_cap"].get<double>();
  const double load_balance_weight = hp["moe_load_balance_loss_weight"].get<double>();
  if (load_balance_weight == 0.0) {
    // TransformerFeedForwardMoe.__call__: assert self.moe_load_balance_loss_weight.
    fail_input("hparams.moe_load_balance_loss_weight", "0", "a number > 0 (TransformerFeedForwardMoe asserts it)");
  }
  trace.config = resolved_config(config, shape);
  trace.capacity = {{"expert_capacity", C},
                    {"rule", capacity_rule(shape)},
                    {"capacity_factor", hp["capacity_factor"]},
                    {"expert_capacity_dim", hp["expert_capacity_dim"]},
                    {"group_size", S},
                    {"num_groups", G}};
  if (shape.capacity.used_capacity_factor) trace.capacity["auto_expert_capacity"] = shape.capacity.auto_expert_capacity;

  // ---- Inputs ------------------------------------------------------------------
  InputSet inputs(config, trace);
  const std::vector<std::string> token_dims =
      shape.batch_length_layout ? std::vector<std::string>{"B", "L"} : std::vector<std::string>{"G", "S"};
  const std::vector<int64_t> token_shape =
      shape.batch_length_layout ? std::vector<int64_t>{shape.B, shape.L} : std::vector<int64_t>{G, S};
  auto with = [](std::vector<std::string> dims, const std::string& last) {
    dims.push_back(last);
    return dims;
  };
  auto with_extent = [](std::vector<int64_t> extents, int64_t last) {
    extents.push_back(last);
    return extents;
  };

  const Tensor* x = nullptr;
  // x feeds the router unless logits are supplied, and the experts in scope "layer";
  // when supplied with logits in scope "gating" it is only recorded as `inputs`.
  if (config.scope == "layer" || !logits_supplied || inputs.supplied("x")) {
    x = &inputs.float_input("x", with(token_dims, "M"), with_extent(token_shape, M), -1.0, 1.0);
  }
  const Tensor* logits_given = inputs.optional_input("logits", {"G", "S", "E"}, {G, S, E});
  const Tensor* router_weights = nullptr;
  if (logits_given == nullptr) {
    // TransformerFeedForwardMoe.setup: gate init WeightInit.Uniform((1 / input_dims) ** 0.5 * 3.0 ** 0.5).
    const double bound = std::sqrt(1.0 / static_cast<double>(M)) * std::sqrt(3.0);
    router_weights = &inputs.float_input("router_weights", {"M", "E"}, {M, E}, -bound, bound);
  }
  const Tensor* paddings_given = inputs.optional_input("paddings", token_dims, token_shape);
  if (paddings_given != nullptr) {
    for (size_t i = 0; i < paddings_given->f32.size(); ++i) {
      const float p = paddings_given->f32[i];
      if (!(p >= 0.0f && p <= 1.0f)) {
        std::string value;
        append_float32(value, p);
        fail_input("inputs.paddings" + paddings_given->named_index(static_cast<int64_t>(i)), value,
                   "a padding in [0, 1] (1 = padded; fractions are allowed)");
      }
    }
  }
  if (inputs.supplied("importance") && config.scope == "layer") {
    fail_input("inputs.importance", "supplied with scope \"layer\"",
               "importance only with scope \"gating\" (compute_gating and TransformerFeedForwardMoe never pass it)");
  }
  const Tensor* importance_given = inputs.optional_input("importance", {"G", "S"}, {G, S});
  const Tensor* sampling_uniform =
      policy == "sampling" ? &inputs.uniform_draw("sampling_uniform", {"G", "S", "E"}, {G, S, E}) : nullptr;
  const Tensor* random_uniform =
      policy == "random" ? &inputs.uniform_draw("random_uniform", {"G", "S"}, {G, S}) : nullptr;

  // Decisions the checker's near-tie analysis forces (never set by a config), each
  // applied where the source makes the decision.
  const Tensor* forced_index_1 = ops::forced_decision(config, "index_1", {G, S});
  const Tensor* forced_index_2 = ops::forced_decision(config, "index_2", {G, S});
  const Tensor* forced_sampled_2 = ops::forced_decision(config, "sampled_2", {G, S});

  // ---- TransformerFeedForwardMoe: reshape [B, L, ...] to [G, S, ...] ---------------
  // inputs.reshape([num_groups, g_len, m_dim]) keeps row-major order: only the dims are relabelled.
  if (x != nullptr) {
    Tensor grouped = *x;
    grouped.dims = {"G", "S", "M"};
    grouped.shape = {G, S, M};
    trace.add_step("inputs", std::move(grouped));
  }
  const Tensor* reshaped_inputs = x != nullptr ? &trace.steps.back().tensor : nullptr;
  const float* paddings = nullptr;
  if (paddings_given != nullptr) {
    // reshaped_paddings = paddings.reshape([num_groups, g_len]).astype(fprop_dtype)
    Tensor grouped = *paddings_given;
    grouped.dims = {"G", "S"};
    grouped.shape = {G, S};
    trace.add_step("paddings", std::move(grouped));
    paddings = trace.steps.back().tensor.f32.data();
  }
  const float* importance = importance_given != nullptr ? importance_given->f32.data() : nullptr;

  // logits = jnp.einsum('gsm,me->gse', reshaped_inputs, self.theta.gate), then .astype(float32).
  Tensor logits = Tensor::float32({"G", "S", "E"}, {G, S, E});  // [G, S, E]
  if (logits_given != nullptr) {
    logits.f32 = logits_given->f32;
  } else {
    ops::router_logits(reshaped_inputs->f32.data(), router_weights->f32.data(), G * S, M, E, logits.f32.data());
  }

  // ---- top2_gating_on_logits ---------------------------------------------------------
  const bool capped = gating_logit_cap > 0.0;
  Tensor logits_capped = Tensor::float32({"G", "S", "E"}, {G, S, E});              // [G, S, E]
  Tensor raw_gates = Tensor::float32({"G", "S", "E"}, {G, S, E});                  // [G, S, E]
  Tensor index_1 = Tensor::int32({"G", "S"}, {G, S});                              // [G, S]
  Tensor mask_1 = Tensor::int32({"G", "S", "E"}, {G, S, E});                       // [G, S, E]
  Tensor mask_1_important = Tensor::int32({"G", "S", "E"}, {G, S, E});             // [G, S, E]
  Tensor nonpaddings = Tensor::float32({"G", "S"}, {G, S});                        // [G, S]
  Tensor mask_1_nonpadding = Tensor::int32({"G", "S", "E"}, {G, S, E});            // [G, S, E]
  Tensor density_1_proxy_per_token = Tensor::float32({"G", "S", "E"}, {G, S, E});  // [G, S, E]
  Tensor gate_1 = Tensor::float32({"G", "S"}, {G, S});                             // [G, S]
  Tensor gates_without_top_1 = Tensor::float32({"G", "S", "E"}, {G, S, E});        // [G, S, E]
  Tensor noise = Tensor::float32({"G", "S", "E"}, {G, S, E});                      // [G, S, E]
  Tensor updated_logits = Tensor::float32({"G", "S", "E"}, {G, S, E});             // [G, S, E]
  Tensor noised_logits = Tensor::float32({"G", "S", "E"}, {G, S, E});              // [G, S, E]
  Tensor index_2 = Tensor::int32({"G", "S"}, {G, S});                              // [G, S]
  Tensor mask_2 = Tensor::int32({"G", "S", "E"}, {G, S, E});                       // [G, S, E]
  Tensor mask_2_nonpadding = Tensor::int32({"G", "S", "E"}, {G, S, E});            // [G, S, E]
  Tensor gate_2 = Tensor::float32({"G", "S"}, {G, S});                             // [G, S]
  Tensor denom_legacy = Tensor::float32({"G", "S"}, {G, S});                       // [G, S]
  Tensor gate_1_normalized = Tensor::float32({"G", "S"}, {G, S});                  // [G, S]
  Tensor gate_2_normalized = Tensor::float32({"G", "S"}, {G, S});                  // [G, S]
  Tensor position_in_expert_1 = Tensor::int32({"G", "S", "E"}, {G, S, E});         // [G, S, E]
  Tensor density_denom = Tensor::float32({"G"}, {G});                              // [G]
  Tensor density_1 = Tensor::float32({"G", "E"}, {G, E});                          // [G, E]
  Tensor density_1_proxy = Tensor::float32({"G", "E"}, {G, E});                    // [G, E]
  Tensor mask_1_capacity = Tensor::int32({"G", "S", "E"}, {G, S, E});              // [G, S, E]
  Tensor position_in_expert_1_flat = Tensor::int32({"G", "S"}, {G, S});            // [G, S]
  Tensor mask_1_count = Tensor::int32({"G", "E"}, {G, E});                         // [G, E]
  Tensor mask_1_flat = Tensor::int32({"G", "S"}, {G, S});                          // [G, S]
  Tensor sampled_2 = Tensor::int32({"G", "S"}, {G, S});                            // [G, S]
  Tensor gate_2_sampled = Tensor::float32({"G", "S"}, {G, S});                     // [G, S]
  Tensor mask_2_sampled = Tensor::int32({"G", "S", "E"}, {G, S, E});               // [G, S, E]
  Tensor position_in_expert_2 = Tensor::int32({"G", "S", "E"}, {G, S, E});         // [G, S, E]
  Tensor mask_2_capacity = Tensor::int32({"G", "S", "E"}, {G, S, E});              // [G, S, E]
  Tensor position_in_expert_2_flat = Tensor::int32({"G", "S"}, {G, S});            // [G, S]
  Tensor mask_2_flat = Tensor::int32({"G", "S"}, {G, S});                          // [G, S]
  Tensor gate_1_capacity = Tensor::float32({"G", "S"}, {G, S});                    // [G, S]
  Tensor gate_2_capacity = Tensor::float32({"G", "S"}, {G, S});                    // [G, S]
  Tensor denom_after = Tensor::float32({"G", "S"}, {G, S});                        // [G, S]
  Tensor combine_tensor = Tensor::float32({"G", "S", "E", "C"}, {G, S, E, C});     // [G, S, E, C]
  Tensor dispatch_count_tensor = Tensor::int32({"G", "S"}, {G, S});                // [G, S]
  Tensor dispatch_tensor = Tensor::int32({"G", "S", "E", "C"}, {G, S, E, C});      // [G, S, E, C]

  // Python scalars meeting float32 arrays are weakly typed: they become float32 constants.
  const float cap = static_cast<float>(gating_logit_cap);  // jnp.array(gating_logit_cap, dtype=logits.dtype)
  const float count_s = static_cast<float>(S);             // jnp.mean over S divides by f32(S)
  const float kDenomEpsilon = 1e-9f;                       // gate_1 + gate_2 + 1e-9
  const float kDensityEpsilon = 1e-6f;                     // jnp.mean(importance) + 1e-6
  // max(second_expert_threshold, 1e-9) is a Python float, then f32 when it divides gate_2.
  const float threshold_f = static_cast<float>(std::max(second_expert_threshold, 1e-9));
  // jnp.ones_like(logits) * (-0.7) * np.finfo(float32).max: (1 * f32(-0.7)) * f32max, left to right.
  const float very_negative = (1.0f * -0.7f) * std::numeric_limits<float>::max();

  // Pointers to the latest version of each reassigned per-token tensor, per element.
  const Tensor& logits_now = capped ? logits_capped : logits;
  const Tensor& mask_1_now =
      importance != nullptr ? mask_1_important : (paddings != nullptr ? mask_1_nonpadding : mask_1);
  const Tensor& proxy_now = (importance != nullptr || paddings != nullptr) ? density_1_proxy_per_token : raw_gates;
  const Tensor& mask_2_now = paddings != nullptr ? mask_2_nonpadding : mask_2;
  const Tensor& gate_1_now = legacy_mtf_behavior ? gate_1_normalized : gate_1;
  const Tensor& gate_2_now = legacy_mtf_behavior ? gate_2_normalized : gate_2;
  const Tensor& gate_2_policy = policy == "random" ? gate_2_sampled : gate_2_now;
  const Tensor& mask_2_policy = policy == "random" ? mask_2_sampled : mask_2_now;
  // `importance` after the importance/paddings branch: given, nonpaddings, or ones.
  auto importance_now = [&](int64_t gs_index) -> float {
    if (importance != nullptr) return importance[gs_index];
    if (paddings != nullptr) return nonpaddings.f32[static_cast<size_t>(gs_index)];
    return 1.0f;
  };

#pragma omp parallel for schedule(static)
  for (int64_t g = 0; g < G; ++g) {
    const int64_t gs = g * S, gse = g * S * E, ge = g * E;

    // _cap_logits: logits = cap * jnp.tanh(logits / cap), when gating_logit_cap > 0.
    if (capped) {
      for (int64_t k = gse; k < gse + S * E; ++k) {
        const float scaled = logits.f32[k] / cap;
        logits_capped.f32[k] = cap * static_cast<float>(std::tanh(static_cast<double>(scaled)));
      }
    }
    // raw_gates = jax.nn.softmax(logits, axis=-1)
    ops::jax_softmax(logits_now.f32.data() + gse, raw_gates.f32.data() + gse, S, E);

    // index_1 = jnp.argmax(raw_gates, axis=-1): the first maximum. mask_1 = one_hot(index_1, E, int32).
    std::vector<float> row_max(static_cast<size_t>(S));
    ops::top_1_lowest_index(raw_gates.f32.data() + gse, S, E, row_max.data(), index_1.i32.data() + gs);
    if (forced_index_1 != nullptr) ops::force_top_1(forced_index_1->i32.data() + gs, S, E, index_1.i32.data() + gs);
    for (int64_t s = 0; s < S; ++s) {
      for (int64_t e = 0; e < E; ++e) mask_1.i32[gse + s * E + e] = index_1.i32[gs + s] == e ? 1 : 0;
    }

    for (int64_t s = 0; s < S; ++s) {
      if (importance != nullptr) {
        // mask_1 *= (importance == 1.0); density_1_proxy *= (importance == 1.0)
        const bool is_one = importance[gs + s] == 1.0f;
        for (int64_t e = 0; e < E; ++e) {
          const int64_t k = gse + s * E + e;
          mask_1_important.i32[k] = mask_1.i32[k] * (is_one ? 1 : 0);
          density_1_proxy_per_token.f32[k] = raw_gates.f32[k] * (is_one ? 1.0f : 0.0f);
        }
      } else if (paddings != nullptr) {
        // nonpaddings = 1.0 - paddings; mask_1 *= nonpaddings.astype(int32) (truncation toward
        // zero: any padding with f32(1 - p) < 1 removes the first choice); the proxy keeps the fraction.
        const float nonpadding = 1.0f - paddings[gs + s];
        nonpaddings.f32[gs + s] = nonpadding;
        const int32_t nonpadding_int = static_cast<int32_t>(nonpadding);
        for (int64_t e = 0; e < E; ++e) {
          const int64_t k = gse + s * E + e;
          mask_1_nonpadding.i32[k] = mask_1.i32[k] * nonpadding_int;
          density_1_proxy_per_token.f32[k] = raw_gates.f32[k] * nonpadding;
        }
      }
    }

    for (int64_t s = 0; s < S; ++s) {
      // gate_1 = einsum('GSE,GSE->GS', raw_gates, mask_1.astype(f32)); one term is non-zero, so it is exact.
      double sum = 0.0;
      for (int64_t e = 0; e < E; ++e) {
        const int64_t k = gse + s * E + e;
        sum += static_cast<double>(raw_gates.f32[k] * static_cast<float>(mask_1_now.i32[k]));
        // gates_without_top_1 = raw_gates * (1.0 - mask_1.astype(f32))
        gates_without_top_1.f32[k] = raw_gates.f32[k] * (1.0f - static_cast<float>(mask_1_now.i32[k]));
      }
      gate_1.f32[gs + s] = static_cast<float>(sum);
    }

    if (policy == "sampling") {
      // noise = -log(-log(U)) (Gumbel); updated_logits = where(mask_1 > 0, very_negative, logits);
      // index_2 = argmax(updated_logits + noise).
      for (int64_t k = gse; k < gse + S * E; ++k) {
        const float log_u = static_cast<float>(std::log(static_cast<double>(sampling_uniform->f32[k])));
        const float log_log = static_cast<float>(std::log(static_cast<double>(-log_u)));
        noise.f32[k] = -log_log;
        updated_logits.f32[k] = mask_1_now.i32[k] > 0 ? very_negative : logits_now.f32[k];
        noised_logits.f32[k] = updated_logits.f32[k] + noise.f32[k];
      }
      ops::top_1_lowest_index(noised_logits.f32.data() + gse, S, E, row_max.data(), index_2.i32.data() + gs);
    } else {
      // index_2 = jnp.argmax(gates_without_top_1, axis=-1)
      ops::top_1_lowest_index(gates_without_top_1.f32.data() + gse, S, E, row_max.data(), index_2.i32.data() + gs);
    }
    if (forced_index_2 != nullptr) ops::force_top_1(forced_index_2->i32.data() + gs, S, E, index_2.i32.data() + gs);

    for (int64_t s = 0; s < S; ++s) {
      // mask_2 = one_hot(index_2, E, int32); with paddings: mask_2 *= (importance > 0.0).
      const bool nonzero = importance_now(gs + s) > 0.0f;
      double sum = 0.0;
      for (int64_t e = 0; e < E; ++e) {
        const int64_t k = gse + s * E + e;
        mask_2.i32[k] = index_2.i32[gs + s] == e ? 1 : 0;
        if (paddings != nullptr) mask_2_nonpadding.i32[k] = mask_2.i32[k] * (nonzero ? 1 : 0);
        // gate_2 = einsum('GSE,GSE->GS', gates_without_top_1, mask_2.astype(f32))
        sum += static_cast<double>(gates_without_top_1.f32[k] * static_cast<float>(mask_2_now.i32[k]));
      }
      gate_2.f32[gs + s] = static_cast<float>(sum);
    }

    if (legacy_mtf_behavior) {
      // denom = gate_1 + gate_2 + 1e-9; gate_1 /= denom; gate_2 /= denom (true division).
      for (int64_t s = 0; s < S; ++s) {
        const float d = (gate_1.f32[gs + s] + gate_2.f32[gs + s]) + kDenomEpsilon;
        denom_legacy.f32[gs + s] = d;
        gate_1_normalized.f32[gs + s] = gate_1.f32[gs + s] / d;
        gate_2_normalized.f32[gs + s] = gate_2.f32[gs + s] / d;
      }
    }

    // position_in_expert_1 = cum_sum(mask_1, exclusive=True, axis=-2): jnp.cumsum(mask_1) - mask_1,
    // int32, NOT multiplied by mask_1 (rows without a choice hold the running count).
    ops::exclusive_cumsum_over_s(mask_1_now.i32.data() + gse, S, E, position_in_expert_1.i32.data() + gse);

    // density_denom = 1.0 (legacy) or jnp.mean(importance, axis=1, dtype=f32)[:, None] + 1e-6.
    float dd = 1.0f;
    if (!legacy_mtf_behavior) {
      double importance_sum = 0.0;
      for (int64_t s = 0; s < S; ++s) importance_sum += static_cast<double>(importance_now(gs + s));
      dd = static_cast<float>(importance_sum) / count_s + kDensityEpsilon;
      density_denom.f32[g] = dd;
    }
    // density_1 = jnp.mean(mask_1.astype(f32), axis=-2) / density_denom;
    // density_1_proxy = jnp.mean(density_1_proxy, axis=-2, dtype=f32) / density_denom.
    // jnp.mean is sum / f32(count); dividing by the legacy 1.0 changes nothing.
    for (int64_t e = 0; e < E; ++e) {
      int64_t count = 0;
      double proxy_sum = 0.0;
      for (int64_t s = 0; s < S; ++s) {
        count += mask_1_now.i32[gse + s * E + e];
        proxy_sum += static_cast<double>(proxy_now.f32[gse + s * E + e]);
      }
      density_1.f32[ge + e] = (static_cast<float>(count) / count_s) / dd;
      density_1_proxy.f32[ge + e] = (static_cast<float>(proxy_sum) / count_s) / dd;
    }

    // mask_1 *= (position_in_expert_1 < C); position_in_expert_1 = einsum('GSE,GSE->GS', pos, mask_1);
    // mask_1_count = einsum('GSE->GE', mask_1); mask_1_flat = sum(mask_1, -1).
    for (int64_t k = gse; k < gse + S * E; ++k) {
      mask_1_capacity.i32[k] = mask_1_now.i32[k] * (position_in_expert_1.i32[k] < C ? 1 : 0);
    }
    for (int64_t s = 0; s < S; ++s) {
      int32_t position = 0, flat = 0;
      for (int64_t e = 0; e < E; ++e) {
        const int64_t k = gse + s * E + e;
        position += position_in_expert_1.i32[k] * mask_1_capacity.i32[k];
        flat += mask_1_capacity.i32[k];
      }
      position_in_expert_1_flat.i32[gs + s] = position;
      mask_1_flat.i32[gs + s] = flat;
    }
    for (int64_t e = 0; e < E; ++e) {
      int32_t count = 0;
      for (int64_t s = 0; s < S; ++s) count += mask_1_capacity.i32[gse + s * E + e];
      mask_1_count.i32[ge + e] = count;
    }

    if (policy == "random") {
      // sampled_2 = U < gate_2 / max(second_expert_threshold, 1e-9) (true division, strict);
      // gate_2 *= sampled_2; mask_2 *= sampled_2.
      for (int64_t s = 0; s < S; ++s) {
        bool keep = random_uniform->f32[gs + s] < gate_2_now.f32[gs + s] / threshold_f;
        if (forced_sampled_2 != nullptr && forced_sampled_2->i32[static_cast<size_t>(gs + s)] >= 0) {
          keep = forced_sampled_2->i32[static_cast<size_t>(gs + s)] != 0;
        }
        sampled_2.i32[gs + s] = keep ? 1 : 0;
        gate_2_sampled.f32[gs + s] = gate_2_now.f32[gs + s] * (keep ? 1.0f : 0.0f);
        for (int64_t e = 0; e < E; ++e) {
          mask_2_sampled.i32[gse + s * E + e] = mask_2_now.i32[gse + s * E + e] * (keep ? 1 : 0);
        }
      }
    }

    // position_in_expert_2 = cum_sum(mask_2, exclusive=True) + mask_1_count[:, None, :]:
    // second choices queue behind every kept first choice of their expert.
    ops::exclusive_cumsum_over_s(mask_2_policy.i32.data() + gse, S, E, position_in_expert_2.i32.data() + gse);
    for (int64_t s = 0; s < S; ++s) {
      for (int64_t e = 0; e < E; ++e) position_in_expert_2.i32[gse + s * E + e] += mask_1_count.i32[ge + e];
    }
    // mask_2 *= (position_in_expert_2 < C); position_in_expert_2 = einsum(pos, mask_2); mask_2_flat.
    for (int64_t k = gse; k < gse + S * E; ++k) {
      mask_2_capacity.i32[k] = mask_2_policy.i32[k] * (position_in_expert_2.i32[k] < C ? 1 : 0);
    }
    for (int64_t s = 0; s < S; ++s) {
      int32_t position = 0, flat = 0;
      for (int64_t e = 0; e < E; ++e) {
        const int64_t k = gse + s * E + e;
        position += position_in_expert_2.i32[k] * mask_2_capacity.i32[k];
        flat += mask_2_capacity.i32[k];
      }
      position_in_expert_2_flat.i32[gs + s] = position;
      mask_2_flat.i32[gs + s] = flat;
    }

    // gate_1 *= mask_1_flat; gate_2 *= mask_2_flat; without legacy, renormalise now.
    for (int64_t s = 0; s < S; ++s) {
      gate_1_capacity.f32[gs + s] = gate_1_now.f32[gs + s] * static_cast<float>(mask_1_flat.i32[gs + s]);
      gate_2_capacity.f32[gs + s] = gate_2_policy.f32[gs + s] * static_cast<float>(mask_2_flat.i32[gs + s]);
      if (!legacy_mtf_behavior) {
        // denom = gate_1 + gate_2; denom = where(denom > 0, denom, 1); gate_i /= denom.
        float d = gate_1_capacity.f32[gs + s] + gate_2_capacity.f32[gs + s];
        d = d > 0.0f ? d : 1.0f;
        denom_after.f32[gs + s] = d;
        gate_1_normalized.f32[gs + s] = gate_1_capacity.f32[gs + s] / d;
        gate_2_normalized.f32[gs + s] = gate_2_capacity.f32[gs + s] / d;
      }
    }
    const Tensor& gate_1_final = legacy_mtf_behavior ? gate_1_capacity : gate_1_normalized;
    const Tensor& gate_2_final = legacy_mtf_behavior ? gate_2_capacity : gate_2_normalized;

    // combine_tensor = einsum('GSE,GSC->GSEC', a_1, b_1) + einsum('GSE,GSC->GSEC', a_2, b_2) with
    //   a_i = (gate_i * mask_i_flat)[..., None] * one_hot(index_i, E), b_i = one_hot(position_in_expert_i, C),
    // all float32; one_hot of a position >= C is an all-zero row.
    for (int64_t s = 0; s < S; ++s) {
      const float weight_1 = gate_1_final.f32[gs + s] * static_cast<float>(mask_1_flat.i32[gs + s]);
      const float weight_2 = gate_2_final.f32[gs + s] * static_cast<float>(mask_2_flat.i32[gs + s]);
      int32_t nonzero_count = 0;
      for (int64_t e = 0; e < E; ++e) {
        const float a_1 = weight_1 * (index_1.i32[gs + s] == e ? 1.0f : 0.0f);
        const float a_2 = weight_2 * (index_2.i32[gs + s] == e ? 1.0f : 0.0f);
        for (int64_t c = 0; c < C; ++c) {
          const float first_part = a_1 * (position_in_expert_1_flat.i32[gs + s] == c ? 1.0f : 0.0f);
          const float second_part = a_2 * (position_in_expert_2_flat.i32[gs + s] == c ? 1.0f : 0.0f);
          const int64_t slot = ((gs + s) * E + e) * C + c;
          combine_tensor.f32[slot] = first_part + second_part;
          // combine_tensor.astype(bool): non-zero (or NaN) is true.
          dispatch_tensor.i32[slot] = combine_tensor.f32[slot] != 0.0f ? 1 : 0;
          nonzero_count += dispatch_tensor.i32[slot];
        }
      }
      // dispatch_count_tensor = sum(combine_tensor.astype(bool).astype(int32), [-2, -1])
      dispatch_count_tensor.i32[gs + s] = nonzero_count;
    }
  }

  // aux_loss = jnp.mean(density_1_proxy * density_1, dtype=f32) * (E * E): sum / f32(G*E), then * f32(E*E).
  double aux_sum = 0.0;
  for (int64_t k = 0; k < G * E; ++k) aux_sum += static_cast<double>(density_1_proxy.f32[k] * density_1.f32[k]);
  float aux_loss = static_cast<float>(aux_sum) / static_cast<float>(G * E);
  aux_loss = aux_loss * static_cast<float>(E * E);

  // _create_over_capacity_ratio_summary(mask, position_in_expert, capacity):
  //   sum(mask * position >= capacity) / max(1.0, sum(mask)), over every (g, s, e).
  auto over_capacity_ratio = [&](const Tensor& mask, const Tensor& position) {
    int64_t over = 0, total = 0;
    for (size_t k = 0; k < mask.i32.size(); ++k) {
      over += (mask.i32[k] * position.i32[k] >= C) ? 1 : 0;
      total += mask.i32[k];
    }
    return static_cast<float>(over) / std::max(1.0f, static_cast<float>(total));
  };
  const float over_capacity_1 = over_capacity_ratio(mask_1_now, position_in_expert_1);
  const float over_capacity_2 = over_capacity_ratio(mask_2_policy, position_in_expert_2);

  // dispatch_k = sum(dispatch_count_tensor == k); with paddings, dispatch_0 -= sum(paddings.astype(int32)).
  int32_t dispatch_0 = 0, dispatch_1 = 0, dispatch_2 = 0, paddings_count = 0;
  for (int32_t count : dispatch_count_tensor.i32) {
    dispatch_0 += count == 0 ? 1 : 0;
    dispatch_1 += count == 1 ? 1 : 0;
    dispatch_2 += count == 2 ? 1 : 0;
  }
  if (paddings != nullptr) {
    for (int64_t k = 0; k < G * S; ++k) paddings_count += static_cast<int32_t>(paddings[k]);
    dispatch_0 -= paddings_count;
  }

  // ---- Record the gating steps in source order ------------------------------------
  trace.add_step("logits", std::move(logits));
  if (capped) trace.add_step("logits_capped", std::move(logits_capped));
  trace.add_step("raw_gates", std::move(raw_gates));
  trace.add_step("index_1", std::move(index_1));
  trace.add_step("mask_1", std::move(mask_1));
  if (importance != nullptr) {
    trace.add_step("mask_1_important", std::move(mask_1_important));
    trace.add_step("density_1_proxy_per_token", std::move(density_1_proxy_per_token));
  } else if (paddings != nullptr) {
    trace.add_step("nonpaddings", std::move(nonpaddings));
    trace.add_step("mask_1_nonpadding", std::move(mask_1_nonpadding));
    trace.add_step("density_1_proxy_per_token", std::move(density_1_proxy_per_token));
  }
  trace.add_step("gate_1", std::move(gate_1));
  trace.add_step("gates_without_top_1", std::move(gates_without_top_1));
  if (policy == "sampling") {
    trace.add_step("noise", std::move(noise));
    trace.add_step("updated_logits", std::move(updated_logits));
    trace.add_step("noised_logits", std::move(noised_logits));
  }
  trace.add_step("index_2", std::move(index_2));
  trace.add_step("mask_2", std::move(mask_2));
  if (paddings != nullptr) trace.add_step("mask_2_nonpadding", std::move(mask_2_nonpadding));
  trace.add_step("gate_2", std::move(gate_2));
  if (legacy_mtf_behavior) {
    trace.add_step("denom", std::move(denom_legacy));
    trace.add_step("gate_1_normalized", std::move(gate_1_normalized));
    trace.add_step("gate_2_normalized", std::move(gate_2_normalized));
  }
  trace.add_step("position_in_expert_1", std::move(position_in_expert_1));
  if (!legacy_mtf_behavior) trace.add_step("density_denom", std::move(density_denom));
  trace.add_step("density_1", std::move(density_1));
  trace.add_step("density_1_proxy", std::move(density_1_proxy));
  trace.add_step("aux_loss", Tensor::scalar(aux_loss));
  trace.add_step("over_capacity_1", Tensor::scalar(over_capacity_1));
  trace.add_step("mask_1_capacity", std::move(mask_1_capacity));
  trace.add_step("position_in_expert_1_flat", std::move(position_in_expert_1_flat));
  trace.add_step("mask_1_count", std::move(mask_1_count));
  trace.add_step("mask_1_flat", std::move(mask_1_flat));
  if (policy == "random") {
    trace.add_step("sampled_2", std::move(sampled_2));
    trace.add_step("gate_2_sampled", std::move(gate_2_sampled));
    trace.add_step("mask_2_sampled", std::move(mask_2_sampled));
  }
  trace.add_step("position_in_expert_2", std::move(position_in_expert_2));
  trace.add_step("over_capacity_2", Tensor::scalar(over_capacity_2));
  trace.add_step("mask_2_capacity", std::move(mask_2_capacity));
  trace.add_step("position_in_expert_2_flat", std::move(position_in_expert_2_flat));
  trace.add_step("mask_2_flat", std::move(mask_2_flat));
  trace.add_step("gate_1_capacity", std::move(gate_1_capacity));
  trace.add_step("gate_2_capacity", std::move(gate_2_capacity));
  if (!legacy_mtf_behavior) {
    trace.add_step("denom", std::move(denom_after));
    trace.add_step("gate_1_normalized", std::move(gate_1_normalized));
    trace.add_step("gate_2_normalized", std::move(gate_2_normalized));
  }
  // The same routing in index form (per token and rank: expert, slot or -1, the
  // combine weight), for backends that never build [G, S, E, C] tensors. The
  // weight combine_tensor holds is the final gate: after capacity when legacy,
  // renormalised after it when not. (The steps are in the trace now: read them there.)
  {
    auto ints = [&trace](const char* name) { return trace.find_step(name)->i32.data(); };
    auto floats = [&trace](const char* name) { return trace.find_step(name)->f32.data(); };
    const std::vector<ops::RankDecisions> ranks = {
        {ints("index_1"), ints("position_in_expert_1_flat"), ints("mask_1_flat"),
         floats(legacy_mtf_behavior ? "gate_1_capacity" : "gate_1_normalized")},
        {ints("index_2"), ints("position_in_expert_2_flat"), ints("mask_2_flat"),
         floats(legacy_mtf_behavior ? "gate_2_capacity" : "gate_2_normalized")}};
    ops::record_routing_index_form(G, S, ranks, trace);
  }
  trace.add_step("combine_tensor", std::move(combine_tensor));
  trace.add_step("dispatch_count_tensor", std::move(dispatch_count_tensor));
  if (paddings != nullptr) trace.add_step("paddings_count", int_scalar(paddings_count));
  trace.add_step("dispatch_0", int_scalar(dispatch_0));
  trace.add_step("dispatch_1", int_scalar(dispatch_1));
  trace.add_step("dispatch_2", int_scalar(dispatch_2));
  trace.add_step("dispatch_tensor", std::move(dispatch_tensor));
  const Tensor& combine_ref = *trace.find_step("combine_tensor");
  const Tensor& dispatch_ref = *trace.find_step("dispatch_tensor");

  // ---- TransformerFeedForwardMoe: summaries, experts, combine, padding -------------
  if (config.scope == "layer") {
    // denom = (dispatch_0 + dispatch_1 + dispatch_2).astype(f32); add_summary('dispatch_k', dispatch_k / denom).
    const float summary_denom = static_cast<float>(dispatch_0 + dispatch_1 + dispatch_2);
    trace.add_step("summary_dispatch_0", Tensor::scalar(static_cast<float>(dispatch_0) / summary_denom));
    trace.add_step("summary_dispatch_1", Tensor::scalar(static_cast<float>(dispatch_1) / summary_denom));
    trace.add_step("summary_dispatch_2", Tensor::scalar(static_cast<float>(dispatch_2) / summary_denom));

    ops::ExpertLayerInputs layer;
    layer.inputs = reshaped_inputs;
    layer.dispatch_tensor = &dispatch_ref;
    layer.combine_tensor = &combine_ref;
    layer.activations = ops::parse_activations(hp["activation"]);
    // TransformerFeedForwardMoe.setup: wi_0 and wo_0 init WeightInit.Uniform((1 / fan_in) ** 0.5 * 3.0 ** 0.5).
    const double wi_bound = std::sqrt(1.0 / static_cast<double>(M)) * std::sqrt(3.0);
    const double wo_bound = std::sqrt(1.0 / static_cast<double>(shape.H)) * std::sqrt(3.0);
    layer.wi.push_back(&inputs.float_input("wi_0", {"E", "M", "H"}, {E, M, shape.H}, -wi_bound, wi_bound));
    layer.wo = &inputs.float_input("wo_0", {"E", "H", "N"}, {E, shape.H, shape.N}, -wo_bound, wo_bound);
    ops::mtf_expert_layer(layer, trace);

    if (paddings != nullptr) {
      // __call__: outputs *= (1.0 - paddings[..., None]).astype(fprop_dtype)
      Tensor outputs_nonpadding = *trace.find_step("outputs");  // [G, S, N]
      const int64_t N = shape.N;
      for (int64_t t = 0; t < G * S; ++t) {
        const float nonpadding = 1.0f - paddings[t];
        for (int64_t n = 0; n < N; ++n)
          outputs_nonpadding.f32[t * N + n] = outputs_nonpadding.f32[t * N + n] * nonpadding;
      }
      trace.add_step("outputs_nonpadding", std::move(outputs_nonpadding));
    }
  }
  inputs.check_all_used();

  // top2_gating_on_logits returns aux_loss; __call__ multiplies it by moe_load_balance_loss_weight.
  trace.add_loss("aux_loss", aux_loss);
  trace.add_loss("aux_moe_load_balance_loss", aux_loss * static_cast<float>(load_balance_weight));
}

}  // namespace moeref

namespace moeref {

namespace {

// The decisions of top2_gating_on_logits that a backend can legitimately make the
// other way when the deciding values are within float tolerance: the two argmax
// choices and the random policy's comparison.
std::optional<NearTie> praxis_top2_near_tie(const Trace& reference, const std::string& step, int64_t flat,
                                            int32_t candidate_value, const ToleranceFor& tolerance_for) {
  const int64_t E = reference.config["dims"]["E"].get<int64_t>();
  const nlohmann::json& hp = reference.config["hparams"];
  const std::string policy = hp["second_expert_policy"].get<std::string>();
  // index_1 = jnp.argmax(raw_gates)
  if (step == "index_1") {
    return ops::top_1_near_tie(reference, step, "raw_gates", flat, E, candidate_value, tolerance_for);
  }
  // index_2 = argmax(noised_logits) under sampling (logits + Gumbel noise), else argmax(gates_without_top_1).
  if (step == "index_2") {
    const char* scores = policy == "sampling" ? "noised_logits" : "gates_without_top_1";
    return ops::top_1_near_tie(reference, step, scores, flat, E, candidate_value, tolerance_for);
  }
  // sampled_2 = U < gate_2 / max(second_expert_threshold, 1e-9); gate_2 is the
  // legacy-normalised gate (recorded as gate_2_normalized) when legacy, else the raw one.
  if (step == "sampled_2" && policy == "random") {
    const float divisor = static_cast<float>(std::max(hp["second_expert_threshold"].get<double>(), 1e-9));
    const char* gate = hp["legacy_mtf_behavior"].get<bool>() ? "gate_2_normalized" : "gate_2";
    return ops::random_keep_near_tie(reference, "random_uniform", gate, flat, divisor, tolerance_for);
  }
  return std::nullopt;
}

}  // namespace

VariantSpec praxis_top2_variant() {
  VariantSpec spec;
  spec.id = "praxis_top2";
  spec.summary = "praxis top-2 gating (JAX port of lingvo Top2GatingOnLogits) in TransformerFeedForwardMoe";
  spec.source =
      "google/praxis praxis/gshard_utils.py: top2_gating_on_logits, compute_gating; "
      "praxis/layers/transformers.py: TransformerFeedForwardMoe";
  spec.spec_page = "spec/variants/praxis_top2.md";
  spec.run = run_praxis_top2;
  spec.near_tie = [](const NearTieQuery& q) {
    return praxis_top2_near_tie(q.reference, q.step, q.flat, q.candidate, q.tolerance_for);
  };
  auto add = [&spec](HparamSpec hparam) { spec.hparams.push_back(std::move(hparam)); };
  HparamSpec h;
  h = HparamSpec{};
  h.name = "num_groups";
  h.kind = HparamKind::kInt;
  h.default_value = nullptr;
  h.nullable = true;
  h.min_value = 1;
  h.max_value = 1 << 24;
  h.meaning =
      "TransformerFeedForwardMoe.num_groups: G when x is [B, L, M] (the source default 0 fails its own assert).";
  add(h);
  h = HparamSpec{};
  h.name = "min_group_size";
  h.kind = HparamKind::kInt;
  h.default_value = nullptr;
  h.nullable = true;
  h.min_value = 1;
  h.max_value = 1 << 24;
  h.meaning = "If B*L / num_groups is below it, G becomes ceil(B*L / min_group_size).";
  add(h);
  h = HparamSpec{};
  h.name = "expert_capacity_dim";
  h.kind = HparamKind::kInt;
  h.default_value = 0;
  h.nullable = true;
  h.min_value = 0;
  h.max_value = 1 << 24;
  h.meaning = "C0: the capacity when capacity_factor is falsy, else a lower bound (null means 1); layer default 0.";
  add(h);
  h = HparamSpec{};
  h.name = "capacity_factor";
  h.kind = HparamKind::kFloat;
  h.default_value = 2.0;
  h.nullable = true;
  h.min_value = 0.0;
  h.meaning =
      "If truthy, C0 is raised to roundup4(int(S * capacity_factor / E)) when below it (layer: "
      "unadjusted_expert_capacity_factor, default 2.0).";
  add(h);
  h = HparamSpec{};
  h.name = "second_expert_policy";
  h.kind = HparamKind::kString;
  h.default_value = "all";
  h.nullable = false;
  h.choices = {"all", "sampling", "random"};
  h.meaning =
      "Second expert: all (greedy), sampling (Gumbel sample from the other experts) or random (keep with "
      "probability gate_2 / threshold).";
  add(h);
  h = HparamSpec{};
  h.name = "second_expert_threshold";
  h.kind = HparamKind::kFloat;
  h.default_value = 0.0;
  h.nullable = false;
  h.min_value = 0.0;
  h.meaning = "Threshold t of the random policy: keep iff U < gate_2 / max(t, 1e-9); the layer hard-wires 0.0.";
  add(h);
  h = HparamSpec{};
  h.name = "legacy_mtf_behavior";
  h.kind = HparamKind::kBool;
  h.default_value = true;
  h.nullable = false;
  h.meaning =
      "True: renormalise gates before capacity (and the policy sees them); False: after, with padding-scaled "
      "densities; the layer hard-wires True.";
  add(h);
  h = HparamSpec{};
  h.name = "gating_logit_cap";
  h.kind = HparamKind::kFloat;
  h.default_value = 0.0;
  h.nullable = false;
  h.min_value = 0.0;
  h.meaning = "If > 0, logits become cap * tanh(logits / cap) before the softmax.";
  add(h);
  h = HparamSpec{};
  h.name = "moe_load_balance_loss_weight";
  h.kind = HparamKind::kFloat;
  h.default_value = 1.0;
  h.nullable = false;
  h.min_value = 0.0;
  h.meaning = "The layer's aux loss is aux_loss times this weight (must be > 0).";
  add(h);
  h = HparamSpec{};
  h.name = "activation";
  h.kind = HparamKind::kString;
  h.default_value = "relu";
  h.nullable = false;
  h.choices = {"linear", "relu", "swish", "sigmoid", "tanh"};
  h.meaning = "Expert activation (activation_tpl: Identity, ReLU, Swish, Sigmoid, Tanh).";
  add(h);
  return spec;
}

}  // namespace moeref
