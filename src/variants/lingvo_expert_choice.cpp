// lingvo_expert_choice: lingvo's expert-choice gating (token shuffling v2), literal to the source.
//
// Source: tensorflow/lingvo, lingvo/core/gshard_layers.py at e0be5dc4ce9b,
//   TokenShufflingOnlogitsV2 (the gating function), as driven by ComputeGating
//   (gating_func='token_shuffle_v2': logits = einsum('GSM,ME->GSE', inputs, w))
//   and consumed by FeedForwardNetworksApplyGating (dispatch 'GSEC,GSM->EGCM',
//   experts, combine). Spec: spec/variants/lingvo_expert_choice.md.
//
// Dims: G groups, S group size, E experts, C expert capacity, M model dim,
//       H expert hidden dim, N expert output dim (= M).
//
// Each expert picks its C best tokens by padding-masked probability
// (tf.math.top_k: lower token index first on ties). The selection becomes a
// 0/1 mask, and a token's slot in an expert is the number of earlier tokens
// (token order, not score order) that the expert also picked. A token may be
// picked by several experts; its weight for each is its raw probability.
// TokenShufflingOnlogitsV2 returns combine and dispatch in [G, S, E, C] (its
// docstring's "G`EC" / "G`ECS" is wrong); the trace records them so.
// Masks, indices and positions are integers in the source (mask_dtype must be
// an integer type, see mask_dtype below) and are stored as int32.

#include <cmath>
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
#include "moeref/ops/gshard_capacity.hpp"
#include "moeref/ops/router.hpp"
#include "moeref/ops/tf_softmax.hpp"
#include "moeref/ops/top_k.hpp"
#include "moeref/variant.hpp"

namespace moeref {

namespace {

// The largest [G, S, E, C] routing tensor moeref will build.
constexpr int64_t kMaxRoutingElements = int64_t{1} << 31;

struct Shape {
  int64_t G = 0, S = 0, E = 0, C = 0, M = 0, H = 0, N = 0;
  int64_t expert_capacity_dim = 0;
  std::optional<double> capacity_factor;
  ops::GshardCapacity capacity;
};

Shape resolve_shape(const Config& config, bool logits_supplied) {
  const nlohmann::json& hp = config.hparams;
  Shape shape;
  for (const char* letter : {"B", "L"}) {
    if (config.dims.count(letter)) {
      fail_input(std::string("dims.") + letter, "given",
                 "G and S only: lingvo_expert_choice routes the groups it is given (the callers' grouping is not "
                 "modelled)");
    }
  }
  require_dim(config, "G", "the number of groups, an integer >= 1");
  require_dim(config, "S", "the group size, an integer >= 1");
  require_dim(config, "E", "the number of experts, an integer >= 1");
  shape.G = config.dims.at("G");
  shape.S = config.dims.at("S");
  shape.E = config.dims.at("E");
  if (config.scope == "layer" || !logits_supplied) {
    require_dim(config, "M", "the model dim, needed for the router or the experts");
    shape.M = config.dims.at("M");
  } else if (config.dims.count("M")) {
    shape.M = config.dims.at("M");
  }
  if (config.scope == "layer") {
    require_dim(config, "H", "the expert hidden dim, needed with scope \"layer\"");
    shape.H = config.dims.at("H");
    shape.N = shape.M;
    check_derived_dim(config, "N", shape.N, "the experts' output dim is M (wo is [E, H, M])");
  }

  // mask_dtype: the source's one_hot on a mask_dtype tensor needs integer indices.
  const std::string mask_dtype = hp["mask_dtype"].get<std::string>();
  if (mask_dtype != "int32") {
    fail_input("hparams.mask_dtype", "\"" + mask_dtype + "\"",
               "\"int32\": TokenShufflingOnlogitsV2 calls tf.one_hot(expert_indices[:, :, i], E) and "
               "tf.one_hot(pos_i, C) on mask_dtype tensors, and TF's OneHot accepts only integer indices "
               "(TI in {uint8, int32, int64}), so a float mask_dtype raises TypeError while the graph is built");
  }

  // TokenShufflingOnlogitsV2: capacity rule.
  if (hp["expert_capacity_dim"].is_null()) {
    fail_input("hparams.expert_capacity_dim", "null (not given)",
               "an integer >= 0: expert_capacity_dim is a required argument of TokenShufflingOnlogitsV2 (no default; "
               "MoEBuilder's c_dim defaults to None, which fails)");
  }
  shape.expert_capacity_dim = hp["expert_capacity_dim"].get<int64_t>();
  if (!hp["capacity_factor"].is_null()) shape.capacity_factor = hp["capacity_factor"].get<double>();
  shape.capacity =
      ops::lingvo_token_shuffling_capacity(shape.S, shape.E, shape.expert_capacity_dim, shape.capacity_factor);
  shape.C = shape.capacity.expert_capacity;
  check_derived_dim(config, "C", shape.C,
                    "lingvo: C0 = expert_capacity_dim; with a non-zero capacity_factor, auto = int(S * cf / E) "
                    "(0 -> 4) and C = auto rounded up to a multiple of 4 when C0 < auto");
  if (shape.C > shape.S) {
    fail_input("hparams.expert_capacity_dim",
               "C = " + std::to_string(shape.C) + " (expert_capacity_dim " + std::to_string(shape.expert_capacity_dim) +
                   ", capacity_factor " + (shape.capacity_factor ? hp["capacity_factor"].dump() : "null") + ")",
               "a capacity C <= S = " + std::to_string(shape.S) +
                   ": tf.math.top_k(token_scores, k=C) raises InvalidArgument (input must have at least k columns)");
  }
  const double routing_elements = static_cast<double>(shape.G) * static_cast<double>(shape.S) *
                                  static_cast<double>(shape.E) * static_cast<double>(shape.C > 0 ? shape.C : 1);
  if (routing_elements > static_cast<double>(kMaxRoutingElements)) {
    fail_input("dims", "G*S*E*C = " + std::to_string(static_cast<long long>(routing_elements)),
               "at most 2^31 elements in combine_tensor");
  }
  return shape;
}

nlohmann::json resolved_config(const Config& config, const Shape& shape) {
  nlohmann::json dims = nlohmann::json::object();
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

}  // namespace

void run_lingvo_expert_choice(const Config& config, Trace& trace) {
  const nlohmann::json& hp = config.hparams;
  const bool logits_supplied = config.inputs.count("logits") > 0;
  const Shape shape = resolve_shape(config, logits_supplied);
  const int64_t G = shape.G, S = shape.S, E = shape.E, C = shape.C, M = shape.M;
  trace.config = resolved_config(config, shape);
  trace.capacity = {
      {"expert_capacity", C},
      {"rule", shape.capacity.rule_applied
                   ? "lingvo: auto = int(S * capacity_factor / E), 0 -> 4; C = auto rounded up to a "
                     "multiple of 4 if expert_capacity_dim < auto, else expert_capacity_dim"
                   : "lingvo: no capacity_factor, C = expert_capacity_dim"},
      {"expert_capacity_dim", shape.expert_capacity_dim},
      {"capacity_factor", hp["capacity_factor"]},
      {"auto_expert_capacity",
       shape.capacity.rule_applied ? nlohmann::json(shape.capacity.auto_expert_capacity) : nlohmann::json(nullptr)},
      {"group_size", S},
      {"num_groups", G}};

  // ---- Inputs ------------------------------------------------------------------
  InputSet inputs(config, trace);
  const Tensor* x = nullptr;
  if (config.scope == "layer" || !logits_supplied || inputs.supplied("x")) {
    x = &inputs.float_input("x", {"G", "S", "M"}, {G, S, M}, -1.0, 1.0);
  }
  const Tensor* logits_given = inputs.optional_input("logits", {"G", "S", "E"}, {G, S, E});
  const Tensor* router_weights = nullptr;
  if (logits_given == nullptr) {
    // Uniform with variance 2/M, as for mtf_top2: logits of order one.
    const double bound = std::sqrt(6.0 / static_cast<double>(M));
    router_weights = &inputs.float_input("router_weights", {"M", "E"}, {M, E}, -bound, bound);
  }
  const Tensor* paddings = inputs.optional_input("paddings", {"G", "S"}, {G, S});
  if (paddings != nullptr) {
    for (size_t i = 0; i < paddings->f32.size(); ++i) {
      if (!(paddings->f32[i] >= 0.0f && paddings->f32[i] <= 1.0f)) {
        std::string value;
        append_float32(value, paddings->f32[i]);
        fail_input("inputs.paddings" + paddings->named_index(static_cast<int64_t>(i)), value,
                   "a padding in [0, 1] (1 = padded token)");
      }
    }
  }

  Tensor logits = Tensor::float32({"G", "S", "E"}, {G, S, E});                     // [G, S, E]
  Tensor gates = Tensor::float32({"G", "S", "E"}, {G, S, E});                      // [G, S, E]
  Tensor nonpaddings = Tensor::float32({"G", "S"}, {G, S});                        // [G, S]
  Tensor token_scores = Tensor::float32({"G", "E", "S"}, {G, E, S});               // [G, E, S]
  Tensor token_indices = Tensor::int32({"G", "E", "C"}, {G, E, C});                // [G, E, C]
  Tensor mask_ges = Tensor::int32({"G", "E", "S"}, {G, E, S});                     // [G, E, S]
  Tensor mask = Tensor::int32({"G", "S", "E"}, {G, S, E});                         // [G, S, E]
  Tensor mask_nonpadding = Tensor::int32({"G", "S", "E"}, {G, S, E});              // [G, S, E]
  Tensor expert_indices = Tensor::int32({"G", "S", "E"}, {G, S, E});               // [G, S, E]
  Tensor position_in_expert = Tensor::int32({"G", "S", "E"}, {G, S, E});           // [G, S, E]
  Tensor position_in_expert_capacity = Tensor::int32({"G", "S", "E"}, {G, S, E});  // [G, S, E]
  Tensor position_in_expert_masked = Tensor::int32({"G", "S", "E"}, {G, S, E});    // [G, S, E]
  Tensor gate_i = Tensor::float32({"G", "S", "E"}, {G, S, E});                     // [G, S, E] (i along E)
  Tensor combine_tensor = Tensor::float32({"G", "S", "E", "C"}, {G, S, E, C});     // [G, S, E, C]
  Tensor dispatch_tensor = Tensor::int32({"G", "S", "E", "C"}, {G, S, E, C});      // [G, S, E, C]

  // The selection the checker's near-tie analysis forces (never set by a config):
  // 1 take, 0 leave, -1 as the reference, per (g, e, s), applied at the top_k.
  const Tensor* forced_selection = ops::forced_decision(config, "mask_ges", {G, E, S});

#pragma omp parallel for schedule(static)
  for (int64_t g = 0; g < G; ++g) {
    const int64_t gs = g * S, gse = g * S * E, ges = g * E * S, gec = g * E * C;

    // ComputeGating: logits = einsum('GSM,ME->GSE', inputs, w), no bias.
    if (logits_given != nullptr) {
      for (int64_t k = 0; k < S * E; ++k) logits.f32[gse + k] = logits_given->f32[gse + k];
    } else {
      ops::router_logits(x->f32.data() + gs * M, router_weights->f32.data(), S, M, E, logits.f32.data() + gse);
    }

    // gates = tf.nn.softmax(logits, axis=-1)  (fprop_dtype float32: the cast is a no-op)
    ops::tf_softmax(logits.f32.data() + gse, gates.f32.data() + gse, S, E);

    // nonpaddings = ones([G, S]); with paddings: nonpaddings = 1.0 - paddings
    for (int64_t s = 0; s < S; ++s) {
      nonpaddings.f32[gs + s] = paddings != nullptr ? 1.0f - paddings->f32[gs + s] : 1.0f;
    }

    // token_scores = gates (* nonpaddings with paddings); token_scores = transpose(token_scores, [0, 2, 1])
    for (int64_t s = 0; s < S; ++s) {
      for (int64_t e = 0; e < E; ++e) {
        const float score = gates.f32[gse + s * E + e];
        token_scores.f32[ges + e * S + s] = paddings != nullptr ? score * nonpaddings.f32[gs + s] : score;
      }
    }

    // _, token_indices = tf.math.top_k(token_scores, k=expert_capacity_dim, sorted=False)
    for (int64_t e = 0; e < E; ++e) {
      const float* scores = token_scores.f32.data() + ges + e * S;
      int32_t* picked = token_indices.i32.data() + gec + e * C;
      ops::tf_top_k_indices(scores, S, C, picked);
      if (forced_selection != nullptr) {
        // The checker forced which tokens this expert takes: the same C-token set
        // rule, in tf.math.top_k's order (best first, lower index first on ties).
        std::vector<int32_t> order(static_cast<size_t>(S));
        ops::tf_top_k_indices(scores, S, S, order.data());
        ops::force_top_k_selection(order.data(), S, C, forced_selection->i32.data() + ges + e * S, picked);
      }
    }

    // mask = one_hot(token_indices, S) [G,E,C,S] -> transpose [G,E,S,C] -> reduce_sum over C:
    // mask_ges [G,E,S] "records which expert selects which tokens" (0 or 1: top_k indices
    // are distinct); -> transpose [G,S,E]: mask[g, s, e].
    for (int64_t e = 0; e < E; ++e) {
      for (int64_t c = 0; c < C; ++c) {
        const int64_t s = token_indices.i32[gec + e * C + c];
        mask_ges.i32[ges + e * S + s] += 1;
      }
    }
    for (int64_t s = 0; s < S; ++s) {
      for (int64_t e = 0; e < E; ++e) mask.i32[gse + s * E + e] = mask_ges.i32[ges + e * S + s];
    }

    // mask *= expand_dims(cast(nonpaddings, mask.dtype), -1): an int32 cast truncates toward zero.
    for (int64_t s = 0; s < S; ++s) {
      const int32_t nonpadding_int = static_cast<int32_t>(nonpaddings.f32[gs + s]);
      for (int64_t e = 0; e < E; ++e) {
        mask_nonpadding.i32[gse + s * E + e] = mask.i32[gse + s * E + e] * nonpadding_int;
        // expert_indices = cast(reshape(range(E), [1, 1, E]), mask.dtype) * mask
        expert_indices.i32[gse + s * E + e] = static_cast<int32_t>(e) * mask_nonpadding.i32[gse + s * E + e];
      }
    }

    // position_in_expert = cumsum(mask, axis=-2, exclusive=True): token order.
    ops::exclusive_cumsum_over_s(mask_nonpadding.i32.data() + gse, S, E, position_in_expert.i32.data() + gse);
    for (int64_t k = 0; k < S * E; ++k) {
      const int32_t position = position_in_expert.i32[gse + k];
      // position_in_expert *= cast(less(position_in_expert, expert_capacity_dim))
      position_in_expert_capacity.i32[gse + k] = position * (position < C ? 1 : 0);
      // position_in_expert *= cast(mask)
      position_in_expert_masked.i32[gse + k] = position_in_expert_capacity.i32[gse + k] * mask_nonpadding.i32[gse + k];
    }

    // for i in range(E): combine_tensor += einsum('GSE,GSC->GSEC', gate_i, pos_i_indicator)
    float* combine_g = combine_tensor.f32.data() + g * S * E * C;
    for (int64_t i = 0; i < E; ++i) {
      for (int64_t s = 0; s < S; ++s) {
        const int32_t selected = mask_nonpadding.i32[gse + s * E + i];
        // expert_indicator = one_hot(expert_indices[:, :, i], E): expert i when selected, else expert 0.
        const int32_t indicated = expert_indices.i32[gse + s * E + i];
        // gate_i = einsum('GSE,GSE->GS', gates, expert_indicator): one product with 1.0, the rest + 0.
        float gate = gates.f32[gse + s * E + indicated];
        // gate_i *= cast(mask[:, :, i])
        gate = gate * static_cast<float>(selected);
        gate_i.f32[gse + s * E + i] = gate;
        const int32_t pos_i = position_in_expert_masked.i32[gse + s * E + i];
        for (int64_t e = 0; e < E; ++e) {
          // gate_i = expand_dims(gate_i, -1) * expert_indicator   [G, S, E]
          const float gate_e = gate * (e == indicated ? 1.0f : 0.0f);
          for (int64_t c = 0; c < C; ++c) {
            // pos_i_indicator = one_hot(pos_i, C) * expand_dims(mask[:, :, i], -1)   [G, S, C]
            const float pos_indicator = (c == pos_i ? 1.0f : 0.0f) * static_cast<float>(selected);
            combine_g[(s * E + e) * C + c] += gate_e * pos_indicator;
          }
        }
      }
    }
    // dispatch_tensor = cast(cast(combine_tensor, bool)): nonzero means dispatched.
    for (int64_t k = 0; k < S * E * C; ++k) {
      dispatch_tensor.i32[static_cast<size_t>(g * S * E * C + k)] = combine_g[k] != 0.0f ? 1 : 0;
    }
  }

  // avg_expert_per_token = reduce_sum(cast(mask, f32)) / reduce_sum(cast(nonpaddings, f32)) (a summary).
  int64_t selected_count = 0;
  for (int32_t value : mask_nonpadding.i32) selected_count += value;
  double nonpadding_sum = 0.0;
  for (float value : nonpaddings.f32) nonpadding_sum += static_cast<double>(value);
  const float avg_expert_per_token = static_cast<float>(selected_count) / static_cast<float>(nonpadding_sum);

  // ---- Record the steps in source order -----------------------------------------
  trace.add_step("logits", std::move(logits));
  trace.add_step("gates", std::move(gates));
  trace.add_step("nonpaddings", std::move(nonpaddings));
  trace.add_step("token_scores", std::move(token_scores));
  // top_k returns (values, indices) and the mask follows; the selection is recorded
  // first because it is the decision: a token taken instead of another at the cut
  // shows up as mask_ges (and the near-tie analysis can judge it), while the order
  // of token_indices follows from the selected set.
  trace.add_step("mask_ges", std::move(mask_ges));
  trace.add_step("token_indices", std::move(token_indices));
  trace.add_step("mask", std::move(mask));
  trace.add_step("mask_nonpadding", std::move(mask_nonpadding));
  trace.add_step("expert_indices", std::move(expert_indices));
  trace.add_step("avg_expert_per_token", Tensor::scalar(avg_expert_per_token));
  trace.add_step("position_in_expert", std::move(position_in_expert));
  trace.add_step("position_in_expert_capacity", std::move(position_in_expert_capacity));
  trace.add_step("position_in_expert_masked", std::move(position_in_expert_masked));
  trace.add_step("gate_i", std::move(gate_i));
  trace.add_step("combine_tensor", std::move(combine_tensor));
  trace.add_step("dispatch_tensor", std::move(dispatch_tensor));
  const Tensor& combine_ref = *trace.find_step("combine_tensor");
  const Tensor& dispatch_ref = *trace.find_step("dispatch_tensor");

  // ---- FeedForwardNetworksApplyGating: experts and combine, [G, S, E, C] as returned --
  if (config.scope == "layer") {
    ops::ExpertLayerInputs layer;
    layer.inputs = x;
    layer.dispatch_tensor = &dispatch_ref;
    layer.combine_tensor = &combine_ref;
    layer.activations = ops::parse_activations(hp["activation"]);
    ops::add_mtf_expert_weights(layer, inputs, E, M, shape.H, shape.N);
    ops::mtf_expert_layer(layer, trace);
  }
  inputs.check_all_used();

  // return tf.constant(0.0, dtype=fprop_dtype), combine_tensor, dispatch_tensor
  trace.add_loss("aux_loss", 0.0f);
}

}  // namespace moeref

namespace moeref {

namespace {

// The one decision of the gating function: which tokens each expert takes
// (tf.math.top_k(token_scores, k)). At a near tie at the cut (the k-th and (k+1)-th
// scores within float tolerance, exact ties included) a backend may take another
// token; mask_ges [G, E, S] lines up with token_scores [G, E, S] element by element.
std::optional<NearTie> lingvo_expert_choice_near_tie(const Trace& reference, const std::string& step, int64_t flat,
                                                     int32_t candidate_value, const ToleranceFor& tolerance_for) {
  if (step != "mask_ges") return std::nullopt;
  const int64_t S = reference.config["dims"]["S"].get<int64_t>();
  return ops::top_k_selection_near_tie(reference, step, "token_scores", flat, S, candidate_value, tolerance_for);
}

}  // namespace

VariantSpec lingvo_expert_choice_variant() {
  VariantSpec spec;
  spec.id = "lingvo_expert_choice";
  spec.summary = "lingvo expert-choice gating v2 (experts pick their top-C tokens by padding-masked probability)";
  spec.source = "tensorflow/lingvo lingvo/core/gshard_layers.py: TokenShufflingOnlogitsV2 via ComputeGating";
  spec.spec_page = "spec/variants/lingvo_expert_choice.md";
  spec.run = run_lingvo_expert_choice;
  spec.near_tie = [](const NearTieQuery& q) {
    return lingvo_expert_choice_near_tie(q.reference, q.step, q.flat, q.candidate, q.tolerance_for);
  };
  auto add = [&spec](HparamSpec hparam) { spec.hparams.push_back(std::move(hparam)); };
  HparamSpec h;
  h = HparamSpec{};
  h.name = "expert_capacity_dim";
  h.kind = HparamKind::kInt;
  h.default_value = nullptr;
  h.nullable = false;
  h.min_value = 0;
  h.max_value = 1 << 24;
  h.meaning = "Required: C0, tokens each expert takes per group (raised by capacity_factor); C must not exceed S.";
  add(h);
  h = HparamSpec{};
  h.name = "capacity_factor";
  h.kind = HparamKind::kFloat;
  h.default_value = nullptr;
  h.nullable = true;
  h.min_value = 0.0;
  h.max_value = 1 << 24;
  h.meaning =
      "If non-zero, C is raised to int(S * capacity_factor / E) (0 -> 4) rounded up to a multiple of 4 when C0 is "
      "smaller.";
  add(h);
  h = HparamSpec{};
  h.name = "mask_dtype";
  h.kind = HparamKind::kString;
  h.default_value = "int32";
  h.nullable = false;
  h.choices = {"int32", "float32", "bfloat16"};
  h.meaning =
      "dtype of the masks and positions; only int32 works (a float dtype makes the source's tf.one_hot raise "
      "TypeError).";
  add(h);
  h = HparamSpec{};
  h.name = "activation";
  h.kind = HparamKind::kStringList;
  h.default_value = "relu";
  h.nullable = false;
  h.choices = ops::activation_names();
  h.meaning = "Expert activation (scope layer); a list multiplies one dense factor per entry (GLU style).";
  add(h);
  return spec;
}

}  // namespace moeref
