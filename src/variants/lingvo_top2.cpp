// lingvo_top2: lingvo's GShard top-2 gating, literal to the source.
//
// Source: tensorflow/lingvo, lingvo/core/gshard_layers.py at e0be5dc4ce9b
//   (2025-08-20): ComputeGating (router logits, local_dispatch) and
//   Top2GatingOnLogits (the gating function). The expert half of the layer is
//   moeref's foundation layer (ops::mtf_expert_layer), which computes the same
//   einsums as lingvo's FeedForwardNetworksApplyGating for a bias-free ReLU FFN.
//   Spec: spec/variants/lingvo_top2.md.
//
// Dims: G groups, S group size, E experts, C expert capacity, M model dim,
//       H expert hidden dim, N expert output dim (N = M in lingvo).
//
// Each step below is one statement (or a few) of Top2GatingOnLogits, in the
// source's order, under the source's variable name. Where the source reassigns
// a variable (mask_1 *= ..., gate_1 /= ...), the trace keeps every version under
// a suffix naming the stage: mask_1 -> mask_1_nonpadded -> mask_1_capacity.
// lingvo holds masks and positions in mask_dtype (float32 here); their values
// are exact integers, so moeref stores them as int32.
//
// Arithmetic is TensorFlow's CPU kernels': tf.nn.softmax multiplies by the
// reciprocal of the sum, `/` is a true float32 division, reduce_mean is
// sum / f32(count) (spec page, "Arithmetic").

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
#include "moeref/ops/lingvo_capacity.hpp"
#include "moeref/ops/router.hpp"
#include "moeref/ops/routing_form.hpp"
#include "moeref/ops/tf_softmax.hpp"
#include "moeref/ops/top1.hpp"
#include "moeref/variant.hpp"

namespace moeref {

namespace {

// The largest [G, S, E, C] routing tensor moeref will build.
constexpr int64_t kMaxRoutingElements = int64_t{1} << 31;

struct Shape {
  int64_t G = 0, S = 0, E = 0, M = 0, H = 0, N = 0;  // the layer's dims: x is [G, S, M]
  // The dims Top2GatingOnLogits sees: (G, S), or (1, G*S) when ComputeGating
  // runs with local_dispatch=False and regroups every token into one group.
  int64_t gating_groups = 0, gating_group_size = 0;
  ops::LingvoCapacity capacity;
  int64_t C = 0;
  // Top2GatingOnLogits called directly on supplied logits (scope "gating"), as
  // opposed to through ComputeGating (logits from x, or scope "layer").
  bool direct_call = false;
};

Shape resolve_shape(const Config& config, bool logits_supplied) {
  const nlohmann::json& hp = config.hparams;
  Shape shape;
  require_dim(config, "E", "the number of experts (lingvo experts_dim), an integer >= 1");
  require_dim(config, "G", "the number of groups; x is [G, S, M] and logits [G, S, E]");
  require_dim(config, "S", "the group size; x is [G, S, M] and logits [G, S, E]");
  for (const char* letter : {"B", "L"}) {
    if (config.dims.count(letter)) {
      fail_input(std::string("dims.") + letter, std::to_string(config.dims.at(letter)),
                 "no B or L: lingvo_top2 takes tokens already grouped as [G, S, ...]");
    }
  }
  shape.G = config.dims.at("G");
  shape.S = config.dims.at("S");
  shape.E = config.dims.at("E");
  if (config.scope == "layer" || !logits_supplied) {
    require_dim(config, "M", "the model dim, needed for the router or the experts");
    shape.M = config.dims.at("M");
  } else {
    auto it = config.dims.find("M");
    shape.M = it == config.dims.end() ? 0 : it->second;
  }
  if (config.scope == "layer") {
    require_dim(config, "H", "the expert hidden dim, needed with scope \"layer\"");
    shape.H = config.dims.at("H");
    shape.N = shape.M;  // wo is [E, H, M] in lingvo
    check_derived_dim(config, "N", shape.N, "N = M: lingvo's experts map back to the model dim");
  }

  shape.direct_call = config.scope == "gating" && logits_supplied;
  const bool local_dispatch = hp["local_dispatch"].get<bool>();
  if (shape.direct_call && !local_dispatch) {
    fail_input("hparams.local_dispatch", "false",
               "true when logits are supplied with scope \"gating\": that is a direct Top2GatingOnLogits call, "
               "which has no local_dispatch (supply x and router_weights, or use scope \"layer\", for ComputeGating)");
  }
  // ComputeGating: if not local_dispatch, inputs = reshape(inputs, [1, G*S, M]).
  shape.gating_groups = local_dispatch ? shape.G : 1;
  shape.gating_group_size = local_dispatch ? shape.S : shape.G * shape.S;

  std::optional<double> capacity_factor;
  if (!hp["capacity_factor"].is_null()) capacity_factor = hp["capacity_factor"].get<double>();
  // group_size_dim = int(logits.shape[1]): the group size Top2GatingOnLogits sees.
  shape.capacity = ops::lingvo_expert_capacity(hp["expert_capacity_dim"].get<int64_t>(), capacity_factor,
                                               shape.gating_group_size, shape.E);
  shape.C = shape.capacity.expert_capacity;
  check_derived_dim(config, "C", shape.C, "the lingvo capacity rule on expert_capacity_dim and capacity_factor");

  const double routing_elements = static_cast<double>(shape.G) * static_cast<double>(shape.S) *
                                  static_cast<double>(shape.E) * static_cast<double>(std::max<int64_t>(shape.C, 1));
  if (routing_elements > static_cast<double>(kMaxRoutingElements)) {
    fail_input("dims", "G*S*E*C = " + std::to_string(static_cast<long long>(routing_elements)),
               "at most 2^31 elements in combine_tensor");
  }

  // epad_mask[:, :, np.array(expert_padding_idx)] = 1.0: numpy indexing, so -E <= i < E.
  for (const nlohmann::json& item : hp["expert_padding_idx"]) {
    const int64_t index = item.get<int64_t>();
    if (index < -shape.E || index >= shape.E) {
      fail_input("hparams.expert_padding_idx", hp["expert_padding_idx"].dump(),
                 "expert indices in [-E, E-1] = [" + std::to_string(-shape.E) + ", " + std::to_string(shape.E - 1) +
                     "] (numpy indexing of the E axis)");
    }
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

nlohmann::json capacity_record(const nlohmann::json& hp, const Shape& shape) {
  const ops::LingvoCapacity& capacity = shape.capacity;
  std::string rule;
  if (!capacity.has_capacity_factor) {
    rule = "lingvo: capacity_factor unset or <= 0, so C = expert_capacity_dim";
  } else if (capacity.raised) {
    rule =
        "lingvo: auto = int(S * capacity_factor / E), 0 -> 4; expert_capacity_dim < auto, so "
        "C = auto rounded up to a multiple of 4";
  } else {
    rule =
        "lingvo: auto = int(S * capacity_factor / E), 0 -> 4; expert_capacity_dim >= auto, so "
        "C = expert_capacity_dim (not rounded)";
  }
  nlohmann::json record = {{"expert_capacity", shape.C},
                           {"rule", rule},
                           {"expert_capacity_dim", hp["expert_capacity_dim"]},
                           {"capacity_factor", hp["capacity_factor"]},
                           {"auto_expert_capacity", nullptr},
                           {"raised", capacity.raised},
                           {"group_size", shape.gating_group_size},
                           {"num_groups", shape.gating_groups}};
  if (capacity.auto_expert_capacity) record["auto_expert_capacity"] = *capacity.auto_expert_capacity;
  return record;
}

// one_hot(index, depth) as 0/1 int32 rows.
void one_hot_rows(const int32_t* index, int64_t rows, int64_t depth, int32_t* out) {
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t e = 0; e < depth; ++e) out[r * depth + e] = index[r] == e ? 1 : 0;
  }
}

}  // namespace

void run_lingvo_top2(const Config& config, Trace& trace) {
  const nlohmann::json& hp = config.hparams;
  const bool logits_supplied = config.inputs.count("logits") > 0;
  const Shape shape = resolve_shape(config, logits_supplied);
  const int64_t E = shape.E, C = shape.C, M = shape.M;
  // From here on G and S are the dims Top2GatingOnLogits sees (see Shape).
  const int64_t G = shape.gating_groups, S = shape.gating_group_size;
  trace.config = resolved_config(config, shape);
  trace.capacity = capacity_record(hp, shape);

  const std::string policy = hp["second_expert_policy"].get<std::string>();
  const double second_expert_threshold = hp["second_expert_threshold"].get<double>();
  const bool legacy_mtf_behavior = hp["legacy_mtf_behavior"].get<bool>();

  // ---- Inputs ------------------------------------------------------------------
  InputSet inputs(config, trace);
  const Tensor* x = nullptr;
  // x feeds the router unless logits are supplied, and the experts in scope "layer";
  // when supplied with logits in scope "gating" it is only recorded (lingvo: `del inputs`).
  if (config.scope == "layer" || !logits_supplied || inputs.supplied("x")) {
    x = &inputs.float_input("x", {"G", "S", "M"}, {shape.G, shape.S, M}, -1.0, 1.0);
  }
  const Tensor* logits_given = inputs.optional_input("logits", {"G", "S", "E"}, {shape.G, shape.S, E});
  const Tensor* router_weights = nullptr;
  if (logits_given == nullptr) {
    // MoEBuilder._Top2GatingWeights: WeightInit.Uniform(sqrt(1/M) * sqrt(3)).
    const double bound = std::sqrt(3.0 / static_cast<double>(M));
    router_weights = &inputs.float_input("router_weights", {"M", "E"}, {M, E}, -bound, bound);
  }
  const Tensor* paddings = inputs.optional_input("paddings", {"G", "S"}, {shape.G, shape.S});
  if (paddings != nullptr) {
    for (size_t i = 0; i < paddings->f32.size(); ++i) {
      if (paddings->f32[i] != 0.0f && paddings->f32[i] != 1.0f) {
        std::string value;
        append_float32(value, paddings->f32[i]);
        fail_input("inputs.paddings" + paddings->named_index(static_cast<int64_t>(i)), value,
                   "0 or 1 (a fractional padding makes lingvo's float mask_1 fractional, which moeref does not model)");
      }
    }
  }
  if (inputs.supplied("importance") && !shape.direct_call) {
    fail_input("inputs.importance", "supplied",
               "only with scope \"gating\" and supplied logits (a direct Top2GatingOnLogits call): "
               "ComputeGating always passes importance=None");
  }
  const Tensor* importance_given = inputs.optional_input("importance", {"G", "S"}, {shape.G, shape.S});
  const Tensor* second_policy_uniform =
      policy == "random" ? &inputs.uniform_draw("second_policy_uniform", {"G", "S"}, {G, S}) : nullptr;
  const Tensor* noise_uniform =
      policy == "sampling" ? &inputs.uniform_draw("noise_uniform", {"G", "S", "E"}, {G, S, E}) : nullptr;

  // Decisions the checker's near-tie analysis forces (never set by a config), each
  // applied where the source makes the decision.
  const Tensor* forced_top1_expert = ops::forced_decision(config, "top1_expert_per_example", {G, S});
  const Tensor* forced_index_1 = ops::forced_decision(config, "index_1", {G, S});
  const Tensor* forced_index_2 = ops::forced_decision(config, "index_2", {G, S});
  const Tensor* forced_sampled_2 = ops::forced_decision(config, "sampled_2", {G, S});

  // ---- ComputeGating: logits = einsum('GSM,ME->GSE', inputs, w) ------------------
  // With local_dispatch=False the inputs are first reshaped to [1, G*S, M]; the
  // data is row-major, so only the dims change.
  Tensor logits = Tensor::float32({"G", "S", "E"}, {G, S, E});  // [G, S, E]
  if (logits_given != nullptr) {
    logits.f32 = logits_given->f32;
  } else {
    const int64_t chunk = shape.S;
#pragma omp parallel for schedule(static)
    for (int64_t g = 0; g < shape.G; ++g) {
      ops::router_logits(x->f32.data() + g * chunk * M, router_weights->f32.data(), chunk, M, E,
                         logits.f32.data() + g * chunk * E);
    }
  }
  // top1_expert_per_example = tf.math.argmax(logits, -1): a tpu_summary only.
  Tensor top1_expert_per_example = Tensor::int32({"G", "S"}, {G, S});  // [G, S]
  if (!shape.direct_call) {
    std::vector<float> max_logit(static_cast<size_t>(G * S));
    ops::top_1_lowest_index(logits.f32.data(), G * S, E, max_logit.data(), top1_expert_per_example.i32.data());
    if (forced_top1_expert != nullptr) {
      ops::force_top_1(forced_top1_expert->i32.data(), G * S, E, top1_expert_per_example.i32.data());
    }
  }

  // ---- Top2GatingOnLogits -----------------------------------------------------------
  // if expert_padding_idx: logits = where(epad_mask > 0, very_negative_logits, logits),
  // very_negative_logits = ones * logits.dtype.max * f32(-0.7), all in float32.
  const float very_negative_logit = std::numeric_limits<float>::max() * -0.7f;
  const bool expert_padding = !hp["expert_padding_idx"].empty();
  Tensor logits_expert_padded = Tensor::float32({"G", "S", "E"}, {G, S, E});  // [G, S, E]
  if (expert_padding) {
    std::vector<bool> epad_mask(static_cast<size_t>(E), false);
    for (const nlohmann::json& item : hp["expert_padding_idx"]) {
      const int64_t index = item.get<int64_t>();
      epad_mask[static_cast<size_t>(index < 0 ? index + E : index)] = true;
    }
    for (int64_t k = 0; k < G * S * E; ++k) {
      logits_expert_padded.f32[static_cast<size_t>(k)] =
          epad_mask[static_cast<size_t>(k % E)] ? very_negative_logit : logits.f32[static_cast<size_t>(k)];
    }
  }
  const Tensor& logits_now = expert_padding ? logits_expert_padded : logits;

  const float* importance_in = importance_given != nullptr ? importance_given->f32.data() : nullptr;
  const float* paddings_in = paddings != nullptr ? paddings->f32.data() : nullptr;

  Tensor raw_gates = Tensor::float32({"G", "S", "E"}, {G, S, E});                  // [G, S, E]
  Tensor index_1 = Tensor::int32({"G", "S"}, {G, S});                              // [G, S]
  Tensor mask_1 = Tensor::int32({"G", "S", "E"}, {G, S, E});                       // [G, S, E]
  Tensor mask_1_important = Tensor::int32({"G", "S", "E"}, {G, S, E});             // [G, S, E]
  Tensor mask_1_nonpadded = Tensor::int32({"G", "S", "E"}, {G, S, E});             // [G, S, E]
  Tensor density_1_proxy_per_token = Tensor::float32({"G", "S", "E"}, {G, S, E});  // [G, S, E]
  Tensor importance = Tensor::float32({"G", "S"}, {G, S});                         // [G, S]
  Tensor gate_1 = Tensor::float32({"G", "S"}, {G, S});                             // [G, S]
  Tensor gates_without_top_1 = Tensor::float32({"G", "S", "E"}, {G, S, E});        // [G, S, E]
  Tensor noise = Tensor::float32({"G", "S", "E"}, {G, S, E});                      // [G, S, E]
  Tensor updated_logits = Tensor::float32({"G", "S", "E"}, {G, S, E});             // [G, S, E]
  Tensor noised_logits = Tensor::float32({"G", "S", "E"}, {G, S, E});              // [G, S, E]
  Tensor index_2 = Tensor::int32({"G", "S"}, {G, S});                              // [G, S]
  Tensor mask_2 = Tensor::int32({"G", "S", "E"}, {G, S, E});                       // [G, S, E]
  Tensor mask_2_important = Tensor::int32({"G", "S", "E"}, {G, S, E});             // [G, S, E]
  Tensor gate_2 = Tensor::float32({"G", "S"}, {G, S});                             // [G, S]
  Tensor legacy_denom = Tensor::float32({"G", "S"}, {G, S});                       // [G, S]
  Tensor legacy_gate_1 = Tensor::float32({"G", "S"}, {G, S});                      // [G, S]
  Tensor legacy_gate_2 = Tensor::float32({"G", "S"}, {G, S});                      // [G, S]
  Tensor position_in_expert_1 = Tensor::int32({"G", "S", "E"}, {G, S, E});         // [G, S, E]
  Tensor density_denom = Tensor::float32({"G"}, {G});                              // [G] (source: [G, 1])
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
  Tensor denom = Tensor::float32({"G", "S"}, {G, S});                              // [G, S]
  Tensor denom_safe = Tensor::float32({"G", "S"}, {G, S});                         // [G, S]
  Tensor gate_1_normalized = Tensor::float32({"G", "S"}, {G, S});                  // [G, S]
  Tensor gate_2_normalized = Tensor::float32({"G", "S"}, {G, S});                  // [G, S]
  Tensor combine_tensor = Tensor::float32({"G", "S", "E", "C"}, {G, S, E, C});     // [G, S, E, C]
  Tensor dispatch_tensor = Tensor::int32({"G", "S", "E", "C"}, {G, S, E, C});      // [G, S, E, C]

  // Per-group parts of the scalar summaries, summed in group order after the loop.
  std::vector<int64_t> over_capacity_1_part(static_cast<size_t>(G)), mask_1_sum_part(static_cast<size_t>(G));
  std::vector<int64_t> over_capacity_2_part(static_cast<size_t>(G)), mask_2_sum_part(static_cast<size_t>(G));

  // capacity = tf.cast(expert_capacity_dim, position dtype): float32.
  const float capacity = static_cast<float>(C);
  const float fS = static_cast<float>(S);  // reduce_mean divides by f32(S)
  // gate_2 / max(second_expert_threshold, 1e-9): the Python max, then a float32 divisor.
  const float threshold_divisor = static_cast<float>(std::max(second_expert_threshold, 1e-9));
  const float kDenomEpsilon = 1e-9f;
  const float kDensityEpsilon = 1e-6f;

#pragma omp parallel for schedule(static)
  for (int64_t g = 0; g < G; ++g) {
    const int64_t gs = g * S, gse = g * S * E, ge = g * E;

    // raw_gates = tf.nn.softmax(logits)  # along E dim
    ops::tf_softmax(logits_now.f32.data() + gse, raw_gates.f32.data() + gse, S, E);

    // index_1 = tf.math.argmax(raw_gates, axis=-1); mask_1 = tf.one_hot(index_1, experts_dim)
    {
      std::vector<float> max_gate(static_cast<size_t>(S));
      ops::top_1_lowest_index(raw_gates.f32.data() + gse, S, E, max_gate.data(), index_1.i32.data() + gs);
    }
    if (forced_index_1 != nullptr) ops::force_top_1(forced_index_1->i32.data() + gs, S, E, index_1.i32.data() + gs);
    one_hot_rows(index_1.i32.data() + gs, S, E, mask_1.i32.data() + gse);
    const int32_t* mask_1_now = mask_1.i32.data() + gse;
    const float* density_1_proxy_now = raw_gates.f32.data() + gse;  // density_1_proxy = raw_gates

    if (importance_in != nullptr) {
      // importance_is_one = tf.equal(importance, 1.0); mask_1 and density_1_proxy *= it.
      for (int64_t s = 0; s < S; ++s) {
        const bool is_one = importance_in[gs + s] == 1.0f;
        for (int64_t e = 0; e < E; ++e) {
          const int64_t k = gse + s * E + e;
          mask_1_important.i32[k] = mask_1.i32[k] * (is_one ? 1 : 0);
          density_1_proxy_per_token.f32[k] = raw_gates.f32[k] * (is_one ? 1.0f : 0.0f);
        }
      }
      mask_1_now = mask_1_important.i32.data() + gse;
      density_1_proxy_now = density_1_proxy_per_token.f32.data() + gse;
    } else {
      // importance = tf.ones_like(mask_1[:, :, 0])
      for (int64_t s = 0; s < S; ++s) importance.f32[gs + s] = 1.0f;
      if (paddings_in != nullptr) {
        // nonpaddings = 1.0 - paddings; mask_1 and density_1_proxy *= nonpaddings;
        // importance = nonpaddings. Paddings are 0 or 1, so the mask stays 0/1.
        for (int64_t s = 0; s < S; ++s) {
          const float nonpaddings = 1.0f - paddings_in[gs + s];
          for (int64_t e = 0; e < E; ++e) {
            const int64_t k = gse + s * E + e;
            mask_1_nonpadded.i32[k] = mask_1.i32[k] * static_cast<int32_t>(nonpaddings);
            density_1_proxy_per_token.f32[k] = raw_gates.f32[k] * nonpaddings;
          }
          importance.f32[gs + s] = nonpaddings;
        }
        mask_1_now = mask_1_nonpadded.i32.data() + gse;
        density_1_proxy_now = density_1_proxy_per_token.f32.data() + gse;
      }
    }
    const float* importance_now = importance_in != nullptr ? importance_in + gs : importance.f32.data() + gs;

    // gate_1 = einsum('GSE,GSE->GS', raw_gates, mask_1): a 0/1 mask selects one term, exactly.
    // gates_without_top_1 = raw_gates * (1.0 - mask_1)
    for (int64_t s = 0; s < S; ++s) {
      double sum = 0.0;
      for (int64_t e = 0; e < E; ++e) {
        const int64_t k = gse + s * E + e;
        sum += static_cast<double>(raw_gates.f32[k] * static_cast<float>(mask_1_now[s * E + e]));
        gates_without_top_1.f32[k] = raw_gates.f32[k] * (1.0f - static_cast<float>(mask_1_now[s * E + e]));
      }
      gate_1.f32[gs + s] = static_cast<float>(sum);
    }

    if (policy == "sampling") {
      // noise = -log(-log(U)); updated_logits = where(mask_1 > 0, very_negative_logits, logits);
      // noised_logits = updated_logits + noise; index_2 = argmax(noised_logits).
      for (int64_t k = gse; k < gse + S * E; ++k) {
        const float log_u = static_cast<float>(std::log(static_cast<double>(noise_uniform->f32[k])));
        const float neg_log_u = -log_u;
        const float log_neg_log_u = static_cast<float>(std::log(static_cast<double>(neg_log_u)));
        noise.f32[k] = -log_neg_log_u;
        updated_logits.f32[k] = mask_1_now[k - gse] > 0 ? very_negative_logit : logits_now.f32[k];
        noised_logits.f32[k] = updated_logits.f32[k] + noise.f32[k];
      }
      std::vector<float> max_noised(static_cast<size_t>(S));
      ops::top_1_lowest_index(noised_logits.f32.data() + gse, S, E, max_noised.data(), index_2.i32.data() + gs);
    } else {
      // index_2 = tf.math.argmax(gates_without_top_1, axis=-1)
      std::vector<float> max_gate(static_cast<size_t>(S));
      ops::top_1_lowest_index(gates_without_top_1.f32.data() + gse, S, E, max_gate.data(), index_2.i32.data() + gs);
    }
    if (forced_index_2 != nullptr) ops::force_top_1(forced_index_2->i32.data() + gs, S, E, index_2.i32.data() + gs);
    one_hot_rows(index_2.i32.data() + gs, S, E, mask_2.i32.data() + gse);
    const int32_t* mask_2_now = mask_2.i32.data() + gse;
    if (paddings_in != nullptr) {
      // Only when paddings is not None: mask_2 *= (importance > 0).
      for (int64_t s = 0; s < S; ++s) {
        const int32_t nonzero = importance_now[s] > 0.0f ? 1 : 0;
        for (int64_t e = 0; e < E; ++e) mask_2_important.i32[gse + s * E + e] = mask_2.i32[gse + s * E + e] * nonzero;
      }
      mask_2_now = mask_2_important.i32.data() + gse;
    }
    // gate_2 = einsum('GSE,GSE->GS', gates_without_top_1, mask_2)
    for (int64_t s = 0; s < S; ++s) {
      double sum = 0.0;
      for (int64_t e = 0; e < E; ++e) {
        sum +=
            static_cast<double>(gates_without_top_1.f32[gse + s * E + e] * static_cast<float>(mask_2_now[s * E + e]));
      }
      gate_2.f32[gs + s] = static_cast<float>(sum);
    }

    const float* gate_1_now = gate_1.f32.data() + gs;
    const float* gate_2_now = gate_2.f32.data() + gs;
    if (legacy_mtf_behavior) {
      // denom = gate_1 + gate_2 + 1e-9; gate_1 /= denom; gate_2 /= denom (true division).
      for (int64_t s = 0; s < S; ++s) {
        const float d = (gate_1.f32[gs + s] + gate_2.f32[gs + s]) + kDenomEpsilon;
        legacy_denom.f32[gs + s] = d;
        legacy_gate_1.f32[gs + s] = gate_1.f32[gs + s] / d;
        legacy_gate_2.f32[gs + s] = gate_2.f32[gs + s] / d;
      }
      gate_1_now = legacy_gate_1.f32.data() + gs;
      gate_2_now = legacy_gate_2.f32.data() + gs;
    }

    // position_in_expert_1 = tf.cumsum(mask_1, exclusive=True, axis=-2): not multiplied by mask_1.
    ops::exclusive_cumsum_over_s(mask_1_now, S, E, position_in_expert_1.i32.data() + gse);

    // density_denom = 1.0 (legacy) or reduce_mean(importance, axis=1)[:, newaxis] + 1e-6.
    float dd = 1.0f;
    if (!legacy_mtf_behavior) {
      double importance_sum = 0.0;
      for (int64_t s = 0; s < S; ++s) importance_sum += static_cast<double>(importance_now[s]);
      dd = static_cast<float>(importance_sum) / fS + kDensityEpsilon;
      density_denom.f32[g] = dd;
    }
    // density_1 = reduce_mean(mask_1, axis=-2) / density_denom;
    // density_1_proxy = reduce_mean(density_1_proxy, axis=-2) / density_denom.
    // Dividing by the Python 1.0 of the legacy path is exact, so it is skipped.
    for (int64_t e = 0; e < E; ++e) {
      int64_t count = 0;
      double proxy_sum = 0.0;
      for (int64_t s = 0; s < S; ++s) {
        count += mask_1_now[s * E + e];
        proxy_sum += static_cast<double>(density_1_proxy_now[s * E + e]);
      }
      float d1 = static_cast<float>(count) / fS;
      float p1 = static_cast<float>(proxy_sum) / fS;
      if (!legacy_mtf_behavior) {
        d1 = d1 / dd;
        p1 = p1 / dd;
      }
      density_1.f32[ge + e] = d1;
      density_1_proxy.f32[ge + e] = p1;
    }

    // _CreateOverCapacityRatioSummary(mask_1, position_in_expert_1, capacity, 'over_capacity_1')
    int64_t over_1 = 0, mask_1_sum = 0;
    for (int64_t k = 0; k < S * E; ++k) {
      const float masked_position =
          static_cast<float>(mask_1_now[k]) * static_cast<float>(position_in_expert_1.i32[gse + k]);
      over_1 += masked_position >= capacity ? 1 : 0;
      mask_1_sum += mask_1_now[k];
    }
    over_capacity_1_part[static_cast<size_t>(g)] = over_1;
    mask_1_sum_part[static_cast<size_t>(g)] = mask_1_sum;

    // mask_1 *= tf.less(position_in_expert_1, capacity)
    // position_in_expert_1 = einsum('GSE,GSE->GS', position_in_expert_1, mask_1): 0 when dropped.
    // mask_1_count = einsum('GSE->GE', mask_1); mask_1_flat = einsum('GSE->GS', mask_1)
    for (int64_t k = 0; k < S * E; ++k) {
      const bool fits = static_cast<float>(position_in_expert_1.i32[gse + k]) < capacity;
      mask_1_capacity.i32[gse + k] = mask_1_now[k] * (fits ? 1 : 0);
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
      // sampled_2 = less(uniform(gate_2.shape), gate_2 / max(second_expert_threshold, 1e-9));
      // gate_2 *= sampled_2; mask_2 *= sampled_2. gate_2 is the normalized gate when legacy.
      for (int64_t s = 0; s < S; ++s) {
        bool sampled = second_policy_uniform->f32[gs + s] < gate_2_now[s] / threshold_divisor;
        if (forced_sampled_2 != nullptr && forced_sampled_2->i32[static_cast<size_t>(gs + s)] >= 0) {
          sampled = forced_sampled_2->i32[static_cast<size_t>(gs + s)] != 0;
        }
        sampled_2.i32[gs + s] = sampled ? 1 : 0;
        gate_2_sampled.f32[gs + s] = gate_2_now[s] * (sampled ? 1.0f : 0.0f);
        for (int64_t e = 0; e < E; ++e) {
          mask_2_sampled.i32[gse + s * E + e] = mask_2_now[s * E + e] * (sampled ? 1 : 0);
        }
      }
      gate_2_now = gate_2_sampled.f32.data() + gs;
      mask_2_now = mask_2_sampled.i32.data() + gse;
    }

    // position_in_expert_2 = cumsum(mask_2, exclusive=True, axis=-2) + expand_dims(mask_1_count, -2)
    ops::exclusive_cumsum_over_s(mask_2_now, S, E, position_in_expert_2.i32.data() + gse);
    for (int64_t s = 0; s < S; ++s) {
      for (int64_t e = 0; e < E; ++e) position_in_expert_2.i32[gse + s * E + e] += mask_1_count.i32[ge + e];
    }

    // _CreateOverCapacityRatioSummary(mask_2, position_in_expert_2, capacity, 'over_capacity_2')
    int64_t over_2 = 0, mask_2_sum = 0;
    for (int64_t k = 0; k < S * E; ++k) {
      const float masked_position =
          static_cast<float>(mask_2_now[k]) * static_cast<float>(position_in_expert_2.i32[gse + k]);
      over_2 += masked_position >= capacity ? 1 : 0;
      mask_2_sum += mask_2_now[k];
    }
    over_capacity_2_part[static_cast<size_t>(g)] = over_2;
    mask_2_sum_part[static_cast<size_t>(g)] = mask_2_sum;

    // mask_2 *= less(position_in_expert_2, capacity);
    // position_in_expert_2 = einsum('GSE,GSE->GS', position_in_expert_2, mask_2);
    // mask_2_flat = reduce_sum(mask_2, axis=-1)
    for (int64_t k = 0; k < S * E; ++k) {
      const bool fits = static_cast<float>(position_in_expert_2.i32[gse + k]) < capacity;
      mask_2_capacity.i32[gse + k] = mask_2_now[k] * (fits ? 1 : 0);
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

    // gate_1 *= mask_1_flat; gate_2 *= mask_2_flat
    for (int64_t s = 0; s < S; ++s) {
      gate_1_capacity.f32[gs + s] = gate_1_now[s] * static_cast<float>(mask_1_flat.i32[gs + s]);
      gate_2_capacity.f32[gs + s] = gate_2_now[s] * static_cast<float>(mask_2_flat.i32[gs + s]);
    }
    gate_1_now = gate_1_capacity.f32.data() + gs;
    gate_2_now = gate_2_capacity.f32.data() + gs;

    if (!legacy_mtf_behavior) {
      // denom = gate_1 + gate_2; denom = where(denom > 0, denom, ones_like(denom));
      // gate_1 /= denom; gate_2 /= denom. No epsilon.
      for (int64_t s = 0; s < S; ++s) {
        const float d = gate_1_capacity.f32[gs + s] + gate_2_capacity.f32[gs + s];
        denom.f32[gs + s] = d;
        const float safe = d > 0.0f ? d : 1.0f;
        denom_safe.f32[gs + s] = safe;
        gate_1_normalized.f32[gs + s] = gate_1_capacity.f32[gs + s] / safe;
        gate_2_normalized.f32[gs + s] = gate_2_capacity.f32[gs + s] / safe;
      }
      gate_1_now = gate_1_normalized.f32.data() + gs;
      gate_2_now = gate_2_normalized.f32.data() + gs;
    }

    // b = one_hot(int(position_in_expert_1), C); a = (gate_1 * mask_1_flat)[..., None] * one_hot(index_1, E);
    // first_part_of_combine_tensor = einsum('GSE,GSC->GSEC', a, b); the same for the second
    // choice; combine_tensor = first + second; dispatch_tensor = cast(cast(combine_tensor, bool)).
    for (int64_t s = 0; s < S; ++s) {
      const float weight_1 = gate_1_now[s] * static_cast<float>(mask_1_flat.i32[gs + s]);
      const float weight_2 = gate_2_now[s] * static_cast<float>(mask_2_flat.i32[gs + s]);
      for (int64_t e = 0; e < E; ++e) {
        const float a_1 = weight_1 * (index_1.i32[gs + s] == e ? 1.0f : 0.0f);
        const float a_2 = weight_2 * (index_2.i32[gs + s] == e ? 1.0f : 0.0f);
        for (int64_t c = 0; c < C; ++c) {
          const float first = a_1 * (position_in_expert_1_flat.i32[gs + s] == c ? 1.0f : 0.0f);
          const float second = a_2 * (position_in_expert_2_flat.i32[gs + s] == c ? 1.0f : 0.0f);
          const int64_t slot = ((gs + s) * E + e) * C + c;
          combine_tensor.f32[slot] = first + second;
          dispatch_tensor.i32[slot] = combine_tensor.f32[slot] != 0.0f ? 1 : 0;
        }
      }
    }
  }

  // aux_loss = reduce_mean(density_1_proxy * density_1); aux_loss *= experts_dim * experts_dim.
  double product_sum = 0.0;
  for (int64_t k = 0; k < G * E; ++k) product_sum += static_cast<double>(density_1_proxy.f32[k] * density_1.f32[k]);
  const float aux_loss = (static_cast<float>(product_sum) / static_cast<float>(G * E)) * static_cast<float>(E * E);

  // over_capacity = reduce_sum(cast(mask * position >= capacity)): one scalar over G, S, E;
  // over_capacity_ratio = over_capacity / maximum(1.0, reduce_sum(mask)).
  auto total = [](const std::vector<int64_t>& parts) {
    int64_t sum = 0;
    for (int64_t part : parts) sum += part;
    return sum;
  };
  auto count_scalar = [](int64_t count) {
    Tensor t = Tensor::int32({}, {});
    t.i32[0] = static_cast<int32_t>(count);
    return t;
  };
  auto ratio = [](int64_t over, int64_t mask_sum) {
    return static_cast<float>(over) / std::max(1.0f, static_cast<float>(mask_sum));
  };
  const int64_t over_capacity_1 = total(over_capacity_1_part), over_capacity_2 = total(over_capacity_2_part);
  const float over_capacity_1_ratio = ratio(over_capacity_1, total(mask_1_sum_part));
  const float over_capacity_2_ratio = ratio(over_capacity_2, total(mask_2_sum_part));

  // ---- Record the steps in source order --------------------------------------------
  trace.add_step("logits", std::move(logits));
  if (!shape.direct_call) trace.add_step("top1_expert_per_example", std::move(top1_expert_per_example));
  if (expert_padding) trace.add_step("logits_expert_padded", std::move(logits_expert_padded));
  trace.add_step("raw_gates", std::move(raw_gates));
  trace.add_step("index_1", std::move(index_1));
  trace.add_step("mask_1", std::move(mask_1));
  if (importance_in != nullptr) {
    trace.add_step("mask_1_important", std::move(mask_1_important));
    trace.add_step("density_1_proxy_per_token", std::move(density_1_proxy_per_token));
  } else {
    if (paddings_in != nullptr) {
      trace.add_step("mask_1_nonpadded", std::move(mask_1_nonpadded));
      trace.add_step("density_1_proxy_per_token", std::move(density_1_proxy_per_token));
    }
    trace.add_step("importance", std::move(importance));
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
  if (paddings_in != nullptr) trace.add_step("mask_2_important", std::move(mask_2_important));
  trace.add_step("gate_2", std::move(gate_2));
  if (legacy_mtf_behavior) {
    trace.add_step("denom", std::move(legacy_denom));
    trace.add_step("gate_1_normalized", std::move(legacy_gate_1));
    trace.add_step("gate_2_normalized", std::move(legacy_gate_2));
  }
  trace.add_step("position_in_expert_1", std::move(position_in_expert_1));
  if (!legacy_mtf_behavior) trace.add_step("density_denom", std::move(density_denom));
  trace.add_step("density_1", std::move(density_1));
  trace.add_step("density_1_proxy", std::move(density_1_proxy));
  trace.add_step("aux_loss", Tensor::scalar(aux_loss));
  trace.add_step("over_capacity_1", count_scalar(over_capacity_1));
  trace.add_step("over_capacity_1_ratio", Tensor::scalar(over_capacity_1_ratio));
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
  trace.add_step("over_capacity_2", count_scalar(over_capacity_2));
  trace.add_step("over_capacity_2_ratio", Tensor::scalar(over_capacity_2_ratio));
  trace.add_step("mask_2_capacity", std::move(mask_2_capacity));
  trace.add_step("position_in_expert_2_flat", std::move(position_in_expert_2_flat));
  trace.add_step("mask_2_flat", std::move(mask_2_flat));
  trace.add_step("gate_1_capacity", std::move(gate_1_capacity));
  trace.add_step("gate_2_capacity", std::move(gate_2_capacity));
  if (!legacy_mtf_behavior) {
    trace.add_step("denom", std::move(denom));
    trace.add_step("denom_safe", std::move(denom_safe));
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
  trace.add_step("dispatch_tensor", std::move(dispatch_tensor));

  // ComputeGating, not local_dispatch: dispatch_tensor and combine_tensor are reshaped
  // back to orig_inputs.shape[:2] + [E, C]; the slots keep the single group's numbering.
  const Tensor* dispatch_ref = trace.find_step("dispatch_tensor");
  const Tensor* combine_ref = trace.find_step("combine_tensor");
  if (!hp["local_dispatch"].get<bool>()) {
    Tensor dispatch_regrouped = *dispatch_ref;
    dispatch_regrouped.shape = {shape.G, shape.S, E, C};
    Tensor combine_regrouped = *combine_ref;
    combine_regrouped.shape = {shape.G, shape.S, E, C};
    trace.add_step("dispatch_tensor_regrouped", std::move(dispatch_regrouped));
    dispatch_ref = &trace.steps.back().tensor;
    trace.add_step("combine_tensor_regrouped", std::move(combine_regrouped));
    combine_ref = &trace.steps.back().tensor;
  }

  // ---- FeedForwardNetworksApplyGating: experts and combine (foundation layer) --------
  if (config.scope == "layer") {
    ops::ExpertLayerInputs layer;
    layer.inputs = x;
    layer.dispatch_tensor = dispatch_ref;
    layer.combine_tensor = combine_ref;
    layer.activations = ops::parse_activations(hp["activation"]);
    // MoEBuilder: wi ~ Uniform(sqrt(3/M)), wo ~ Uniform(sqrt(3/H)).
    ops::add_mtf_expert_weights(layer, inputs, E, M, shape.H, shape.N);
    ops::mtf_expert_layer(layer, trace);
  }
  inputs.check_all_used();

  trace.add_loss("aux_loss", aux_loss);
}

namespace {

// The decisions of Top2GatingOnLogits (and ComputeGating's summary argmax) that a
// backend can legitimately make the other way when the deciding values are within
// float tolerance: the two argmax choices and the random policy's comparison.
std::optional<NearTie> lingvo_top2_near_tie(const Trace& reference, const std::string& step, int64_t flat,
                                            int32_t candidate_value, const ToleranceFor& tolerance_for) {
  const int64_t E = reference.config["dims"]["E"].get<int64_t>();
  const nlohmann::json& hp = reference.config["hparams"];
  const std::string policy = hp["second_expert_policy"].get<std::string>();
  // top1_expert_per_example = argmax(logits): the un-padded logits ComputeGating computed.
  if (step == "top1_expert_per_example") {
    return ops::top_1_near_tie(reference, step, "logits", flat, E, candidate_value, tolerance_for);
  }
  // index_1 = argmax(raw_gates)
  if (step == "index_1") {
    return ops::top_1_near_tie(reference, step, "raw_gates", flat, E, candidate_value, tolerance_for);
  }
  // index_2 = argmax(noised_logits) under sampling (logits + Gumbel noise), else argmax(gates_without_top_1).
  if (step == "index_2") {
    const char* scores = policy == "sampling" ? "noised_logits" : "gates_without_top_1";
    return ops::top_1_near_tie(reference, step, scores, flat, E, candidate_value, tolerance_for);
  }
  // sampled_2 = less(U, gate_2 / max(second_expert_threshold, 1e-9)); gate_2 is the
  // legacy-normalised gate (recorded as gate_2_normalized) when legacy, else the raw one.
  if (step == "sampled_2" && policy == "random") {
    const float divisor = static_cast<float>(std::max(hp["second_expert_threshold"].get<double>(), 1e-9));
    const char* gate = hp["legacy_mtf_behavior"].get<bool>() ? "gate_2_normalized" : "gate_2";
    return ops::random_keep_near_tie(reference, "second_policy_uniform", gate, flat, divisor, tolerance_for);
  }
  return std::nullopt;
}

}  // namespace

VariantSpec lingvo_top2_variant() {
  VariantSpec spec;
  spec.id = "lingvo_top2";
  spec.summary = "lingvo GShard top-2 gating (Top2GatingOnLogits via ComputeGating), legacy and non-legacy";
  spec.source = "tensorflow/lingvo lingvo/core/gshard_layers.py: ComputeGating, Top2GatingOnLogits";
  spec.spec_page = "spec/variants/lingvo_top2.md";
  spec.run = run_lingvo_top2;
  spec.near_tie = [](const NearTieQuery& q) {
    return lingvo_top2_near_tie(q.reference, q.step, q.flat, q.candidate, q.tolerance_for);
  };
  auto add = [&spec](HparamSpec hparam) { spec.hparams.push_back(std::move(hparam)); };
  HparamSpec h;
  h = HparamSpec{};
  h.name = "expert_capacity_dim";
  h.kind = HparamKind::kInt;
  h.default_value = 4;
  h.nullable = false;
  h.min_value = 0;
  h.max_value = 1 << 24;
  h.meaning =
      "Capacity C per expert and group; raised by capacity_factor when smaller (no source default; moeref uses 4).";
  add(h);
  h = HparamSpec{};
  h.name = "capacity_factor";
  h.kind = HparamKind::kFloat;
  h.default_value = nullptr;
  h.nullable = true;
  h.min_value = 0.0;
  h.max_value = 1 << 24;
  h.meaning =
      "If > 0: auto = int(S * capacity_factor / E) (0 -> 4); when expert_capacity_dim < auto, C = auto rounded up to "
      "a multiple of 4.";
  add(h);
  h = HparamSpec{};
  h.name = "second_expert_policy";
  h.kind = HparamKind::kString;
  h.default_value = "all";
  h.nullable = false;
  h.choices = {"all", "sampling", "random"};
  h.meaning =
      "all: greedy second expert; sampling: Gumbel-max draw without the first expert; random: keep with p = gate_2 / "
      "threshold.";
  add(h);
  h = HparamSpec{};
  h.name = "second_expert_threshold";
  h.kind = HparamKind::kFloat;
  h.default_value = 0.0;
  h.nullable = false;
  h.min_value = 0.0;
  h.meaning = "Threshold t of the random policy: keep the second expert iff U < gate_2 / max(t, 1e-9).";
  add(h);
  h = HparamSpec{};
  h.name = "legacy_mtf_behavior";
  h.kind = HparamKind::kBool;
  h.default_value = true;
  h.nullable = false;
  h.meaning =
      "true: renormalize gates before capacity and policy (with 1e-9); false: after, without epsilon, and "
      "padding-aware aux loss.";
  add(h);
  h = HparamSpec{};
  h.name = "expert_padding_idx";
  h.kind = HparamKind::kIntList;
  h.default_value = nullptr;
  h.nullable = true;
  h.min_value = -(1 << 24);
  h.max_value = (1 << 24) - 1;
  h.meaning = "Experts (numpy indices into E) whose logits are replaced by -0.7 * float32 max before the softmax.";
  add(h);
  h = HparamSpec{};
  h.name = "local_dispatch";
  h.kind = HparamKind::kBool;
  h.default_value = true;
  h.nullable = false;
  h.meaning =
      "ComputeGating: false routes all G*S tokens as one group (C from G*S), then reshapes dispatch/combine back.";
  add(h);
  h = HparamSpec{};
  h.name = "activation";
  h.kind = HparamKind::kStringList;
  h.default_value = "relu";
  h.nullable = false;
  h.choices = ops::activation_names();
  h.meaning = "Expert activation of the foundation expert layer (lingvo's default moe_activation is RELU).";
  add(h);
  return spec;
}

}  // namespace moeref
