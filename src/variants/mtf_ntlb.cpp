// mtf_ntlb: Mesh TensorFlow's top-K "no token left behind" gating, literal to the source.
//
// Source: tensorflow/mesh, mesh_tensorflow/transformer/moe.py at da90793,
//   transformer_moe_layer_v1 (grouping, capacity, experts, combine) and
//   _ntlb_gating (the gating function; named _switch_gating, with hparam
//   switch_top_k, before commit b1b5364). Spec: spec/variants/mtf_ntlb.md.
//
// Dims: B batch, L length, G groups, S group size, E experts, C expert capacity,
//       K ranked choices (ntlb_top_k), M model dim, H expert hidden dim, N expert output dim.
//
// Every token ranks its K most probable experts. Routing runs rank by rank:
// first every token tries its best expert (token order), then every token not
// yet placed tries its second best in whatever capacity is left, and so on. A
// token is placed at most once, with the raw probability of the expert it lands
// in; a token that fails all K ranks is dropped. The router runs "in the
// activation dtype", which is float32 in moeref. Only input_jitter perturbs the
// router; the other policies are ignored.

#include <optional>
#include <string>

#include "moeref/error.hpp"
#include "moeref/frame/define_variant.hpp"
#include "moeref/layers/mtf_switch_router.hpp"
#include "moeref/ops/dispatch_tensor.hpp"
#include "moeref/ops/mtf_softmax.hpp"
#include "moeref/ops/mtf_top_k.hpp"
#include "moeref/ops/one_hot.hpp"

namespace moeref {

namespace {

// transformer_moe_layer_v1's hyperparameters, the switch_* ones, and ntlb_top_k.
struct MtfNtlbHparams : MtfSwitchRouterHparams {
  int64_t ntlb_top_k = 0;
};

void declare_hparams(HparamTable<MtfNtlbHparams>& table) {
  using P = MtfNtlbHparams;
  const char* gating = "moe.py: _ntlb_gating";
  declare_mtf_switch_router_hparams(table, gating, MtfSwitchPolicyUse::kJitterOnly);
  table.integer("ntlb_top_k", &P::ntlb_top_k)
      .defaults_to(4)
      .between(1, kMaxHparamExtent)
      .means(
          "K, the ranked experts a token tries in turn; K > E repeats experts at -1e9 for K <= 4 and raises for K "
          ">= 5.")
      .cites(gating)
      .known_as({"moe_ntlb_top_k", "moe_switch_top_k"})
      .renamed({"switch_top_k"}, mtf_rename_commit())
      .about("top_k");
}

// _ntlb_gating(inputs, ..., importance, num_microbatches): dispatch, combine and loss.
MtfGatingOutputs ntlb_gating(Frame& f, const MtfGatingInputs& in, const MtfNtlbHparams& hp) {
  const int64_t G = f.dim("G"), S = f.dim("S"), E = f.dim("E"), C = f.dim("C");
  // K is the size of mtf's k_dim; it is not a config dim (the trace's steps carry it).
  const int64_t K = hp.ntlb_top_k;
  const bool train = f.train();
  if (!ops::mtf_top_k_runs(E, K)) {
    fail_input("hparams.ntlb_top_k", std::to_string(K) + " > E = " + std::to_string(E),
               "at most E, or 2 to 4 (which mtf runs, repeating experts at -1e9): mtf.top_k(raw_gates, experts_dim, "
               "k_dim) raises ValueError in TopKOperation (k_dim.size must be <= reduced_dim.size)");
  }
  // # SELECT EXPERT: if train: policy = hparams.moe_switch_policy_train, else ..._eval
  const std::string& policy = hp.switch_policy(train);
  // # Input perturbations: if train and policy == "input_jitter": inputs = multiplicative_jitter(inputs);
  // gate_logits = mtf.layers.dense(inputs, experts_dim, use_bias=False), in the activation dtype (float32).
  const Tensor& gate_logits = mtf_switch_gate_logits(f, in, policy, hp, MtfRouterPerturbation::kNtlb);  // [G, S, E]
  // raw_gates = mtf.softmax(gate_logits, reduced_dim=experts_dim); raw_gates = mtf.to_float(raw_gates)
  Tensor& raw_gates = f.float32_step("raw_gates", {gate_logits}, {"G", "S", "E"});  // [G, S, E]
  ops::mtf_softmax(gate_logits.f32.data(), raw_gates.f32.data(), G * S, E);

  // # Top-k operation: expert_gate, expert_index = mtf.top_k(raw_gates, reduced_dim=experts_dim, k_dim=k_dim)
  const Tensor* forced = f.forced_decision("expert_index", {G, S, K});
  Tensor index = Tensor::int32({"G", "S", "K"}, {G, S, K});
  Tensor gate = Tensor::float32({"G", "S", "K"}, {G, S, K});
  for (int64_t t = 0; t < G * S; ++t) {
    const float* row = raw_gates.f32.data() + t * E;
    ops::mtf_top_k(row, 1, E, K, gate.f32.data() + t * K, index.i32.data() + t * K);
    if (forced != nullptr) {
      mtf_force_ranking(forced->i32.data() + t * K, K, E, row, 1, gate.f32.data() + t * K, index.i32.data() + t * K);
    }
  }
  const Tensor& expert_index = f.step("expert_index", {raw_gates}, std::move(index));             // [G, S, K]
  const Tensor& expert_gate = f.step("expert_gate", {raw_gates, expert_index}, std::move(gate));  // [G, S, K]
  const Tensor& expert_mask =
      f.step("expert_mask", {expert_index}, ops::one_hot(expert_index, E, "E"));  // [G, S, K, E]

  // # LOAD BALANCING LOSS: density_1 [G, K, E] counts every rank; the proxy gains S with importance.
  const MtfLoadBalance balance =
      mtf_switch_load_balancing(f, raw_gates, expert_mask, expert_gate, in.importance, hp.num_microbatches);
  // # Logging: the experts/ fractions count all K ranks.
  if (train) mtf_switch_logging(f, raw_gates, *balance.expert_mask, *balance.loss);
  const float loss = balance.loss->f32[0];
  f.scalar_step("gating_loss", {balance.loss}, loss);

  // # COMPUTE ASSIGNMENT TO EXPERT, rank by rank. combine_tensor = 0; cum_tokens = 0 [G, E];
  // tokens_left_to_route = 1 [G, S]. The rank's gates and indices are the importance-masked
  // expert_gate and the unmasked expert_index, split along K.
  const Tensor& mask = *balance.expert_mask;
  const Tensor& gates = *balance.expert_gate;
  FloatBuffer combine(static_cast<size_t>(G * S * E * C), 0.0f);
  Reads combine_reads = {gates, expert_index};
  const Tensor* cum_tokens = nullptr;            // [G, E]; zeros before the first rank
  const Tensor* tokens_left_to_route = nullptr;  // [G, S]; ones before the first rank
  for (int64_t i = 0; i < K; ++i) {
    const std::string rank = std::to_string(i);
    // top_i_mask = reshape(split(expert_mask)[i]); top_i_mask *= tokens_left_to_route
    Tensor& top_i_mask = f.int32_step("top_" + rank + "_mask", {mask, tokens_left_to_route}, {"G", "S", "E"});
    for (int64_t k = 0; k < G * S * E; ++k) {
      const int64_t t = k / E, e = k % E;
      const int32_t left = tokens_left_to_route != nullptr ? tokens_left_to_route->i32[t] : 1;
      top_i_mask.i32[k] = mask.i32[(t * K + i) * E + e] * left;
    }
    // cumulative_tokens_in_expert = cum_tokens + mtf.cumsum(top_i_mask, group_size_dim)  (inclusive)
    Tensor& cumulative = f.int32_step("cumulative_tokens_in_expert_" + rank, {cum_tokens, top_i_mask}, {"G", "S", "E"});
    // expert_overflow = less_equal(cumulative_tokens_in_expert, C); output_i_tokens = top_i_mask * expert_overflow
    Tensor& output_i_tokens = f.int32_step("output_" + rank + "_tokens", {top_i_mask, cumulative}, {"G", "S", "E"});
    for (int64_t g = 0; g < G; ++g) {
      for (int64_t e = 0; e < E; ++e) {
        int32_t running = cum_tokens != nullptr ? cum_tokens->i32[g * E + e] : 0;
        for (int64_t s = 0; s < S; ++s) {
          const int64_t k = (g * S + s) * E + e;
          running += top_i_mask.i32[k];
          cumulative.i32[k] = running;
          output_i_tokens.i32[k] = top_i_mask.i32[k] * (running <= C ? 1 : 0);
        }
      }
    }
    // cum_tokens += reduce_sum(output_i_tokens, reduced_dim=group_size_dim)
    Tensor& cum_tokens_i = f.int32_step("cum_tokens_" + rank, {cum_tokens, output_i_tokens}, {"G", "E"});
    for (int64_t k = 0; k < G * S * E; ++k) cum_tokens_i.i32[(k / (S * E)) * E + k % E] += output_i_tokens.i32[k];
    if (cum_tokens != nullptr) {
      for (int64_t k = 0; k < G * E; ++k) cum_tokens_i.i32[k] += cum_tokens->i32[k];
    }
    // output_i_tokens_flat = reduce_sum(output_i_tokens, reduced_dim=experts_dim);
    // tokens_left_to_route -= reduce_sum(output_i_tokens, reduced_dim=experts_dim)
    const Tensor& output_i_tokens_flat =
        f.step("output_" + rank + "_tokens_flat", {output_i_tokens}, ops::sum_over_last(output_i_tokens));  // [G, S]
    Tensor& left_i =
        f.int32_step("tokens_left_to_route_" + rank, {tokens_left_to_route, output_i_tokens_flat}, {"G", "S"});
    for (int64_t t = 0; t < G * S; ++t) {
      left_i.i32[t] =
          (tokens_left_to_route != nullptr ? tokens_left_to_route->i32[t] : 1) - output_i_tokens_flat.i32[t];
    }
    // position_in_expert = cumulative_tokens_in_expert - 1;
    // top_i_combine_tensor = top_i_gate * output_i_tokens_flat * one_hot(top_i_index, experts_dim)
    //                        * one_hot(to_int32(position_in_expert), expert_capacity_dim);
    // combine_tensor += top_i_combine_tensor
    for (int64_t t = 0; t < G * S; ++t) {
      const float weight = gates.f32[t * K + i] * static_cast<float>(output_i_tokens_flat.i32[t]);
      for (int64_t e = 0; e < E; ++e) {
        const float chosen = weight * (expert_index.i32[t * K + i] == e ? 1.0f : 0.0f);
        const int32_t position = cumulative.i32[t * E + e] - 1;
        for (int64_t c = 0; c < C; ++c) {
          const size_t at = static_cast<size_t>((t * E + e) * C + c);
          combine[at] = combine[at] + chosen * (position == c ? 1.0f : 0.0f);
        }
      }
    }
    combine_reads.insert(combine_reads.end(), {output_i_tokens_flat, cumulative});
    cum_tokens = &cum_tokens_i;
    tokens_left_to_route = &left_i;
  }
  Tensor& combine_tensor = f.float32_step("combine_tensor", combine_reads, {"G", "S", "E", "C"});  // [G, S, E, C]
  combine_tensor.f32 = std::move(combine);
  // dispatch_tensor = mtf.cast(mtf.cast(combine_tensor, tf.bool), combine_tensor.dtype)
  const Tensor& dispatch_tensor =
      f.step("dispatch_tensor", {combine_tensor}, ops::dispatch_from_combine(combine_tensor));  // [G, S, E, C]
  return {&dispatch_tensor, &combine_tensor, loss};
}

void mtf_ntlb(Frame& f, const MtfNtlbHparams& hp) {
  mtf_moe_layer(f, hp, [&](const MtfGatingInputs& in) { return ntlb_gating(f, in, hp); });
}

// The one decision a backend may make the other way at a near tie: the ranking
// expert_index [G, S, K] of each token's experts by raw_gates.
std::optional<NearTie> mtf_ntlb_near_tie(const NearTieQuery& query, const MtfNtlbHparams&) {
  if (query.step != "expert_index") return std::nullopt;
  return mtf_ranked_near_tie(query, "raw_gates", false);
}

}  // namespace

VariantSpec mtf_ntlb_variant() {
  VariantSpec spec = define_variant<MtfNtlbHparams>(
      {"mtf_ntlb", "Mesh TensorFlow top-K no-token-left-behind MoE layer (each token tries its K best experts in turn)",
       "tensorflow/mesh mesh_tensorflow/transformer/moe.py: transformer_moe_layer_v1, _ntlb_gating",
       "spec/variants/mtf_ntlb.md"},
      declare_hparams, mtf_ntlb, mtf_ntlb_near_tie);
  // transformer_moe_layer_v1 keeps its groups apart from the gating to the outputs:
  // shards by group merge exactly (spec/sharding.md).
  spec.group_shards = true;
  return spec;
}

}  // namespace moeref
