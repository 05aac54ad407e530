// mtf_top2: the top-2 MoE layer of Mesh TensorFlow, literal to the source.
//
// Source: tensorflow/mesh, mesh_tensorflow/transformer/moe.py at da90793,
//   transformer_moe_layer_v1 (grouping, capacity, experts, combine) and
//   _top_2_gating (the gating function). Spec: spec/variants/mtf_top2.md.
//
// Dims: B batch, L length, G groups, S group size, E experts, C expert capacity,
//       M model dim, H expert hidden dim, N expert output dim.
//
// Each step below is one statement (or a few) of _top_2_gating, in the source's
// order, under the source's variable name. Where the source reassigns a
// variable (gate_1 *= ..., mask_1 *= ...), the trace keeps every version under
// a suffix naming the stage: mask_1 -> mask_1_important -> mask_1_capacity.
// Masks, positions and counts are float32 0/1 and integer values in mtf; they
// are exact integers, so moeref stores them as int32.

#include "moeref/variants/mtf_top2.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <optional>
#include <string>
#include <vector>

#include "moeref/dims.hpp"
#include "moeref/error.hpp"
#include "moeref/inputs.hpp"
#include "moeref/ops/activations.hpp"
#include "moeref/ops/capacity.hpp"
#include "moeref/ops/cumsum.hpp"
#include "moeref/ops/expert_layer.hpp"
#include "moeref/ops/grouping.hpp"
#include "moeref/ops/router.hpp"
#include "moeref/ops/routing_form.hpp"
#include "moeref/ops/softmax.hpp"
#include "moeref/ops/top1.hpp"

namespace moeref {

namespace {

// The largest [G, S, E, C] routing tensor moeref will build.
constexpr int64_t kMaxRoutingElements = int64_t{1} << 31;

struct Shape {
  bool batch_length_layout = false;  // x given as [B, L, M] rather than [G, S, M]
  int64_t B = 0, L = 0, G = 0, S = 0, E = 0, C = 0, M = 0, H = 0, N = 0;
  double capacity_factor = 0.0;
  bool capacity_from_rule = true;
};

Shape resolve_shape(const Config& config, bool logits_supplied) {
  const nlohmann::json& hp = config.hparams;
  Shape shape;
  require_dim(config, "E", "the number of experts, an integer >= 1");
  shape.E = config.dims.at("E");
  const bool has_bl = config.dims.count("B") && config.dims.count("L");
  const bool has_gs = config.dims.count("G") && config.dims.count("S");
  if (!has_bl && !has_gs) {
    fail_input("dims", "neither B and L nor G and S", "B and L (x is [B, L, M], grouped by group_size) or G and S");
  }
  if (config.dims.count("B") != config.dims.count("L")) {
    fail_input("dims", "only one of B and L", "both B and L, or neither");
  }
  shape.batch_length_layout = has_bl;
  if (has_bl) {
    shape.B = config.dims.at("B");
    shape.L = config.dims.at("L");
    // transformer_moe_layer_v1: n = product of batch and length dims; _split_into_groups.
    const ops::Grouping grouping = ops::mtf_split_into_groups(shape.B * shape.L, hp["group_size"].get<int64_t>(),
                                                              hp["mesh_dim_size"].get<int64_t>());
    shape.G = grouping.num_groups;
    shape.S = grouping.group_size;
    check_derived_dim(config, "G", shape.G, "_split_into_groups(B*L, group_size, mesh_dim_size)");
    check_derived_dim(config, "S", shape.S, "_split_into_groups(B*L, group_size, mesh_dim_size)");
  } else {
    shape.G = config.dims.at("G");
    shape.S = config.dims.at("S");
  }

  const bool needs_router = !logits_supplied;
  if (config.scope == "layer" || needs_router) {
    require_dim(config, "M", "the model dim, needed for the router or the experts");
    shape.M = config.dims.at("M");
  } else {
    shape.M = dim_or(config, "M", 0);
  }
  if (config.scope == "layer") {
    require_dim(config, "H", "the expert hidden dim (mtf hidden_size), needed with scope \"layer\"");
    shape.H = config.dims.at("H");
    shape.N = hp["output_dim"].is_null() ? shape.M : hp["output_dim"].get<int64_t>();
    check_derived_dim(config, "N", shape.N, "output_dim, or M when output_dim is null");
  }

  // transformer_moe_layer_v1: capacity factor by train/eval, then the capacity rule.
  shape.capacity_factor = hp[config.train ? "capacity_factor_train" : "capacity_factor_eval"].get<double>();
  if (hp["expert_capacity"].is_null()) {
    shape.C =
        ops::mtf_expert_capacity(shape.S, shape.capacity_factor, shape.E, hp["min_expert_capacity"].get<int64_t>());
    check_derived_dim(config, "C", shape.C, "max(min(S, int(S * capacity_factor / E)), min_expert_capacity)");
  } else {
    shape.capacity_from_rule = false;
    shape.C = hp["expert_capacity"].get<int64_t>();
    check_derived_dim(config, "C", shape.C, "the expert_capacity hparam");
  }
  const double routing_elements = static_cast<double>(shape.G) * static_cast<double>(shape.S) *
                                  static_cast<double>(shape.E) * static_cast<double>(std::max<int64_t>(shape.C, 1));
  if (routing_elements > static_cast<double>(kMaxRoutingElements)) {
    fail_input("dims", "G*S*E*C = " + std::to_string(static_cast<long long>(routing_elements)),
               "at most 2^31 elements in combine_tensor");
  }
  return shape;
}

const Tensor* forced_decision(const Config& config, const char* step, int64_t G, int64_t S) {
  auto it = config.decision_overrides.find(step);
  if (it == config.decision_overrides.end()) return nullptr;
  if (it->second.shape != std::vector<int64_t>{G, S} || it->second.dtype != DType::kInt32) {
    fail_input(std::string("decision override ") + step, it->second.shape_string(), "an int32 [G, S] tensor");
  }
  return &it->second;
}

// Where the checker forced a top-1 decision, take the forced expert and its gate.
void force_decisions(const Tensor* forced, int64_t gs, int64_t S, int64_t E, const float* scores, int32_t* index,
                     float* gate) {
  if (forced == nullptr) return;
  for (int64_t s = 0; s < S; ++s) {
    const int32_t choice = forced->i32[static_cast<size_t>(gs + s)];
    if (choice < 0 || choice >= E) continue;
    index[s] = choice;
    gate[s] = scores[s * E + choice];
  }
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

}  // namespace

void run_mtf_top2(const Config& config, Trace& trace) {
  const nlohmann::json& hp = config.hparams;
  const bool logits_supplied = config.inputs.count("logits") > 0;
  const Shape shape = resolve_shape(config, logits_supplied);
  const int64_t G = shape.G, S = shape.S, E = shape.E, C = shape.C, M = shape.M;
  trace.config = resolved_config(config, shape);
  trace.capacity = {
      {"expert_capacity", C},
      {"rule", shape.capacity_from_rule ? "mtf: max(min(S, int(S * capacity_factor / E)), min_expert_capacity)"
                                        : "given: hparams.expert_capacity"},
      {"capacity_factor", shape.capacity_factor},
      {"group_size", S},
      {"num_groups", G}};

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
    // Uniform with variance 2/M: logits of order one, so routing is neither flat nor one-hot.
    const double bound = std::sqrt(6.0 / static_cast<double>(M));
    router_weights = &inputs.float_input("router_weights", {"M", "E"}, {M, E}, -bound, bound);
  }
  const Tensor* importance_given = inputs.optional_input("importance", token_dims, token_shape);

  // ---- transformer_moe_layer_v1: regroup [B, L, ...] to [G, S, ...] --------------
  // mtf.reshape keeps row-major order, so regrouping only relabels the dims.
  if (x != nullptr) {
    Tensor grouped = *x;
    grouped.dims = {"G", "S", "M"};
    grouped.shape = {G, S, M};
    trace.add_step("inputs", std::move(grouped));
  }
  const Tensor* grouped_inputs = x != nullptr ? &trace.steps.back().tensor : nullptr;
  const float* importance = nullptr;
  if (importance_given != nullptr) {
    Tensor grouped = *importance_given;
    grouped.dims = {"G", "S"};
    grouped.shape = {G, S};
    trace.add_step("importance", std::move(grouped));
    importance = trace.steps.back().tensor.f32.data();
  }

  // ---- _top_2_gating --------------------------------------------------------------
  // raw_gates = mtf.layers.dense(gate_inputs, experts_dim, use_bias=False)
  Tensor logits = Tensor::float32({"G", "S", "E"}, {G, S, E});  // [G, S, E]
  if (logits_given != nullptr) {
    logits.f32 = logits_given->f32;
  } else {
#pragma omp parallel for schedule(static)
    for (int64_t g = 0; g < G; ++g) {
      ops::router_logits(grouped_inputs->f32.data() + g * S * M, router_weights->f32.data(), S, M, E,
                         logits.f32.data() + g * S * E);
    }
  }

  const bool second_place_loss = hp["use_second_place_loss"].get<bool>();
  const std::string policy = hp[config.train ? "second_policy_train" : "second_policy_eval"].get<std::string>();
  const double threshold = hp[config.train ? "second_threshold_train" : "second_threshold_eval"].get<double>();
  const Tensor* second_policy_uniform =
      policy == "random" ? &inputs.uniform_draw("second_policy_uniform", {"G", "S"}, {G, S}) : nullptr;

  Tensor raw_gates = Tensor::float32({"G", "S", "E"}, {G, S, E});                  // [G, S, E]
  Tensor gate_1 = Tensor::float32({"G", "S"}, {G, S});                             // [G, S]
  Tensor index_1 = Tensor::int32({"G", "S"}, {G, S});                              // [G, S]
  Tensor mask_1 = Tensor::int32({"G", "S", "E"}, {G, S, E});                       // [G, S, E]
  Tensor mask_1_important = Tensor::int32({"G", "S", "E"}, {G, S, E});             // [G, S, E]
  Tensor gate_1_important = Tensor::float32({"G", "S"}, {G, S});                   // [G, S]
  Tensor density_1_proxy_per_token = Tensor::float32({"G", "S", "E"}, {G, S, E});  // [G, S, E]
  Tensor gates_without_top_1 = Tensor::float32({"G", "S", "E"}, {G, S, E});        // [G, S, E]
  Tensor gate_2 = Tensor::float32({"G", "S"}, {G, S});                             // [G, S]
  Tensor index_2 = Tensor::int32({"G", "S"}, {G, S});                              // [G, S]
  Tensor mask_2 = Tensor::int32({"G", "S", "E"}, {G, S, E});                       // [G, S, E]
  Tensor mask_2_important = Tensor::int32({"G", "S", "E"}, {G, S, E});             // [G, S, E]
  Tensor denom = Tensor::float32({"G", "S"}, {G, S});                              // [G, S]
  Tensor gate_1_normalized = Tensor::float32({"G", "S"}, {G, S});                  // [G, S]
  Tensor gate_2_normalized = Tensor::float32({"G", "S"}, {G, S});                  // [G, S]
  Tensor density_1 = Tensor::float32({"G", "E"}, {G, E});                          // [G, E]
  Tensor density_1_proxy = Tensor::float32({"G", "E"}, {G, E});                    // [G, E]
  Tensor density_2 = Tensor::float32({"G", "E"}, {G, E});                          // [G, E]
  Tensor normalized = Tensor::float32({"G", "S", "E"}, {G, S, E});                 // [G, S, E]
  Tensor density_2_proxy = Tensor::float32({"G", "E"}, {G, E});                    // [G, E]
  Tensor second_policy_keep = Tensor::int32({"G", "S"}, {G, S});                   // [G, S]
  Tensor mask_2_policy = Tensor::int32({"G", "S", "E"}, {G, S, E});                // [G, S, E]
  Tensor position_in_expert_1 = Tensor::int32({"G", "S", "E"}, {G, S, E});         // [G, S, E]
  Tensor mask_1_capacity = Tensor::int32({"G", "S", "E"}, {G, S, E});              // [G, S, E]
  Tensor mask_1_count = Tensor::int32({"G", "E"}, {G, E});                         // [G, E]
  Tensor mask_1_flat = Tensor::int32({"G", "S"}, {G, S});                          // [G, S]
  Tensor position_in_expert_1_flat = Tensor::int32({"G", "S"}, {G, S});            // [G, S]
  Tensor gate_1_capacity = Tensor::float32({"G", "S"}, {G, S});                    // [G, S]
  Tensor position_in_expert_2 = Tensor::int32({"G", "S", "E"}, {G, S, E});         // [G, S, E]
  Tensor mask_2_capacity = Tensor::int32({"G", "S", "E"}, {G, S, E});              // [G, S, E]
  Tensor mask_2_flat = Tensor::int32({"G", "S"}, {G, S});                          // [G, S]
  Tensor gate_2_capacity = Tensor::float32({"G", "S"}, {G, S});                    // [G, S]
  Tensor position_in_expert_2_flat = Tensor::int32({"G", "S"}, {G, S});            // [G, S]
  Tensor combine_tensor = Tensor::float32({"G", "S", "E", "C"}, {G, S, E, C});     // [G, S, E, C]
  Tensor dispatch_tensor = Tensor::int32({"G", "S", "E", "C"}, {G, S, E, C});      // [G, S, E, C]

  // Python scalars become float32 constants when they meet a float32 tensor.
  const float inverse_group_size = static_cast<float>(1.0 / static_cast<double>(S));  // reduce_mean over S
  const float expert_capacity_f = static_cast<float>(C);
  const float threshold_f = static_cast<float>(threshold);
  const float inverse_threshold = static_cast<float>(1.0 / std::max(threshold, 1e-9));
  const float kDenomEpsilon = 1e-9f;

  // Decisions the checker's near-tie analysis forces (never set by a config).
  const Tensor* forced_index_1 = forced_decision(config, "index_1", G, S);
  const Tensor* forced_index_2 = forced_decision(config, "index_2", G, S);
  const Tensor* forced_keep = forced_decision(config, "second_policy_keep", G, S);

#pragma omp parallel for schedule(static)
  for (int64_t g = 0; g < G; ++g) {
    const int64_t gs = g * S, gse = g * S * E, ge = g * E;

    // raw_gates = mtf.softmax(raw_gates, experts_dim)
    ops::mtf_softmax(logits.f32.data() + gse, raw_gates.f32.data() + gse, S, E);

    // gate_1, index_1 = mtf.top_1(raw_gates, experts_dim); mask_1 = one_hot(index_1)
    ops::top_1_lowest_index(raw_gates.f32.data() + gse, S, E, gate_1.f32.data() + gs, index_1.i32.data() + gs);
    force_decisions(forced_index_1, gs, S, E, raw_gates.f32.data() + gse, index_1.i32.data() + gs,
                    gate_1.f32.data() + gs);
    for (int64_t s = 0; s < S; ++s) {
      for (int64_t e = 0; e < E; ++e) mask_1.i32[gse + s * E + e] = index_1.i32[gs + s] == e ? 1 : 0;
    }

    // With importance: mask_1, gate_1 and density_1_proxy keep only importance == 1.0.
    const int32_t* mask_1_now = mask_1.i32.data() + gse;
    const float* gate_1_now = gate_1.f32.data() + gs;
    const float* proxy_now = raw_gates.f32.data() + gse;
    if (importance != nullptr) {
      for (int64_t s = 0; s < S; ++s) {
        const bool is_one = importance[gs + s] == 1.0f;
        gate_1_important.f32[gs + s] = gate_1.f32[gs + s] * (is_one ? 1.0f : 0.0f);
        for (int64_t e = 0; e < E; ++e) {
          mask_1_important.i32[gse + s * E + e] = is_one ? mask_1.i32[gse + s * E + e] : 0;
          density_1_proxy_per_token.f32[gse + s * E + e] = raw_gates.f32[gse + s * E + e] * (is_one ? 1.0f : 0.0f);
        }
      }
      mask_1_now = mask_1_important.i32.data() + gse;
      gate_1_now = gate_1_important.f32.data() + gs;
      proxy_now = density_1_proxy_per_token.f32.data() + gse;
    }

    // gates_without_top_1 = raw_gates * (1.0 - mask_1)
    for (int64_t k = 0; k < S * E; ++k) {
      gates_without_top_1.f32[gse + k] = raw_gates.f32[gse + k] * (1.0f - static_cast<float>(mask_1_now[k]));
    }
    // gate_2, index_2 = mtf.top_1(gates_without_top_1); mask_2 = one_hot(index_2)
    ops::top_1_lowest_index(gates_without_top_1.f32.data() + gse, S, E, gate_2.f32.data() + gs,
                            index_2.i32.data() + gs);
    force_decisions(forced_index_2, gs, S, E, gates_without_top_1.f32.data() + gse, index_2.i32.data() + gs,
                    gate_2.f32.data() + gs);
    for (int64_t s = 0; s < S; ++s) {
      for (int64_t e = 0; e < E; ++e) mask_2.i32[gse + s * E + e] = index_2.i32[gs + s] == e ? 1 : 0;
    }
    const int32_t* mask_2_now = mask_2.i32.data() + gse;
    if (importance != nullptr) {
      // mask_2 *= to_float(greater(importance, 0.0))
      for (int64_t s = 0; s < S; ++s) {
        const bool positive = importance[gs + s] > 0.0f;
        for (int64_t e = 0; e < E; ++e)
          mask_2_important.i32[gse + s * E + e] = positive ? mask_2.i32[gse + s * E + e] : 0;
      }
      mask_2_now = mask_2_important.i32.data() + gse;
    }

    // denom = gate_1 + gate_2 + 1e-9; gate_i /= denom is gate_i * reciprocal(denom).
    for (int64_t s = 0; s < S; ++s) {
      const float d = (gate_1_now[s] + gate_2.f32[gs + s]) + kDenomEpsilon;
      const float reciprocal = 1.0f / d;
      denom.f32[gs + s] = d;
      gate_1_normalized.f32[gs + s] = gate_1_now[s] * reciprocal;
      gate_2_normalized.f32[gs + s] = gate_2.f32[gs + s] * reciprocal;
    }

    // density_1 = reduce_mean(mask_1, group); density_1_proxy = reduce_mean(density_1_proxy, group).
    // reduce_mean is reduce_sum * f32(1/S); sums of 0/1 are exact, sums of gates accumulate in double.
    for (int64_t e = 0; e < E; ++e) {
      int64_t count = 0;
      double proxy_sum = 0.0;
      for (int64_t s = 0; s < S; ++s) {
        count += mask_1_now[s * E + e];
        proxy_sum += static_cast<double>(proxy_now[s * E + e]);
      }
      density_1.f32[ge + e] = static_cast<float>(count) * inverse_group_size;
      density_1_proxy.f32[ge + e] = static_cast<float>(proxy_sum) * inverse_group_size;
    }

    if (second_place_loss) {
      // density_2 = reduce_mean(mask_2); normalized = gates_without_top_1 / (reduce_sum(., experts) + 1e-9)
      for (int64_t s = 0; s < S; ++s) {
        double row_sum = 0.0;
        for (int64_t e = 0; e < E; ++e) row_sum += static_cast<double>(gates_without_top_1.f32[gse + s * E + e]);
        const float reciprocal = 1.0f / (static_cast<float>(row_sum) + kDenomEpsilon);
        for (int64_t e = 0; e < E; ++e) {
          normalized.f32[gse + s * E + e] = gates_without_top_1.f32[gse + s * E + e] * reciprocal;
        }
      }
      for (int64_t e = 0; e < E; ++e) {
        int64_t count = 0;
        double proxy_sum = 0.0;
        for (int64_t s = 0; s < S; ++s) {
          count += mask_2_now[s * E + e];
          proxy_sum += static_cast<double>(normalized.f32[gse + s * E + e]);
        }
        density_2.f32[ge + e] = static_cast<float>(count) * inverse_group_size;
        density_2_proxy.f32[ge + e] = static_cast<float>(proxy_sum) * inverse_group_size;
      }
    }

    // Second-expert policy, applied to mask_2 only.
    for (int64_t s = 0; s < S; ++s) {
      bool keep = true;
      if (policy == "none") {
        keep = false;
      } else if (policy == "threshold") {
        keep = gate_2_normalized.f32[gs + s] > threshold_f;  // greater(gate_2, threshold)
      } else if (policy == "random") {
        // less(random_uniform, gate_2 / max(threshold, 1e-9)): a scalar divide is x * f32(1/t).
        keep = second_policy_uniform->f32[gs + s] < gate_2_normalized.f32[gs + s] * inverse_threshold;
      }
      if (forced_keep != nullptr && forced_keep->i32[static_cast<size_t>(gs + s)] >= 0) {
        keep = forced_keep->i32[static_cast<size_t>(gs + s)] != 0;
      }
      second_policy_keep.i32[gs + s] = keep ? 1 : 0;
      for (int64_t e = 0; e < E; ++e) mask_2_policy.i32[gse + s * E + e] = keep ? mask_2_now[s * E + e] : 0;
    }

    // position_in_expert_1 = cumsum(mask_1, group, exclusive=True) * mask_1
    std::vector<int32_t> cumsum(static_cast<size_t>(S * E));
    ops::exclusive_cumsum_over_s(mask_1_now, S, E, cumsum.data());
    for (int64_t k = 0; k < S * E; ++k) {
      position_in_expert_1.i32[gse + k] = cumsum[static_cast<size_t>(k)] * mask_1_now[k];
      // mask_1 *= to_float(less(position_in_expert_1, expert_capacity_f))
      mask_1_capacity.i32[gse + k] =
          static_cast<float>(position_in_expert_1.i32[gse + k]) < expert_capacity_f ? mask_1_now[k] : 0;
    }
    for (int64_t s = 0; s < S; ++s) {
      int32_t flat = 0, position = 0;
      for (int64_t e = 0; e < E; ++e) {
        flat += mask_1_capacity.i32[gse + s * E + e];
        position += position_in_expert_1.i32[gse + s * E + e];
      }
      mask_1_flat.i32[gs + s] = flat;                    // reduce_sum(mask_1, experts)
      position_in_expert_1_flat.i32[gs + s] = position;  // reduce_sum(position_in_expert_1, experts)
      gate_1_capacity.f32[gs + s] = gate_1_normalized.f32[gs + s] * static_cast<float>(flat);  // gate_1 *= mask_1_flat
    }
    for (int64_t e = 0; e < E; ++e) {
      int32_t count = 0;
      for (int64_t s = 0; s < S; ++s) count += mask_1_capacity.i32[gse + s * E + e];
      mask_1_count.i32[ge + e] = count;  // reduce_sum(mask_1, group)
    }

    // position_in_expert_2 = (cumsum(mask_2, exclusive) + mask_1_count) * mask_2:
    // second choices queue behind every kept first choice of their expert.
    ops::exclusive_cumsum_over_s(mask_2_policy.i32.data() + gse, S, E, cumsum.data());
    for (int64_t s = 0; s < S; ++s) {
      for (int64_t e = 0; e < E; ++e) {
        const int64_t k = s * E + e;
        position_in_expert_2.i32[gse + k] =
            (cumsum[static_cast<size_t>(k)] + mask_1_count.i32[ge + e]) * mask_2_policy.i32[gse + k];
        mask_2_capacity.i32[gse + k] =
            static_cast<float>(position_in_expert_2.i32[gse + k]) < expert_capacity_f ? mask_2_policy.i32[gse + k] : 0;
      }
    }
    for (int64_t s = 0; s < S; ++s) {
      int32_t flat = 0, position = 0;
      for (int64_t e = 0; e < E; ++e) {
        flat += mask_2_capacity.i32[gse + s * E + e];
        position += position_in_expert_2.i32[gse + s * E + e];
      }
      mask_2_flat.i32[gs + s] = flat;
      gate_2_capacity.f32[gs + s] = gate_2_normalized.f32[gs + s] * static_cast<float>(flat);
      position_in_expert_2_flat.i32[gs + s] = position;
    }

    // combine_tensor = gate_1 * mask_1_flat * one_hot(index_1, E) * one_hot(int(pos_1), C)
    //                + gate_2 * mask_2_flat * one_hot(index_2, E) * one_hot(int(pos_2), C).
    // one_hot of a position >= C is an all-zero row: that is how an over-capacity token vanishes.
    for (int64_t s = 0; s < S; ++s) {
      const float weight_1 = gate_1_capacity.f32[gs + s] * static_cast<float>(mask_1_flat.i32[gs + s]);
      const float weight_2 = gate_2_capacity.f32[gs + s] * static_cast<float>(mask_2_flat.i32[gs + s]);
      for (int64_t e = 0; e < E; ++e) {
        for (int64_t c = 0; c < C; ++c) {
          const float term_1 = weight_1 * (index_1.i32[gs + s] == e ? 1.0f : 0.0f) *
                               (position_in_expert_1_flat.i32[gs + s] == c ? 1.0f : 0.0f);
          const float term_2 = weight_2 * (index_2.i32[gs + s] == e ? 1.0f : 0.0f) *
                               (position_in_expert_2_flat.i32[gs + s] == c ? 1.0f : 0.0f);
          const int64_t slot = ((gs + s) * E + e) * C + c;
          combine_tensor.f32[slot] = term_1 + term_2;
          // dispatch_tensor = cast(cast(combine_tensor, bool)): nonzero (or NaN) means dispatched.
          dispatch_tensor.i32[slot] = combine_tensor.f32[slot] != 0.0f ? 1 : 0;
        }
      }
    }
  }

  // loss = reduce_mean(density_1_proxy * density_1) * E^2: a mean over G and E, in
  // the source's float32 ops (sum, then * f32(1/(G*E)), then * f32(E*E)).
  auto balance_loss = [&](const Tensor& proxy, const Tensor& density) {
    double sum = 0.0;
    for (int64_t k = 0; k < G * E; ++k) sum += static_cast<double>(proxy.f32[k] * density.f32[k]);
    const float mean = static_cast<float>(sum) * static_cast<float>(1.0 / static_cast<double>(G * E));
    return mean * static_cast<float>(E * E);
  };
  const float loss_1 = balance_loss(density_1_proxy, density_1);
  float gating_loss = loss_1;
  float loss_2 = 0.0f;
  if (second_place_loss) {
    loss_2 = balance_loss(density_2_proxy, density_2);
    gating_loss = loss_1 + loss_2 * 0.5f;  // loss += loss_2 * 0.5
  }
  const bool divide_by_microbatches = !hp["num_microbatches"].is_null() && hp["num_microbatches"].get<int64_t>() > 1;
  if (divide_by_microbatches) {
    // loss /= num_microbatches: a Python scalar, so loss * f32(1/num_microbatches).
    gating_loss = gating_loss * static_cast<float>(1.0 / static_cast<double>(hp["num_microbatches"].get<int64_t>()));
  }

  // ---- Record the gating steps in source order ------------------------------------
  trace.add_step("logits", std::move(logits));
  trace.add_step("raw_gates", std::move(raw_gates));
  // top_1 returns (gate, index); the index is recorded first because it is the
  // decision and the gate follows from it: a wrong choice shows up as index_1.
  trace.add_step("index_1", std::move(index_1));
  trace.add_step("gate_1", std::move(gate_1));
  trace.add_step("mask_1", std::move(mask_1));
  if (importance != nullptr) {
    trace.add_step("mask_1_important", std::move(mask_1_important));
    trace.add_step("gate_1_important", std::move(gate_1_important));
    trace.add_step("density_1_proxy_per_token", std::move(density_1_proxy_per_token));
  }
  trace.add_step("gates_without_top_1", std::move(gates_without_top_1));
  trace.add_step("index_2", std::move(index_2));
  trace.add_step("gate_2", std::move(gate_2));
  trace.add_step("mask_2", std::move(mask_2));
  if (importance != nullptr) trace.add_step("mask_2_important", std::move(mask_2_important));
  trace.add_step("denom", std::move(denom));
  trace.add_step("gate_1_normalized", std::move(gate_1_normalized));
  trace.add_step("gate_2_normalized", std::move(gate_2_normalized));
  trace.add_step("density_1", std::move(density_1));
  trace.add_step("density_1_proxy", std::move(density_1_proxy));
  trace.add_step("loss_1", Tensor::scalar(loss_1));
  if (second_place_loss) {
    trace.add_step("density_2", std::move(density_2));
    trace.add_step("normalized", std::move(normalized));
    trace.add_step("density_2_proxy", std::move(density_2_proxy));
    trace.add_step("loss_2", Tensor::scalar(loss_2));
  }
  trace.add_step("gating_loss", Tensor::scalar(gating_loss));
  if (policy == "threshold" || policy == "random") trace.add_step("second_policy_keep", std::move(second_policy_keep));
  trace.add_step("mask_2_policy", std::move(mask_2_policy));
  trace.add_step("position_in_expert_1", std::move(position_in_expert_1));
  trace.add_step("mask_1_capacity", std::move(mask_1_capacity));
  trace.add_step("mask_1_count", std::move(mask_1_count));
  trace.add_step("mask_1_flat", std::move(mask_1_flat));
  trace.add_step("position_in_expert_1_flat", std::move(position_in_expert_1_flat));
  trace.add_step("gate_1_capacity", std::move(gate_1_capacity));
  trace.add_step("position_in_expert_2", std::move(position_in_expert_2));
  trace.add_step("mask_2_capacity", std::move(mask_2_capacity));
  trace.add_step("mask_2_flat", std::move(mask_2_flat));
  trace.add_step("gate_2_capacity", std::move(gate_2_capacity));
  trace.add_step("position_in_expert_2_flat", std::move(position_in_expert_2_flat));
  // The same routing in index form (per token and rank: expert, slot or -1, weight),
  // for backends that never build [G, S, E, C] tensors.
  // (The steps were moved into the trace above: read them from there.)
  auto ints = [&trace](const char* name) { return trace.find_step(name)->i32.data(); };
  auto floats = [&trace](const char* name) { return trace.find_step(name)->f32.data(); };
  const std::vector<ops::RankDecisions> ranks = {
      {ints("index_1"), ints("position_in_expert_1_flat"), ints("mask_1_flat"), floats("gate_1_capacity")},
      {ints("index_2"), ints("position_in_expert_2_flat"), ints("mask_2_flat"), floats("gate_2_capacity")}};
  ops::record_routing_index_form(G, S, ranks, trace);
  trace.add_step("combine_tensor", std::move(combine_tensor));
  trace.add_step("dispatch_tensor", std::move(dispatch_tensor));
  const Tensor& combine_ref = *trace.find_step("combine_tensor");
  const Tensor& dispatch_ref = *trace.find_step("dispatch_tensor");

  // ---- transformer_moe_layer_v1: experts and combine ------------------------------
  if (config.scope == "layer") {
    ops::ExpertLayerInputs layer;
    layer.inputs = grouped_inputs;
    layer.dispatch_tensor = &dispatch_ref;
    layer.combine_tensor = &combine_ref;
    layer.activations = ops::parse_activations(hp["activation"]);
    ops::add_mtf_expert_weights(layer, inputs, E, M, shape.H, shape.N);
    const double keep_prob = 1.0 - hp["dropout_rate"].get<double>();
    if (config.train && keep_prob != 1.0) {
      layer.keep_prob = keep_prob;
      layer.dropout_uniform = &inputs.uniform_draw("dropout_uniform", {"E", "G", "C", "H"}, {E, G, C, shape.H});
    }
    ops::mtf_expert_layer(layer, trace);
  }
  inputs.check_all_used();

  // The layer returns loss * moe_loss_coef (a Python scalar: f32(loss_coef)).
  trace.add_loss("gating_loss", gating_loss);
  trace.add_loss("loss", gating_loss * static_cast<float>(hp["loss_coef"].get<double>()));
}

}  // namespace moeref

namespace moeref {

namespace {

float value_at(const Trace& trace, const char* step, int64_t flat) {
  return trace.find_step(step)->f32[static_cast<size_t>(flat)];
}

std::string float_text(double value) {
  char buffer[40];
  std::snprintf(buffer, sizeof(buffer), "%.9g", value);
  return buffer;
}

// The decisions of _top_2_gating that a backend can legitimately make the other
// way when the deciding values are within float tolerance: the two top_1 choices
// and the second-expert policy's comparison.
std::optional<NearTie> mtf_top2_near_tie(const Trace& reference, const std::string& step, int64_t flat,
                                         int32_t candidate_value, const ToleranceFor& tolerance_for) {
  const int64_t E = reference.config["dims"]["E"].get<int64_t>();
  if (step == "index_1" || step == "index_2") {
    // top_1 over raw_gates (index_1) or over gates_without_top_1 (index_2).
    const char* scores = step == "index_1" ? "raw_gates" : "gates_without_top_1";
    const int32_t chosen = reference.find_step(step)->i32[static_cast<size_t>(flat)];
    if (candidate_value < 0 || candidate_value >= E) return std::nullopt;
    const float best = value_at(reference, scores, flat * E + chosen);
    const float other = value_at(reference, scores, flat * E + candidate_value);
    NearTie tie;
    tie.margin = static_cast<double>(best) - static_cast<double>(other);
    tie.tolerance = tolerance_for(scores).allowed(best);
    tie.detail = std::string(scores) + ": e=" + std::to_string(chosen) + " " + float_text(best) +
                 " vs e=" + std::to_string(candidate_value) + " " + float_text(other);
    return tie;
  }
  if (step == "second_policy_keep") {
    const nlohmann::json& hp = reference.config["hparams"];
    const bool train = reference.config["train"].get<bool>();
    const std::string policy = hp[train ? "second_policy_train" : "second_policy_eval"].get<std::string>();
    const double threshold = hp[train ? "second_threshold_train" : "second_threshold_eval"].get<double>();
    const float gate_2 = value_at(reference, "gate_2_normalized", flat);
    const double gate_allowance = tolerance_for("gate_2_normalized").allowed(gate_2);
    NearTie tie;
    if (policy == "threshold") {
      // greater(gate_2, threshold)
      tie.margin = std::fabs(static_cast<double>(gate_2) - static_cast<double>(static_cast<float>(threshold)));
      tie.tolerance = gate_allowance;
      tie.detail =
          "gate_2_normalized " + float_text(gate_2) + " vs threshold " + float_text(static_cast<float>(threshold));
      return tie;
    }
    if (policy == "random") {
      // less(uniform, gate_2 / max(threshold, 1e-9))
      const float inverse_threshold = static_cast<float>(1.0 / std::max(threshold, 1e-9));
      const float bound = gate_2 * inverse_threshold;
      const float uniform = reference.find_input("second_policy_uniform")->f32[static_cast<size_t>(flat)];
      tie.margin = std::fabs(static_cast<double>(uniform) - static_cast<double>(bound));
      tie.tolerance = gate_allowance * static_cast<double>(inverse_threshold);
      tie.detail =
          "second_policy_uniform " + float_text(uniform) + " vs gate_2_normalized / threshold " + float_text(bound);
      return tie;
    }
  }
  return std::nullopt;
}

}  // namespace

VariantSpec mtf_top2_variant() {
  const std::vector<std::string> policies = {"all", "none", "threshold", "random"};
  VariantSpec spec;
  spec.id = "mtf_top2";
  spec.summary = "Mesh TensorFlow top-2 MoE layer (GShard-style top-2 gating with second-expert policies)";
  spec.source = "tensorflow/mesh mesh_tensorflow/transformer/moe.py: transformer_moe_layer_v1, _top_2_gating";
  spec.spec_page = "spec/variants/mtf_top2.md";
  spec.run = run_mtf_top2;
  spec.near_tie = mtf_top2_near_tie;
  auto add = [&spec](HparamSpec hparam) { spec.hparams.push_back(std::move(hparam)); };
  HparamSpec h;
  h = {"group_size", HparamKind::kInt,
       1024,         false,
       {},           1,
       1 << 24,      "Target tokens per routing group when x is [B, L, M]; _split_into_groups may exceed it."};
  add(h);
  h = {"mesh_dim_size",
       HparamKind::kInt,
       1,
       false,
       {},
       1,
       1 << 24,
       "Mesh size over which groups are split; the number of groups must be a multiple of it."};
  add(h);
  h = {"capacity_factor_train",
       HparamKind::kFloat,
       1.25,
       false,
       {},
       0.0,
       1e300,
       "Training capacity factor: C = max(min(S, int(S * factor / E)), min_expert_capacity)."};
  add(h);
  h = {"capacity_factor_eval",
       HparamKind::kFloat,
       2.0,
       false,
       {},
       0.0,
       1e300,
       "Evaluation capacity factor, used when train is false."};
  add(h);
  h = {"min_expert_capacity",
       HparamKind::kInt,
       4,
       false,
       {},
       0,
       1 << 24,
       "Lower bound on the expert capacity C (so C may exceed S)."};
  add(h);
  h = {"expert_capacity",
       HparamKind::kInt,
       nullptr,
       true,
       {},
       0,
       1 << 24,
       "moeref addition: an explicit capacity C that overrides the capacity rule, as _top_2_gating's callers pass it."};
  add(h);
  h = {"use_second_place_loss",
       HparamKind::kBool,
       false,
       false,
       {},
       0,
       0,
       "Add 0.5 x a balance loss on the second choices to the gating loss."};
  add(h);
  h = {"second_policy_train",
       HparamKind::kString,
       "random",
       false,
       policies,
       0,
       0,
       "When training, which second choices to keep: all, none, threshold (gate_2 > t) or random (U < gate_2 / t)."};
  add(h);
  h = {"second_policy_eval",
       HparamKind::kString,
       "random",
       false,
       policies,
       0,
       0,
       "The same policy when train is false (mtf's default is random, so its evaluation is stochastic)."};
  add(h);
  h = {"second_threshold_train",
       HparamKind::kFloat,
       0.2,
       false,
       {},
       0.0,
       1e300,
       "Threshold t of the threshold and random second policies when training."};
  add(h);
  h = {"second_threshold_eval",
       HparamKind::kFloat,
       0.2,
       false,
       {},
       0.0,
       1e300,
       "Threshold t of the threshold and random second policies when train is false."};
  add(h);
  h = {"loss_coef", HparamKind::kFloat,
       1e-2,        false,
       {},          0.0,
       1e300,       "The layer returns the gating loss times this coefficient."};
  add(h);
  h = {"activation",
       HparamKind::kStringList,
       "relu",
       false,
       ops::activation_names(),
       0,
       0,
       "Expert activation; a list multiplies one dense factor per entry (GLU style, mtf dense_product)."};
  add(h);
  h = {"dropout_rate",
       HparamKind::kFloat,
       0.0,
       false,
       {},
       0.0,
       0.999999,
       "Dropout rate on the expert hidden activations, applied only when training."};
  add(h);
  h = {"num_microbatches",
       HparamKind::kInt,
       nullptr,
       true,
       {},
       1,
       1 << 24,
       "Number of microbatches; when > 1 the gating loss is divided by it."};
  add(h);
  h = {"output_dim", HparamKind::kInt,
       nullptr,      true,
       {},           1,
       1 << 24,      "Expert output dim N; null means the model dim M."};
  add(h);
  return spec;
}

}  // namespace moeref
