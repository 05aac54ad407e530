// The steps Mesh TensorFlow's switch-family gating functions share, recorded
// once in the sources' order under their names (tensorflow/mesh,
// mesh_tensorflow/transformer/moe.py at da90793): _switch_gating,
// _switch_max_gating, _ntlb_gating and _expert_selection_gating all pick a
// router perturbation by switch_policy_train/_eval, and three of them then
// choose one expert per token, compute the same load-balancing loss and log
// the same summaries. The variant files (mtf_switch, mtf_switch_max, mtf_ntlb,
// mtf_expert_selection) call these blocks where their source has them.
//
// Dims: G groups, S group size, E experts, C expert capacity, M model dim,
//       K ranked choices (NTLB).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "moeref/frame/frame.hpp"
#include "moeref/frame/hparam_table.hpp"
#include "moeref/layers/mtf_moe_layer.hpp"
#include "moeref/near_tie.hpp"

namespace moeref {

// transformer_moe_layer_v1's hyperparameters and the switch_* ones the gating
// functions read; a variant's hparams struct derives from it.
struct MtfSwitchRouterHparams : MtfLayerHparams {
  std::string switch_policy_train;
  std::string switch_policy_eval;
  double switch_dropout = 0.0;
  double switch_temperature = 0.0;
  double switch_jitter = 0.0;
  std::optional<int64_t> num_microbatches;

  // if train: policy = hparams.moe_switch_policy_train else moe_switch_policy_eval
  const std::string& switch_policy(bool train) const { return train ? switch_policy_train : switch_policy_eval; }
};

// Which "Input perturbations" block a gating function has.
enum class MtfRouterPerturbation {
  // _switch_gating, _switch_max_gating, _expert_selection_gating:
  //   gate_inputs = to_float(inputs); if policy == "input_dropout": mtf.dropout(gate_inputs,
  //   is_training=train, keep_prob=1 - switch_dropout); elif train and policy == "input_jitter":
  //   multiplicative_jitter(gate_inputs, switch_jitter).
  kSwitch,
  // _ntlb_gating: if train and policy == "input_jitter": inputs = multiplicative_jitter(inputs,
  //   switch_jitter), in the activation dtype; every other policy perturbs nothing.
  kNtlb,
};

// What the policies do in the variant at hand, for the hparam meanings.
enum class MtfSwitchPolicyUse {
  kChooseExpert,  // switch, switch_max: the policy also picks top_1 or sampling
  kPerturbOnly,   // expert_selection: dropout and jitter only
  kJitterOnly,    // ntlb: jitter only
};

// The old names before tensorflow/mesh b1b5364, in the form HparamSpec::renamed records.
inline const char* mtf_rename_commit() {
  return "tensorflow/mesh b1b5364 (2021-01-19, \"Clarify names within Mesh Tensorflow\": rand_1 became switch, "
         "switch became ntlb)";
}

// Declares the layer's hparams (declare_mtf_layer_hparams), switch_policy_train/_eval,
// switch_dropout, switch_temperature, switch_jitter and num_microbatches, citing `gating`.
template <typename P>
void declare_mtf_switch_router_hparams(HparamTable<P>& table, const char* gating, MtfSwitchPolicyUse use) {
  declare_mtf_layer_hparams(table);
  const std::vector<std::string> policies = {"argmax", "input_dropout", "input_jitter", "sample"};
  std::string policy_meaning;
  if (use == MtfSwitchPolicyUse::kChooseExpert) {
    policy_meaning =
        "Router policy: argmax (top-1), input_dropout (drop router inputs at rate switch_dropout when training, then "
        "top-1), input_jitter (multiply router inputs by U[1-switch_jitter, 1+switch_jitter) when training, then "
        "top-1), sample (Gumbel sampling of the expert at switch_temperature, also when train is false).";
  } else if (use == MtfSwitchPolicyUse::kPerturbOnly) {
    policy_meaning =
        "Router input perturbation: input_dropout (rate switch_dropout, training only) or input_jitter (training "
        "only); argmax and sample perturb nothing (the experts still pick their top-C tokens).";
  } else {
    policy_meaning =
        "Router input perturbation: only input_jitter does anything (multiplicative jitter when training); "
        "argmax, input_dropout and sample are ignored by _ntlb_gating.";
  }
  table.choice("switch_policy_train", &P::switch_policy_train, policies)
      .defaults_to("input_jitter")
      .train_only()
      .means(policy_meaning + " This one applies when train is true.")
      .cites(gating)
      .known_as({"moe_switch_policy_train", "moe_rand_1_policy_train"})
      .renamed({"rand_1_policy_train"}, mtf_rename_commit())
      .about("router_policy");
  table.choice("switch_policy_eval", &P::switch_policy_eval, policies)
      .defaults_to("input_jitter")
      .eval_only()
      .means("The same policy when train is false (jitter and dropout then perturb nothing).")
      .cites(gating)
      .known_as({"moe_switch_policy_eval", "moe_rand_1_policy_eval"})
      .renamed({"rand_1_policy_eval"}, mtf_rename_commit())
      .about("router_policy");
  table.number("switch_dropout", &P::switch_dropout)
      .defaults_to(0.1)
      .between(0.0, 0.999999)
      .train_only()
      .means(
          use == MtfSwitchPolicyUse::kJitterOnly
              ? "Unused by _ntlb_gating (declared by MoE1D for the other switch-family gatings)."
              : "Drop rate of the router inputs under input_dropout (keep_prob = 1 - switch_dropout), training only.")
      .cites(gating)
      .known_as({"moe_switch_dropout", "moe_rand_1_dropout"})
      .renamed({"rand_1_dropout"}, mtf_rename_commit())
      .about("router_input_dropout");
  table.number("switch_temperature", &P::switch_temperature)
      .defaults_to(1.0)
      .at_least(0.0)
      .means(use == MtfSwitchPolicyUse::kChooseExpert
                 ? "Scale of the Gumbel noise under sample: argmax(logits + temperature * gumbel); 0 means argmax of "
                   "the logits without a draw."
                 : "Unused by this gating function (only _switch_gating and _switch_max_gating sample).")
      .cites(gating)
      .known_as({"moe_switch_temperature", "moe_rand_1_temperature"})
      .renamed({"rand_1_temperature"}, mtf_rename_commit())
      .about("gate_noise");
  table.number("switch_jitter", &P::switch_jitter)
      .defaults_to(1e-2)
      .between(0.0, 1.0)
      .train_only()
      .means("Epsilon of input_jitter: router inputs times U[1 - eps, 1 + eps) when training; 0 perturbs nothing.")
      .cites(gating)
      .known_as({"moe_switch_jitter", "moe_rand_1_jitter"})
      .renamed({"rand_1_jitter"}, mtf_rename_commit())
      .about("jitter");
  table.optional_integer("num_microbatches", &P::num_microbatches)
      .defaults_to(1)
      .between(1, kMaxHparamExtent)
      .means(
          "Number of microbatches (MoE1D passes the context's, default 1): the loss is divided by it when > 1; null "
          "is a direct call with None.")
      .cites(gating)
      .about("num_microbatches");
}

// Fails naming inputs.importance when the config does not supply it, for a
// gating function that reads importance unconditionally where `why` says.
void mtf_require_importance(const MtfGatingInputs& in, const std::string& variant, const std::string& why);

// gate_logits = mtf.layers.dense(gate_inputs, experts_dim, use_bias=False),
// after the perturbation block `kind` under `policy`. Records the draws
// (inputs input_dropout_uniform or input_jitter_uniform, [G, S, M]), the steps
// jitter_noise and gate_inputs when the block perturbs, and step "logits".
// Supplied logits stand for gate_logits (the router output, perturbation
// included): nothing is drawn then.
const Tensor& mtf_switch_gate_logits(Frame& frame, const MtfGatingInputs& in, const std::string& policy,
                                     const MtfSwitchRouterHparams& hparams, MtfRouterPerturbation kind);

// The expert each token chose (SELECT EXPERT of _switch_gating and _switch_max_gating).
struct MtfSwitchChoice {
  const Tensor* raw_gates;     // [G, S, E] float32
  const Tensor* expert_index;  // [G, S] int32
  const Tensor* expert_gate;   // [G, S] float32
  const Tensor* expert_mask;   // [G, S, E] int32
};

// raw_gates = mtf.softmax(gate_logits, experts_dim); then by policy:
//   argmax, input_dropout, input_jitter: expert_gate, expert_index = mtf.top_1(raw_gates)
//     (and the "expert_gate" summary when training: step expert_gate_summary);
//   sample: expert_index = mtf.sample_with_temperature(gate_logits, E, switch_temperature)
//     (draw sample_uniform [G, S, E]; steps gumbel_uniform, gumbel, sample_logits when the
//     temperature is not 0), expert_gate = mtf.gather(raw_gates, expert_index);
// expert_mask = mtf.one_hot(expert_index, experts_dim).
MtfSwitchChoice mtf_switch_choose_expert(Frame& frame, const Tensor& gate_logits, const std::string& policy,
                                         const MtfSwitchRouterHparams& hparams);

// The load-balancing loss block and what it leaves behind.
struct MtfLoadBalance {
  const Tensor* expert_mask;  // [G, S, E] or [G, S, K, E], importance-masked when importance is given
  const Tensor* expert_gate;  // [G, S] or [G, S, K], likewise
  const Tensor* loss;         // [] the loss after num_microbatches
};

// LOAD BALANCING LOSS of _switch_gating, _switch_max_gating and _ntlb_gating:
//   density_1 = reduce_mean(expert_mask, group_size_dim)          [G, E] or [G, K, E]
//   density_1_proxy = reduce_mean(raw_gates, group_size_dim)      [G, E]
//   with importance: a = cast(equal(importance, 1.0)); expert_mask *= a; expert_gate *= a;
//     density_1_proxy *= a                                         [G, E, S] (union of dims)
//   loss = reduce_mean(density_1_proxy * density_1) * float(E * E)
//   loss /= num_microbatches when num_microbatches > 1.
MtfLoadBalance mtf_switch_load_balancing(Frame& frame, const Tensor& raw_gates, const Tensor& expert_mask,
                                         const Tensor& expert_gate, const Tensor* importance,
                                         const std::optional<int64_t>& num_microbatches);

// # Logging, when training: entropy = reduce_sum(-raw_gates * log(raw_gates + 1e-9), E) [G, S],
// batch_entropy = reduce_mean(entropy) (summary "<name>/entropy"), mask_count_experts [E],
// expert_fraction = mask_count_experts / total_routed [E] (summaries "experts/..."),
// aux_loss = reduce_mean(loss). expert_mask is the importance-masked mask.
void mtf_switch_logging(Frame& frame, const Tensor& raw_gates, const Tensor& expert_mask, const Tensor& loss);

// The first half of _switch_gating and _switch_max_gating, which state it alike:
// # SELECT EXPERT (the perturbation, gate_logits, raw_gates, expert_index and
// expert_gate by policy, expert_mask), # LOAD BALANCING LOSS, and # Logging when
// training. The blocks above, in that order.
struct MtfSwitchTop1 {
  const Tensor* gate_logits;  // [G, S, E] step "logits"
  MtfSwitchChoice choice;
  MtfLoadBalance balance;
};
MtfSwitchTop1 mtf_switch_top_1(Frame& frame, const MtfGatingInputs& in, const std::string& policy,
                               const MtfSwitchRouterHparams& hparams);

// The "fraction_routed" summary, when training: total_routed / reduce_sum(importance),
// a tensor division (total_routed * reciprocal(sum)). `reads` are what total_routed counts.
void mtf_fraction_routed(Frame& frame, int64_t total_routed, const Reads& reads, const Tensor& importance);

// expert_gate_probs, expert_gate_indices = mtf.top_k(x, reduced_dim=group_size_dim,
// k_dim=expert_capacity_dim) for x [G, S, E]: each expert's C best tokens, best first.
// Records expert_gate_indices [G, E, C] (the decision, near-tie forcible) and
// expert_gate_probs [G, E, C]. Fails naming dims.C when mtf.top_k raises (C > S, C >= 5).
struct MtfTokenTopK {
  const Tensor* expert_gate_indices;  // [G, E, C] int32
  const Tensor* expert_gate_probs;    // [G, E, C] float32
};
MtfTokenTopK mtf_token_top_k(Frame& frame, const Tensor& x, const std::string& variant);

// dispatch_tensor = one_hot(expert_gate_indices, group_size_dim) as [G, S, E, C] int32.
Tensor mtf_token_one_hot(const Tensor& expert_gate_indices, int64_t S);

// Where the checker forced choices (near-tie replay) in a ranked top-k row of k:
// forced[c] in [0, n) takes that entry at rank c; the other ranks keep the
// reference's order without the forced entries. values[c] becomes the row's
// value at a changed rank. row[j * stride] is entry j.
void mtf_force_ranking(const int32_t* forced, int64_t k, int64_t n, const float* row, int64_t stride, float* values,
                       int32_t* indices);

// The near tie of a ranked choice: `query.step` [..., K] holds, per rank, an
// index into a row of `scores_step` [G, S, E]. rows_over_s: the rows are
// columns [g, :, e] and the decision is [G, E, C] (an expert's tokens);
// otherwise the rows are [g, s, :] and the decision is [G, S, K]. Margin:
// |reference's score at that rank - the candidate's entry's score|.
std::optional<NearTie> mtf_ranked_near_tie(const NearTieQuery& query, const std::string& scores_step, bool rows_over_s);

// The near tie of expert_index under `policy`: top-1 over raw_gates, or under
// sample over sample_logits (or logits when the temperature is 0).
std::optional<NearTie> mtf_switch_expert_index_near_tie(const NearTieQuery& query,
                                                        const MtfSwitchRouterHparams& hparams);

}  // namespace moeref
