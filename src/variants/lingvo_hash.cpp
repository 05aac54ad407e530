// lingvo_hash: lingvo's hash gating, literal to the source.
//
// Source: tensorflow/lingvo, lingvo/core/gshard_layers.py at e0be5dc4ce9b,
//   HashGatingOnLogits (the gating function), as called by ComputeGating
//   (gating_func='hashing', importance=None) from the hash MoE builder in
//   lingvo/core/gshard_builder.py (expert_id = floormod(token ids, e_dim)) and
//   consumed by FeedForwardNetworksApplyGating (dispatch 'GSEC,GSM->EGCM',
//   experts, combine 'GSEC,GECM->GSM'). Spec: spec/variants/lingvo_hash.md.
//
// Dims: G groups, S group size, E experts, C expert capacity, M model dim,
//       H expert hidden dim, N expert output dim (= M).
//
// A token goes to the expert its supplied id names, in token order, while the
// expert has room. The combine weight is 1 and is NOT multiplied by
// mask_1_flat: a padded or over-capacity token has position 0 after masking, so
// it is still written into slot 0 of its expert (the "slot-0 leak", see the
// spec page). The source ignores the router logits that ComputeGating computes
// for this gating function, so moeref computes none.
// mask_dtype is modelled as the MoEBuilder passes it (None, i.e. the float32
// fprop dtype); with 0/1 paddings every mask, count and position is an exact
// integer, so the trace stores them as int32.

#include <cmath>
#include <string>
#include <vector>

#include "moeref/dims.hpp"
#include "moeref/error.hpp"
#include "moeref/inputs.hpp"
#include "moeref/json_number.hpp"
#include "moeref/ops/activations.hpp"
#include "moeref/ops/cumsum.hpp"
#include "moeref/ops/expert_layer.hpp"
#include "moeref/variant.hpp"

namespace moeref {

namespace {

// The largest [G, S, E, C] routing tensor moeref will build.
constexpr int64_t kMaxRoutingElements = int64_t{1} << 31;

struct Shape {
  int64_t G = 0, S = 0, E = 0, C = 0, M = 0, H = 0, N = 0;
};

Shape resolve_shape(const Config& config) {
  const nlohmann::json& hp = config.hparams;
  Shape shape;
  for (const char* letter : {"B", "L"}) {
    if (config.dims.count(letter)) {
      fail_input(std::string("dims.") + letter, "given",
                 "G and S only: lingvo_hash routes the groups it is given (the builder's reshape to num_groups is "
                 "not modelled)");
    }
  }
  require_dim(config, "G", "the number of groups, an integer >= 1");
  require_dim(config, "S", "the group size, an integer >= 1");
  require_dim(config, "E", "the number of experts, an integer >= 1");
  shape.G = config.dims.at("G");
  shape.S = config.dims.at("S");
  shape.E = config.dims.at("E");
  if (config.scope == "layer") {
    require_dim(config, "M", "the model dim, needed for the experts");
    require_dim(config, "H", "the expert hidden dim, needed with scope \"layer\"");
    shape.M = config.dims.at("M");
    shape.H = config.dims.at("H");
    shape.N = shape.M;
    check_derived_dim(config, "N", shape.N, "the experts' output dim is M (wo is [E, H, M])");
  } else if (config.dims.count("M")) {
    shape.M = config.dims.at("M");
  }
  if (hp["expert_capacity_dim"].is_null()) {
    fail_input("hparams.expert_capacity_dim", "null (not given)",
               "an integer >= 0: expert_capacity_dim is a required argument of HashGatingOnLogits (no default, no "
               "capacity_factor; the builder passes its c_dim)");
  }
  shape.C = hp["expert_capacity_dim"].get<int64_t>();
  check_derived_dim(config, "C", shape.C, "C = expert_capacity_dim");
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

void run_lingvo_hash(const Config& config, Trace& trace) {
  const nlohmann::json& hp = config.hparams;
  const Shape shape = resolve_shape(config);
  const int64_t G = shape.G, S = shape.S, E = shape.E, C = shape.C, M = shape.M;
  trace.config = resolved_config(config, shape);
  trace.capacity = {{"expert_capacity", C},
                    {"rule", "given: hparams.expert_capacity_dim (HashGatingOnLogits has no capacity rule)"},
                    {"group_size", S},
                    {"num_groups", G}};

  // ---- Inputs ------------------------------------------------------------------
  InputSet inputs(config, trace);
  const Tensor* x = nullptr;
  if (config.scope == "layer" || inputs.supplied("x")) {
    x = &inputs.float_input("x", {"G", "S", "M"}, {G, S, M}, -1.0, 1.0);
  }
  // expert_id: the builder's floormod(ids, e_dim) lies in [0, E); a generated one does too.
  const Tensor& expert_id = inputs.int_input("expert_id", {"G", "S"}, {G, S}, 0, static_cast<int32_t>(E));
  const Tensor* paddings = inputs.optional_input("paddings", {"G", "S"}, {G, S});
  if (paddings != nullptr) {
    for (size_t i = 0; i < paddings->f32.size(); ++i) {
      if (paddings->f32[i] != 0.0f && paddings->f32[i] != 1.0f) {
        std::string value;
        append_float32(value, paddings->f32[i]);
        fail_input("inputs.paddings" + paddings->named_index(static_cast<int64_t>(i)), value,
                   "0 or 1 (the builder's paddings are 1[segment_id == 0]; fractional paddings would make float "
                   "positions, which moeref does not model)");
      }
    }
  }
  const Tensor* importance = inputs.optional_input("importance", {"G", "S"}, {G, S});

  Tensor index_1 = Tensor::int32({"G", "S"}, {G, S});                           // [G, S]
  Tensor mask_1 = Tensor::int32({"G", "S", "E"}, {G, S, E});                    // [G, S, E]
  Tensor mask_1_masked = Tensor::int32({"G", "S", "E"}, {G, S, E});             // [G, S, E]
  Tensor position_in_expert_1 = Tensor::int32({"G", "S", "E"}, {G, S, E});      // [G, S, E]
  Tensor mask_1_capacity = Tensor::int32({"G", "S", "E"}, {G, S, E});           // [G, S, E]
  Tensor position_in_expert_1_flat = Tensor::int32({"G", "S"}, {G, S});         // [G, S]
  Tensor mask_1_count = Tensor::int32({"G", "E"}, {G, E});                      // [G, E]
  Tensor mask_1_flat = Tensor::int32({"G", "S"}, {G, S});                       // [G, S]
  Tensor b = Tensor::int32({"G", "S", "C"}, {G, S, C});                         // [G, S, C]
  Tensor combine_tensor = Tensor::float32({"G", "S", "E", "C"}, {G, S, E, C});  // [G, S, E, C]
  Tensor dispatch_tensor = Tensor::int32({"G", "S", "E", "C"}, {G, S, E, C});   // [G, S, E, C]
  const bool masked = importance != nullptr || paddings != nullptr;

#pragma omp parallel for schedule(static)
  for (int64_t g = 0; g < G; ++g) {
    const int64_t gs = g * S, gse = g * S * E, ge = g * E;

    // index_1 = expert_id; mask_1 = tf.one_hot(index_1, E): an id outside [0, E) gives a zero row.
    for (int64_t s = 0; s < S; ++s) {
      const int32_t id = expert_id.i32[static_cast<size_t>(gs + s)];
      index_1.i32[gs + s] = id;
      for (int64_t e = 0; e < E; ++e) mask_1.i32[gse + s * E + e] = id == e ? 1 : 0;
    }

    // With importance: mask_1 *= (importance == 1.0). Else, with paddings: mask_1 *= (1.0 - paddings).
    for (int64_t s = 0; s < S; ++s) {
      int32_t keep = 1;
      if (importance != nullptr) {
        keep = importance->f32[gs + s] == 1.0f ? 1 : 0;
      } else if (paddings != nullptr) {
        keep = static_cast<int32_t>(1.0f - paddings->f32[gs + s]);  // 0/1 paddings: exact
      }
      for (int64_t e = 0; e < E; ++e) mask_1_masked.i32[gse + s * E + e] = mask_1.i32[gse + s * E + e] * keep;
    }
    const int32_t* mask_1_now = (masked ? mask_1_masked : mask_1).i32.data() + gse;

    // position_in_expert_1 = tf.cumsum(mask_1, exclusive=True, axis=-2): not multiplied by mask_1.
    ops::exclusive_cumsum_over_s(mask_1_now, S, E, position_in_expert_1.i32.data() + gse);
    // mask_1 *= cast(less(position_in_expert_1, capacity))
    for (int64_t k = 0; k < S * E; ++k) {
      mask_1_capacity.i32[gse + k] = mask_1_now[k] * (position_in_expert_1.i32[gse + k] < C ? 1 : 0);
    }
    for (int64_t s = 0; s < S; ++s) {
      int32_t position = 0, flat = 0;
      for (int64_t e = 0; e < E; ++e) {
        position += position_in_expert_1.i32[gse + s * E + e] * mask_1_capacity.i32[gse + s * E + e];
        flat += mask_1_capacity.i32[gse + s * E + e];
      }
      // position_in_expert_1 = einsum('GSE,GSE->GS', position_in_expert_1, mask_1): 0 when dropped or padded.
      position_in_expert_1_flat.i32[gs + s] = position;
      mask_1_flat.i32[gs + s] = flat;  // einsum('GSE->GS', mask_1)
    }
    for (int64_t e = 0; e < E; ++e) {
      int32_t count = 0;
      for (int64_t s = 0; s < S; ++s) count += mask_1_capacity.i32[gse + s * E + e];
      mask_1_count.i32[ge + e] = count;  // einsum('GSE->GE', mask_1)
    }

    // b = one_hot(cast(position_in_expert_1, int32), C); a = one_hot(index_1, E) (NOT masked);
    // combine_tensor = einsum('GSE,GSC->GSEC', a, b): weight 1, not multiplied by mask_1_flat.
    for (int64_t s = 0; s < S; ++s) {
      const int32_t position = position_in_expert_1_flat.i32[gs + s];
      for (int64_t c = 0; c < C; ++c) b.i32[(gs + s) * C + c] = position == c ? 1 : 0;
      for (int64_t e = 0; e < E; ++e) {
        const float a = index_1.i32[gs + s] == e ? 1.0f : 0.0f;
        for (int64_t c = 0; c < C; ++c) {
          const int64_t slot = ((gs + s) * E + e) * C + c;
          combine_tensor.f32[slot] = a * static_cast<float>(b.i32[(gs + s) * C + c]);
          // dispatch_tensor = cast(cast(combine_tensor, bool))
          dispatch_tensor.i32[slot] = combine_tensor.f32[slot] != 0.0f ? 1 : 0;
        }
      }
    }
  }

  // ---- Record the steps in source order -----------------------------------------
  trace.add_step("index_1", std::move(index_1));
  trace.add_step("mask_1", std::move(mask_1));
  if (importance != nullptr) {
    trace.add_step("mask_1_important", std::move(mask_1_masked));
  } else if (paddings != nullptr) {
    trace.add_step("mask_1_nonpadding", std::move(mask_1_masked));
  }
  trace.add_step("position_in_expert_1", std::move(position_in_expert_1));
  trace.add_step("mask_1_capacity", std::move(mask_1_capacity));
  trace.add_step("position_in_expert_1_flat", std::move(position_in_expert_1_flat));
  trace.add_step("mask_1_count", std::move(mask_1_count));
  trace.add_step("mask_1_flat", std::move(mask_1_flat));
  trace.add_step("b", std::move(b));
  trace.add_step("combine_tensor", std::move(combine_tensor));
  trace.add_step("dispatch_tensor", std::move(dispatch_tensor));
  const Tensor& combine_ref = *trace.find_step("combine_tensor");
  const Tensor& dispatch_ref = *trace.find_step("dispatch_tensor");

  // ---- FeedForwardNetworksApplyGating: experts and combine ------------------------
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

  // return 0.0, combine_tensor, dispatch_tensor
  trace.add_loss("aux_loss", 0.0f);
}

}  // namespace moeref

namespace moeref {

VariantSpec lingvo_hash_variant() {
  VariantSpec spec;
  spec.id = "lingvo_hash";
  spec.summary = "lingvo hash gating (a supplied expert id per token; padded and dropped tokens leak into slot 0)";
  spec.source = "tensorflow/lingvo lingvo/core/gshard_layers.py: HashGatingOnLogits via ComputeGating";
  spec.spec_page = "spec/variants/lingvo_hash.md";
  spec.run = run_lingvo_hash;
  auto add = [&spec](HparamSpec hparam) { spec.hparams.push_back(std::move(hparam)); };
  HparamSpec h;
  h = HparamSpec{};
  h.name = "expert_capacity_dim";
  h.kind = HparamKind::kInt;
  h.default_value = nullptr;
  h.nullable = false;
  h.min_value = 0;
  h.max_value = 1 << 24;
  h.meaning = "Required: C, slots per expert per group (no capacity factor in hash gating).";
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
