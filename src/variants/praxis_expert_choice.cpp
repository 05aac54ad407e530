// praxis_expert_choice: praxis's expert-choice gating v2, literal to the source.
//
// Source: google/praxis, praxis/gshard_utils.py at feeaff1,
//   expert_choice_gating_on_logits_v2 (the gating function) and top_k (its
//   sort-based selection), as called by compute_gating(gating_func=
//   'expert_choice_v2') from TransformerFeedForwardMoe.
//   _dispatch_and_combine_expert_outputs (praxis/layers/transformers.py: router
//   einsum 'gsm,me->gse', dispatch 'gsec,gsm->egcm', experts, combine
//   'gecm,gsec->gsm'). Spec: spec/variants/praxis_expert_choice.md.
//
// Dims: G groups, S group size, E experts, C expert capacity, K entries returned
//       by praxis's top_k (C, or S when C > S or C == 0), M model dim,
//       H expert hidden dim, N expert output dim (= M).
//
// Each expert picks its C best tokens by padding-masked probability with
// praxis's top_k: a stable ascending sort whose LAST C entries are kept, so
// among equal scores at the cut the HIGHER token indices win (lingvo's
// tf.math.top_k picks the lower ones). The selection becomes a 0/1 mask, and a
// token's slot is the number of earlier tokens (token order) the expert also
// picked. combine and dispatch are [G, S, E, C]. Masks, indices and positions
// are int32 in the source (compute_gating hard-wires mask_dtype=jnp.int32).
// lingvo_expert_choice restates the same rule; the steps both share from the
// gates on are recorded by layers/gshard_expert_choice.hpp.
//
// `version` "v1" runs expert_choice_gating_on_logits instead (compute_gating's
// gating_func='expert_choice'): bucket_size = int(S // E * capacity_factor)
// tokens per expert by the same top_k, no paddings and no logit cap, and the
// result as gate [G, E, K] and perm [G, E, K, S] with slots in top_k's
// ascending-score order (the layer combines with einsum('gecm,gecs,gec->gsm')).

#include <optional>
#include <string>
#include <vector>

#include "moeref/error.hpp"
#include "moeref/frame/define_variant.hpp"
#include "moeref/layers/grouped_tokens.hpp"
#include "moeref/layers/gshard_expert_choice.hpp"
#include "moeref/ops/gshard_capacity.hpp"
#include "moeref/ops/jax_softmax.hpp"
#include "moeref/ops/praxis_cap_logits.hpp"
#include "moeref/ops/top_k.hpp"

namespace moeref {

namespace {

// expert_choice_gating_on_logits_v2's arguments as TransformerFeedForwardMoe passes
// them, and the experts' activation.
struct PraxisExpertChoiceHparams {
  std::string version;
  int64_t expert_capacity_dim = 0;
  std::optional<double> capacity_factor;
  double gating_logit_cap = 0.0;
  std::vector<std::string> activation;
};

void declare_hparams(HparamTable<PraxisExpertChoiceHparams>& table) {
  using P = PraxisExpertChoiceHparams;
  const char* gating = "gshard_utils.py: expert_choice_gating_on_logits_v2";
  table.choice("version", &P::version, {"v2", "v1"})
      .defaults_to("v2")
      .means(
          "v2: expert_choice_gating_on_logits_v2 (gating_func='expert_choice_v2'); v1: expert_choice_gating_on_logits "
          "(gating_func='expert_choice'): int(S // E * capacity_factor) tokens per expert, slots in ascending score "
          "order, no paddings.")
      .cites("gshard_utils.py: compute_gating, expert_choice_gating_on_logits, expert_choice_gating_on_logits_v2")
      .known_as({"gating_func"})
      .about("gating_function");
  table.integer("expert_capacity_dim", &P::expert_capacity_dim)
      .defaults_to(0)
      .between(0, kMaxHparamExtent)
      .means("C0, tokens each expert takes per group unless capacity_factor raises it (layer default 0).")
      .cites(gating)
      .about("explicit_capacity");
  table.optional_number("capacity_factor", &P::capacity_factor)
      .defaults_to(2.0)
      .between(0.0, static_cast<double>(kMaxHparamExtent))
      .means(
          "If not null, C is raised to int(S * capacity_factor / E) rounded up to a multiple of 4 when C0 is smaller "
          "(layer default 2.0).")
      .cites(gating)
      .known_as({"unadjusted_expert_capacity_factor"})
      .about("capacity_factor");
  table.number("gating_logit_cap", &P::gating_logit_cap)
      .defaults_to(0.0)
      .between(0.0, 1e38)
      .means("If > 0, logits become cap * tanh(logits / cap) (compute_gating always passes 0.0).")
      .cites(gating)
      .about("logit_cap");
  declare_grouped_activation(table, &P::activation, "transformers.py: TransformerFeedForwardMoe", {"activation_tpl"});
}

// expert_choice_gating_on_logits(logits, experts_dim, expert_capacity_dim, fprop_dtype, capacity_factor,
// mask_dtype=jnp.int32): the v1 gating, with the layer's router before it and its einsums after it.
void expert_choice_gating_on_logits(Frame& f, const PraxisExpertChoiceHparams& hp) {
  resolve_grouped_dims(f, grouped_router_runs(f),
                       "G and S only: praxis_expert_choice routes the groups it is given (the layer's num_groups / "
                       "min_group_size grouping is not modelled)");
  const int64_t G = f.dim("G"), S = f.dim("S"), E = f.dim("E");
  if (f.supplied("paddings")) {
    fail_input("inputs.paddings", "supplied with version v1",
               "no paddings (compute_gating does not pass them to expert_choice_gating_on_logits)");
  }
  if (hp.gating_logit_cap > 0.0) {
    fail_input("hparams.gating_logit_cap", std::to_string(hp.gating_logit_cap),
               "0 with version v1 (expert_choice_gating_on_logits has no logit cap)");
  }
  // assert capacity_factor or expert_capacity_dim; bucket_size = int(logits.shape[1] // experts_dim *
  // capacity_factor): a None factor raises TypeError.
  if (!hp.capacity_factor) {
    fail_input("hparams.capacity_factor", "null",
               "a number with version v1 (int(S // E * capacity_factor) raises TypeError on None)");
  }
  if (*hp.capacity_factor == 0.0 && hp.expert_capacity_dim == 0) {
    fail_input("hparams.capacity_factor", "0 with expert_capacity_dim 0",
               "a non-zero capacity_factor or expert_capacity_dim (the source asserts one of them)");
  }
  const int64_t bucket_size = static_cast<int64_t>(static_cast<double>(S / E) * *hp.capacity_factor);
  // top_k's sorted[..., -k:] returns all S entries when k == 0 or k > S.
  const int64_t K = ops::praxis_top_k_count(S, bucket_size);
  f.derived_dim("C", K, "v1: the entries top_k returns for bucket_size = int(S // E * capacity_factor)");
  f.check_routing_size();
  f.capacity({{"expert_capacity", K},
              {"rule",
               "praxis expert_choice v1: bucket_size = int(S // E * capacity_factor); top_k returns it, or S "
               "when it is 0 or > S"},
              {"bucket_size", bucket_size},
              {"capacity_factor", *hp.capacity_factor},
              {"group_size", S},
              {"num_groups", G}});

  const Tensor* x = take_grouped_x(f, grouped_router_runs(f));
  const Tensor& logits = grouped_router_logits(f, x);  // [G, S, E]
  // raw_gates = jax.nn.softmax(logits, axis=-1)
  Tensor& raw_gates = f.float32_step("raw_gates", {logits}, {"G", "S", "E"});
  ops::jax_softmax(logits.f32.data(), raw_gates.f32.data(), G * S, E);
  // gate, indices = top_k(jnp.transpose(raw_gates, [0, 2, 1]), k=bucket_size): the selection as the checker
  // forces it (mask_ges), then its tokens in top_k's ascending order.
  const Tensor& token_scores =
      f.step("token_scores", {raw_gates}, ops::gshard_expert_choice_token_scores(raw_gates, nullptr));  // [G, E, S]
  ops::ExpertChoiceTopK chosen = ops::gshard_expert_choice_top_k(
      token_scores, bucket_size, {ops::praxis_top_k_indices, K, "C"}, f.forced_decision("mask_ges", {G, E, S}));
  const Tensor& mask_ges = f.step("mask_ges", {token_scores}, std::move(chosen.mask_ges));  // [G, E, S]
  chosen.token_indices.dims = {"G", "E", "C"};
  const Tensor& indices = f.step("indices", {token_scores, mask_ges}, std::move(chosen.token_indices));  // [G, E, C]
  Tensor gate_values = Tensor::float32({"G", "E", "C"}, {G, E, K});
  Tensor perm_values = Tensor::int32({"G", "E", "C", "S"}, {G, E, K, S});
  for (int64_t i = 0; i < G * E * K; ++i) {
    const int64_t g = i / (E * K), e = (i / K) % E, s = indices.i32[static_cast<size_t>(i)];
    gate_values.f32[static_cast<size_t>(i)] = token_scores.f32[static_cast<size_t>((g * E + e) * S + s)];
    perm_values.i32[static_cast<size_t>(i * S + s)] = 1;  // perm = jax.nn.one_hot(indices, seq_len, dtype=int32)
  }
  const Tensor& gate = f.step("gate", {token_scores, indices}, std::move(gate_values));  // [G, E, C]
  const Tensor& perm = f.step("perm", {indices}, std::move(perm_values));                // [G, E, C, S]
  // The layer's 'gecs,gsm->egcm' and 'gecm,gecs,gec->gsm' are the [G, S, E, C] einsums of
  // dispatch = perm^T and combine = gate * perm^T: moeref records those for its expert layer.
  Tensor dispatch = Tensor::int32({"G", "S", "E", "C"}, {G, S, E, K});
  Tensor combine = Tensor::float32({"G", "S", "E", "C"}, {G, S, E, K});
  for (int64_t i = 0; i < G * E * K; ++i) {
    const int64_t g = i / (E * K), e = (i / K) % E, c = i % K, s = indices.i32[static_cast<size_t>(i)];
    const size_t at = static_cast<size_t>(((g * S + s) * E + e) * K + c);
    dispatch.i32[at] = 1;
    combine.f32[at] = gate.f32[static_cast<size_t>(i)];
  }
  const Tensor& combine_tensor = f.step("combine_tensor", {gate, perm}, std::move(combine));
  const Tensor& dispatch_tensor = f.step("dispatch_tensor", {perm}, std::move(dispatch));
  if (f.layer_scope()) grouped_expert_layer(f, *x, dispatch_tensor, combine_tensor, hp.activation);
  // return jnp.asarray(0.0, dtype=fprop_dtype), gate, perm
  f.loss("aux_loss", 0.0f);
}

// expert_choice_gating_on_logits_v2(paddings, logits, experts_dim, expert_capacity_dim, fprop_dtype,
// capacity_factor, mask_dtype=jnp.int32, gating_logit_cap), with the layer's router before it and
// its experts after it.
void expert_choice_gating_on_logits_v2(Frame& f, const PraxisExpertChoiceHparams& hp) {
  if (hp.version == "v1") {
    expert_choice_gating_on_logits(f, hp);
    return;
  }
  resolve_grouped_dims(f, grouped_router_runs(f),
                       "G and S only: praxis_expert_choice routes the groups it is given (the layer's num_groups / "
                       "min_group_size grouping is not modelled)");
  const int64_t G = f.dim("G"), S = f.dim("S"), E = f.dim("E");

  // assert capacity_factor or expert_capacity_dim
  const nlohmann::json& capacity_factor_given = f.config().hparams.at("capacity_factor");
  if ((!hp.capacity_factor || *hp.capacity_factor == 0.0) && hp.expert_capacity_dim == 0) {
    fail_input("hparams.capacity_factor", capacity_factor_given.dump() + " with expert_capacity_dim 0",
               "a non-zero capacity_factor or a non-zero expert_capacity_dim (the source asserts "
               "`capacity_factor or expert_capacity_dim`)");
  }
  // The capacity rule, which the source applies after token_scores; moeref resolves C with
  // the dims so that a config that cannot run fails before any step.
  const ops::GshardCapacity capacity =
      ops::praxis_expert_choice_capacity(S, E, hp.expert_capacity_dim, hp.capacity_factor);
  const int64_t C = f.derived_dim("C", capacity.expert_capacity,
                                  "praxis: C0 = expert_capacity_dim; with a capacity_factor, auto = int(S * cf / E) "
                                  "(no floor) and C = ((auto + 3) // 4) * 4 when C0 < auto");
  // top_k's sorted[..., -k:] returns K = C entries, or all S when C > S or C == 0. The
  // selection [G, E, K] is no larger than combine_tensor, so one size check covers both.
  const int64_t K = ops::praxis_top_k_count(S, C);
  f.check_routing_size();
  nlohmann::json capacity_record = ops::gshard_capacity_record(
      capacity,
      capacity.rule_applied ? "praxis: auto = int(S * capacity_factor / E); C = ((auto + 3) // 4) * 4 if "
                              "expert_capacity_dim < auto, else expert_capacity_dim"
                            : "praxis: capacity_factor None, C = expert_capacity_dim",
      hp.expert_capacity_dim, capacity_factor_given, S, G);
  capacity_record["top_k_returned"] = K;
  f.capacity(std::move(capacity_record));

  // TransformerFeedForwardMoe: logits = einsum('gsm,me->gse', reshaped_inputs, gate); astype(float32).
  const Tensor* x = take_grouped_x(f, grouped_router_runs(f));
  const Tensor& logits = grouped_router_logits(f, x);                                                  // [G, S, E]
  const Tensor* paddings = take_grouped_paddings(f, false, "a padding in [0, 1] (1 = padded token)");  // [G, S]

  // logits = _cap_logits(logits): if gating_logit_cap > 0.0: cap = jnp.array(gating_logit_cap,
  // dtype=logits.dtype); logits = cap * jnp.tanh(logits / cap)
  const Tensor* logits_now = &logits;
  if (hp.gating_logit_cap > 0.0) {
    logits_now = &f.step("logits_capped", {logits},
                         ops::praxis_cap_logits(logits, static_cast<float>(hp.gating_logit_cap)));  // [G, S, E]
  }

  // gates = jax.nn.softmax(logits, axis=-1)
  Tensor& gates = f.float32_step("gates", {logits_now}, {"G", "S", "E"});  // [G, S, E]
  ops::jax_softmax(logits_now->f32.data(), gates.f32.data(), G * S, E);

  // nonpaddings, token_scores, _, token_indices = top_k(token_scores, k=expert_capacity_dim),
  // mask, mask *= nonpaddings, expert_indices.
  const ExpertChoiceSelection selection =
      gshard_expert_choice_selection(f, logits, gates, paddings, C, {ops::praxis_top_k_indices, K, "K"});

  // position_in_expert = cum_sum(mask, exclusive=True, axis=-2) (capacity, mask), for i in
  // range(E): gate_i, combine_tensor += ...; dispatch_tensor = combine_tensor.astype(bool).
  const ExpertChoiceRouting routing = gshard_expert_choice_routing(f, gates, selection, C);

  // TransformerFeedForwardMoe: experts and combine in the returned [G, S, E, C] layout.
  if (f.layer_scope()) grouped_expert_layer(f, *x, *routing.dispatch_tensor, *routing.combine_tensor, hp.activation);

  // return jnp.asarray(0.0, dtype=fprop_dtype), combine_tensor, dispatch_tensor
  f.loss("aux_loss", 0.0f);
}

}  // namespace

VariantSpec praxis_expert_choice_variant() {
  return define_variant<PraxisExpertChoiceHparams>(
      {"praxis_expert_choice",
       "praxis expert-choice gating v2 (experts pick their top-C tokens; ties at the cut go to higher token indices)",
       "google/praxis praxis/gshard_utils.py: expert_choice_gating_on_logits_v2, top_k via compute_gating",
       "spec/variants/praxis_expert_choice.md"},
      declare_hparams, expert_choice_gating_on_logits_v2, gshard_expert_choice_near_tie<PraxisExpertChoiceHparams>);
}

}  // namespace moeref
