// The glossary's topics: each idea once, in plain words, with the names the
// implementations give it. moeref's own spellings come from the declarations
// (.about("KEY") in src/variants/ and include/moeref/layers/); this table adds the
// names of implementations, or parts of them, that moeref does not run.
//
// Sources, read at the commits of /work/shared/notes and the spec pages:
//   mtf        tensorflow/mesh mesh_tensorflow/transformer/moe.py (MoE1D, MoE2D)
//   lingvo     tensorflow/lingvo lingvo/core/gshard_builder.py (MoEBuilder params),
//              gshard_layers.py
//   praxis     google/praxis praxis/layers/transformers.py (TransformerFeedForwardMoe)
//   flaxformer google/flaxformer flaxformer/architectures/moe/{moe_layers,routing}.py
//   t5x        the gin macros of flaxformer/t5x/configs/moe/ and t5x/contrib/moe/models.py
//   st-moe     lucidrains/st-moe-pytorch st_moe_pytorch/st_moe_pytorch.py
//   DeepSpeed  microsoft/DeepSpeed deepspeed/moe/layer.py (MoE), sharded_moe.py
//   HF         huggingface/transformers SwitchTransformersConfig, NllbMoeConfig
//   fairseq    facebookresearch/fairseq moe branch: --moe-* command-line flags,
//              fairseq/modules/moe/top1gate.py, top2gate.py
//   Tutel      microsoft/tutel tutel/impls/moe_layer.py (moe_layer: gate_type, experts)
//   megablocks databricks/megablocks megablocks/layers/arguments.py (Arguments)
// A name here is the setting's name in that implementation (a constructor argument,
// config field, gin macro or flag); an empty list means it has no such setting.

#include "moeref/teach/hparam_topics.hpp"

#include <utility>

namespace moeref {

namespace {

const char* const kGroups = "Groups and tokens";
const char* const kCapacity = "Capacity";
const char* const kChoosing = "Choosing experts";
const char* const kNoise = "Router noise";
const char* const kLosses = "Losses";
const char* const kExperts = "Experts";
const char* const kNumbers = "Number formats and training tricks";

std::vector<HparamTopic> make_topics() {
  return {
      // ---- Groups and tokens --------------------------------------------------------------
      {"grouping",
       "Routing groups",
       kGroups,
       "The batch's tokens are cut into groups that are routed separately: capacity, slot positions and "
       "the balancing statistics are all computed per group. Bigger groups balance the load better, but "
       "the dispatch and combine tensors grow as S·E·C per group.",
       "",
       {{"t5x", {"GROUP_SIZE"}, "gin macro for MoeLayer.max_group_size (4096)"},
        {"lingvo", {"num_groups"}, "MoEBuilder: G fixed, S = tokens / G"},
        {"st-moe-pytorch", {}, "no setting: a group is one sequence (one batch row)"},
        {"DeepSpeed", {}, "no setting: all tokens of the local call form one group"},
        {"Hugging Face", {}, "no setting: Switch routes one sequence per group, NLLB-MoE all tokens of the call"},
        {"fairseq", {}, "no setting: all tokens on the worker, padded to a common length"},
        {"Tutel", {}, "no setting: all tokens of the call"},
        {"megablocks", {}, "no setting: all tokens of the call"}}},
      {"device_split",
       "Groups across devices",
       kGroups,
       "How many devices (or replicas) share the routing: the number of groups must be a multiple of it, "
       "so that each device routes whole groups.",
       "",
       {{"mtf", {}, "comes from the layout: mtf.tensor_dim_to_mesh_dim_size in transformer_moe_layer_v1"},
        {"flaxformer",
         {"num_expert_partitions", "num_model_partitions"},
         "MoeLayer; replicas = devices / their product"},
        {"t5x", {"NUM_EXPERT_PARTITIONS"}, "gin macro"},
        {"DeepSpeed", {"ep_size"}, "expert-parallel group size"},
        {"megablocks", {"moe_expert_model_parallelism"}, ""}}},

      // ---- Capacity ------------------------------------------------------------------------
      {"capacity_factor",
       "Capacity factor",
       kCapacity,
       "How many slots each expert gets per group, as a multiple of its fair share of the group's tokens "
       "(S/E, or k·S/E where a library multiplies by the number of choices k). A factor above 1 leaves room "
       "for uneven routing; a choice that finds its expert full is dropped. Most implementations have one "
       "value for training and one for evaluation, where dropping hurts the measured quality.",
       "",
       {{"t5x", {"TRAIN_EXPERT_CAPACITY_FACTOR", "EVAL_EXPERT_CAPACITY_FACTOR"}, "gin macros for MoeLayer"},
        {"DeepSpeed",
         {"capacity_factor", "eval_capacity_factor"},
         "C = max(ceil(S/E · k·cf) in float32, min_capacity); train and eval"},
        {"Hugging Face",
         {"moe_eval_capacity_token_fraction"},
         "Switch has none (a fixed expert_capacity); NLLB-MoE in eval: C = ceil(fraction · tokens)"},
        {"fairseq",
         {"capacity_factor", "moe_eval_capacity_token_fraction"},
         "--capacity-factor: top-1 gate only, C = int(cf · ceil(S/E)) (top-2 uses 2·ceil(S/E)); "
         "--moe-eval-capacity-token-fraction (0.25): in eval C = ceil(fraction · S)"},
        {"Tutel",
         {"capacity_factor"},
         "gate_type entry: C = k · int(cf · ceil(S/E)); 0 sizes C to the largest load, < 0 caps that at -cf"},
        {"megablocks", {"moe_capacity_factor"}, "capacity mode: C = int(cf · k · tokens / E); dMoE has none"}}},
      {"min_capacity",
       "Minimum capacity",
       kCapacity,
       "A floor on the capacity C, so that tiny groups still get a few slots per expert. It lets C exceed the "
       "group size S.",
       "",
       {{"lingvo", {}, "no setting: an automatic capacity of 0 becomes 4"},
        {"praxis", {}, "no setting and no floor: C = 0 is possible"},
        {"st-moe-pytorch", {"MIN_EXPERT_CAPACITY"}, "a module constant, 4"},
        {"DeepSpeed", {"min_capacity"}, "4 in MoE, 8 in TopKGate"}}},
      {"explicit_capacity",
       "Explicit capacity",
       kCapacity,
       "A number of slots per expert per group given directly, instead of (or as a lower bound for) the "
       "capacity factor's rule.",
       "",
       {{"lingvo", {"c_dim"}, "MoEBuilder; the capacity factor overrides it"},
        {"Hugging Face",
         {"expert_capacity"},
         "Switch: 64 per sequence, no capacity factor; NLLB-MoE: 64, null means 2 · ceil(tokens / E)"}}},
      {"dropless",
       "Dropless routing",
       kCapacity,
       "Whether capacity drops tokens at all. A dropless layer sizes each expert's batch to the tokens it "
       "receives, so no choice is ever dropped.",
       "every moeref variant in this glossary drops choices beyond its capacity C; a capacity C >= S "
       "(for example through a large capacity factor) drops nothing",
       {{"DeepSpeed", {"drop_tokens"}, "True; False sizes C to the largest expert load"},
        {"Tutel", {"capacity_factor"}, "0: dynamic capacity, nothing dropped"},
        {"megablocks", {"moe_capacity_factor"}, "dMoE is dropless; in MoE a capacity of 0 means no drops"}}},

      // ---- Choosing experts ----------------------------------------------------------------
      {"num_experts",
       "Number of experts",
       kChoosing,
       "E, how many expert networks the layer has.",
       "the dim `E` of a config's `dims`; `mtf_moe2d` takes its two levels as `expert_x` and `expert_y`",
       {{"mtf", {"num_experts", "moe_num_experts"}, "MoE1D; MoE2D passes [expert_x, expert_y]"},
        {"lingvo", {"e_dim"}, "MoEBuilder"},
        {"praxis", {"num_experts"}, "TransformerFeedForwardMoe"},
        {"flaxformer", {"num_experts"}, "MoeLayer"},
        {"t5x", {"NUM_EXPERTS"}, "gin macro"},
        {"st-moe-pytorch", {"num_experts", "num_gates"}, "MoE; TopNGating"},
        {"DeepSpeed", {"num_experts"}, ""},
        {"Hugging Face", {"num_experts"}, ""},
        {"fairseq", {"moe_expert_count"}, "--moe-expert-count"},
        {"Tutel", {"count_per_node"}, "in `experts`: experts per device"},
        {"megablocks", {"moe_num_experts"}, ""}}},
      {"top_k",
       "Experts per token (k)",
       kChoosing,
       "How many experts each token asks for: 1 (Switch), 2 (GShard) or more. The choices are ranked, and "
       "the lower ranks queue for slots after the higher ones.",
       "",
       {{"mtf", {}, "fixed by the gating function: top_2 asks for 2, switch and switch_max for 1"},
        {"lingvo", {}, "fixed: Top2GatingOnLogits asks for 2"},
        {"praxis", {}, "fixed: gating_func 'top2' asks for 2"},
        {"t5x", {"NUM_SELECTED_EXPERTS"}, "gin macro"},
        {"DeepSpeed", {"k"}, "1: top1gating, 2: top2gating, more: topkgating"},
        {"Hugging Face", {}, "fixed by the router class: Switch 1, NLLB-MoE 2"},
        {"fairseq", {"moe_top1_expert"}, "--moe-top1-expert: top-1 instead of the default top-2"},
        {"Tutel", {"k"}, "in gate_type"},
        {"megablocks", {"moe_top_k"}, ""}}},
      {"gating_function",
       "Routing algorithm",
       kChoosing,
       "Which routing algorithm the layer runs: tokens choose experts (top-k), experts choose tokens, "
       "hashing, and the form in which the routing is returned.",
       "the variant id, a config's `variant` (`moeref variants` lists them); a config that gives mtf's "
       "`moe_gating` is refused with the variant it stands for",
       {{"mtf",
         {"moe_gating"},
         "top_2, switch, ntlb, switch_max, expert_selection; before b1b5364 rand_1 was today's switch and "
         "switch was today's ntlb"},
        {"lingvo", {"gating_func"}, "ComputeGating: top_2, hashing, token_shuffle_v2, ..."},
        {"praxis", {"gating_func"}, "top2, expert_choice, expert_choice_v2, dense_top2"},
        {"DeepSpeed", {"k"}, "picks top1gating, top2gating or topkgating"},
        {"Tutel", {"type"}, "in gate_type: top, cosine_top"}}},
      {"second_expert_policy",
       "Second-expert policy",
       kChoosing,
       "What happens to a token's second choice: always kept, never kept, kept only when its gate is above "
       "a threshold, kept at random with a probability that grows with its gate, or drawn by sampling "
       "instead of taken greedily.",
       "",
       {{"lingvo", {"second_expert_policy"}, "MoEBuilder"},
        {"st-moe-pytorch", {}, "no setting: every rank after the first is kept at random (see the threshold)"},
        {"DeepSpeed", {"top2_2nd_expert_sampling"}, "True: Gumbel-sample the second expert, in training and eval"},
        {"Hugging Face", {"second_expert_policy"}, "NLLB-MoE: all (default), sampling, random"},
        {"fairseq",
         {"moe_second_expert_policy"},
         "--moe-second-expert-policy: sampling (default), random (keep iff 2 · gate_2 > U), all"},
        {"Tutel", {}, "no setting: every top-k choice is kept"}}},
      {"second_expert_threshold",
       "Second-expert threshold",
       kChoosing,
       "The t of the threshold and random policies: keep a token's second (or later) choice when its gate is "
       "above t, or at random with probability min(1, gate / t).",
       "",
       {{"lingvo", {"second_expert_threshold"}, "MoEBuilder"},
        {"Hugging Face", {}, "no setting: NLLB-MoE's random policy keeps iff 2 · gate_2 > U"},
        {"fairseq", {}, "no setting: the random policy keeps iff 2 · gate_2 > U"}}},
      {"gate_renormalization",
       "Gate renormalisation",
       kChoosing,
       "Whether a token's chosen gates are rescaled to sum to 1, and when: before capacity drops its choices "
       "(a token that loses its second expert keeps a first gate below 1) or after (its first gate becomes 1).",
       "",
       {{"mtf", {}, "no setting: always before the drop"},
        {"flaxformer", {}, "no setting: never (raw probabilities)"},
        {"st-moe-pytorch", {}, "no setting: always before any drop"},
        {"DeepSpeed", {}, "no setting: top-2 and top-k after the drop, top-1 never"},
        {"Hugging Face", {"normalize_router_prob_before_dropping"}, "NLLB-MoE; Switch never renormalises"},
        {"fairseq",
         {"moe_normalize_gate_prob_before_dropping"},
         "--moe-normalize-gate-prob-before-dropping; default after the drop"},
        {"Tutel", {"normalize_gate"}, "True: before any drop"},
        {"megablocks", {"moe_normalize_expert_weights"}, "p of a p-norm; None keeps raw probabilities"}}},
      {"gate_epsilon",
       "Epsilon of the gate sum",
       kChoosing,
       "A small number that keeps a division by a sum of gates, or by a threshold, away from zero.",
       "",
       {{"mtf", {}, "hard-wired: denom = gate_1 + gate_2 + 1e-9"},
        {"lingvo", {}, "hard-wired 1e-9 (legacy renormalisation, threshold floor)"},
        {"DeepSpeed", {}, "hard-wired: the float32 machine epsilon"},
        {"fairseq", {}, "hard-wired: the float32 machine epsilon"}}},
      {"slot_priority",
       "Slot priority",
       kChoosing,
       "In what order tokens claim an expert's slots: token order (earlier tokens first, first choices "
       "before second choices), batch-prioritized routing (the tokens whose top choice is most confident "
       "first), or a random subset.",
       "",
       {{"mtf", {}, "no setting: token order"},
        {"lingvo", {}, "no setting: token order"},
        {"praxis", {}, "no setting: token order"},
        {"t5x", {"batch_prioritized_routing"}, "gin: True for the encoder, False for the decoder"},
        {"st-moe-pytorch", {}, "no setting: token order"},
        {"DeepSpeed", {"use_rts"}, "random token selection (top-1): a random subset keeps its slots"},
        {"Hugging Face", {"batch_prioritized_routing"}, "NLLB-MoE"},
        {"fairseq", {"moe_batch_prioritized_routing"}, "--moe-batch-prioritized-routing"},
        {"Tutel", {"batch_prioritized_routing"}, ""}}},
      {"masked_experts",
       "Masked experts",
       kChoosing,
       "Experts that may never be chosen: their logits are pushed to a huge negative value before the "
       "softmax (for example padding experts that fill out a device mesh).",
       "",
       {}},
      {"logit_cap",
       "Router logit cap",
       kChoosing,
       "Soft-caps the router logits as cap · tanh(logits / cap), so that no logit grows without bound.",
       "",
       {}},
      {"router_bias",
       "Router bias",
       kChoosing,
       "Whether the router, the linear map from a token to one score per expert, has a bias term.",
       "",
       {{"mtf", {}, "no setting: no bias"},
        {"st-moe-pytorch", {}, "no setting: no bias"},
        {"Hugging Face", {"router_bias"}, "Switch, default False"}}},
      {"padding",
       "Padding tokens",
       kChoosing,
       "Whether padding positions, which are not real tokens, are kept out of routing and out of the losses.",
       "for the mtf, lingvo and praxis variants padding is an input, not a hyperparameter: `importance` "
       "(mtf's nonpadding) or `paddings`",
       {{"mtf", {}, "the input nonpadding (Context.nonpadding)"},
        {"lingvo", {}, "the input paddings"},
        {"praxis", {}, "the input paddings"},
        {"DeepSpeed", {}, "the used_token argument (top-1)"},
        {"Hugging Face",
         {"router_ignore_padding_tokens"},
         "Switch: stored but unused; NLLB-MoE: reads the padding mask only when it is False"},
        {"fairseq", {}, "the input_mask argument (--use-moe-pad-mask)"}}},

      // ---- Router noise --------------------------------------------------------------------
      {"router_policy",
       "Router noise policy",
       kNoise,
       "For top-1 routers: how the router is perturbed while training so that it explores other experts: no "
       "noise, dropout on its input, multiplicative jitter on its input, or sampling the expert.",
       "",
       {{"flaxformer", {}, "jitter only (jitter_noise)"},
        {"DeepSpeed", {"noisy_gate_policy"}, "None, Jitter (input × U(1 ± 0.01)), RSample (Gumbel top-1)"},
        {"Hugging Face", {}, "jitter only (router_jitter_noise)"}}},
      {"jitter",
       "Router input jitter",
       kNoise,
       "ε of multiplicative noise U(1 − ε, 1 + ε) on the router's input during training. It should reach the "
       "router only, not the experts.",
       "",
       {{"t5x", {"JITTER_NOISE"}, "gin macro, 0.0"},
        {"DeepSpeed", {"noisy_gate_policy"}, "the Jitter policy, ε fixed at 0.01"},
        {"Hugging Face",
         {"router_jitter_noise"},
         "Switch, 0.01; applied in place, so the experts see it too (huggingface/transformers#33969)"},
        {"Tutel", {}, "no jitter: gate_noise adds Gaussian noise to the logits instead"},
        {"megablocks", {"moe_jitter_eps"}, ""}}},
      {"router_input_dropout",
       "Router input dropout",
       kNoise,
       "The drop rate of dropout on the router's input, a form of router noise during training.",
       "",
       {}},
      {"gate_noise",
       "Sampling noise on the logits",
       kNoise,
       "Noise added to the router logits so that the expert is sampled rather than picked: with Gumbel noise, "
       "argmax(logits + noise) is a sample from the softmax; its scale is a temperature.",
       "",
       {{"lingvo", {"second_expert_policy"}, "'sampling': Gumbel noise for the second expert only"},
        {"praxis", {}, "second_expert_policy 'sampling': Gumbel noise for the second expert only"},
        {"DeepSpeed", {"noisy_gate_policy", "top2_2nd_expert_sampling"}, "RSample (top-1); top-2's second expert"},
        {"fairseq", {}, "--moe-second-expert-policy sampling: Gumbel noise for the second expert"},
        {"Tutel", {"gate_noise"}, "in gate_type: Gaussian σ · N(0, 1) / E on the logits, training only"}}},

      // ---- Losses --------------------------------------------------------------------------
      {"balance_loss_coef",
       "Balancing-loss weight",
       kLosses,
       "The weight with which the auxiliary load-balancing loss, lowest when the experts get equal shares of "
       "the tokens, is added to the model's loss.",
       "",
       {{"lingvo", {"aux_loss_coef"}, "task params, 0.01"},
        {"t5x", {"aux_loss_factor", "AUX_LOSS_FACTOR"}, "MoeEncoderDecoderModel; gin 0.01"},
        {"DeepSpeed", {}, "no setting: the layer returns l_aux and the caller scales it"},
        {"Hugging Face", {"router_aux_loss_coef"}, "0.001"},
        {"fairseq", {"moe_gate_loss_wt"}, "--moe-gate-loss-wt"},
        {"Tutel", {}, "no setting: the layer returns l_aux; is_gshard_loss picks its formula"},
        {"megablocks", {"moe_loss_weight"}, "0.1"}}},
      {"second_place_loss",
       "Second-place balancing loss",
       kLosses,
       "Also balance the second choices: add half of a balancing loss computed on them.",
       "",
       {}},
      {"z_loss_coef",
       "Router z-loss weight",
       kLosses,
       "The weight of the router z-loss, the mean of (log Σ exp logits)², which keeps the router logits small "
       "and training stable (ST-MoE).",
       "",
       {{"t5x", {"router_z_loss_factor", "ROUTER_Z_LOSS_FACTOR"}, "MoeEncoderDecoderModel; gin 0.0 (ST-MoE: 1e-4)"},
        {"Hugging Face", {"router_z_loss_coef"}, "Switch, 0.001 (NLLB-MoE defines it but does not use it)"},
        {"megablocks", {"moe_zloss_weight"}, "later versions"}}},
      {"num_microbatches",
       "Microbatches",
       kLosses,
       "With gradient accumulation over several microbatches, the gating loss is divided by their number so "
       "that the accumulated loss keeps its scale.",
       "",
       {{"mtf", {"num_microbatches"}, "Context.num_microbatches"}}},

      // ---- Experts -------------------------------------------------------------------------
      {"expert_hidden",
       "Expert hidden size",
       kExperts,
       "H, the hidden width of each expert's feed-forward network.",
       "the dim `H` of a config's `dims`",
       {{"mtf", {"hidden_size", "moe_hidden_size"}, "MoE1D, MoE2D"},
        {"lingvo", {"moe_hidden_dim"}, "MoEBuilder"},
        {"praxis", {"hidden_dims"}, "TransformerFeedForwardMoe"},
        {"flaxformer", {"intermediate_dim"}, "the expert MlpBlock"},
        {"t5x", {"EXPERT_MLP_DIM"}, "gin macro"},
        {"Hugging Face", {"d_ff"}, "Switch"},
        {"Tutel", {"hidden_size_per_expert"}, "in `experts`"},
        {"megablocks", {"ffn_hidden_size"}, ""}}},
      {"activation",
       "Expert activation",
       kExperts,
       "The nonlinearity inside each expert. A list of several builds a gated (GLU-style) expert: one input "
       "projection per entry, multiplied together.",
       "",
       {{"st-moe-pytorch", {}, "no setting: GEGLU experts"},
        {"DeepSpeed", {}, "no setting: the caller supplies the expert module"},
        {"Hugging Face", {"dense_act_fn"}, "Switch"},
        {"Tutel", {"activation_fn"}, "in `experts`"},
        {"megablocks", {"activation_fn"}, ""}}},
      {"expert_bias",
       "Expert biases",
       kExperts,
       "Whether each expert's dense layers add a bias vector (one per expert) after their matrix product.",
       "",
       {{"mtf", {}, "no setting: no biases"},
        {"st-moe-pytorch", {}, "no setting: no biases"},
        {"Hugging Face", {}, "no setting: Switch's experts have no biases, NLLB-MoE's fc1 and fc2 have them"}}},
      {"gate_application",
       "Where the gate weight is applied",
       kExperts,
       "The gate weight of a choice scales either the expert's output, when the outputs are combined (the "
       "usual way), or the token's input to the expert, before the expert runs; with a nonlinear expert the "
       "two give different outputs.",
       "",
       {{"mtf", {}, "no setting: the output (combine)"}, {"DeepSpeed", {}, "no setting: the output (combine)"}}},
      {"expert_dropout",
       "Dropout inside the experts",
       kExperts,
       "Dropout on the experts' hidden activations, during training only.",
       "",
       {{"lingvo", {"moe_dropout_rate"}, "MoEBuilder"},
        {"flaxformer", {"intermediate_dropout_rate"}, "the expert MlpBlock"},
        {"t5x", {"EXPERT_DROPOUT_RATE"}, "gin macro"},
        {"Hugging Face", {"moe_token_dropout"}, "NLLB-MoE: drops a token's whole expert output instead"}}},
      {"output_dim",
       "Expert output width",
       kExperts,
       "N, the width of the experts' outputs; by default the model width, so the layer replaces a dense "
       "feed-forward layer.",
       "",
       {{"Tutel", {"output_dim"}, "in `experts`"}}},
      {"experts_attention",
       "Experts attention",
       kExperts,
       "mtf's expert-attention layers: the MoE layer returns two outputs (queries and keys) from two output "
       "projections of the same hidden state.",
       "not modelled",
       {{"mtf", {"use_experts_attention", "moe_use_experts_attention"}, "MoE1D"}}},
      {"moe_block",
       "The block around the MoE layer",
       kExperts,
       "Layers that wrap the MoE layer: normalisation, the residual connection, extra dense feed-forward "
       "layers before or after it.",
       "",
       {{"flaxformer", {"extra_mlp"}, "SparseEncoderLayer / SparseDecoderLayer (the ST-MoE configs)"},
        {"DeepSpeed", {"use_residual"}, "PR-MoE: a dense MLP beside the experts, mixed by a learned coefficient"}}},
      {"sparse_layers",
       "Which layers are MoE layers",
       kExperts,
       "In a Transformer, which feed-forward layers are replaced by MoE layers (for example every other one).",
       "not modelled: moeref runs one layer",
       {{"t5x", {"NUM_ENCODER_SPARSE_LAYERS", "NUM_DECODER_SPARSE_LAYERS"}, "gin macros; layout MIXED"},
        {"Hugging Face", {"encoder_sparse_step", "decoder_sparse_step"}, ""},
        {"fairseq", {"moe_freq"}, "--moe-freq"}}},

      // ---- Number formats and training tricks ----------------------------------------------
      {"dtype",
       "Router and routing number formats",
       kNumbers,
       "The floating-point type of the router's computation and of the routing tensors. bfloat16 saves memory "
       "and bandwidth but rounds the gates (and, in counts, loses positions above 256).",
       "",
       {{"lingvo", {"fprop_dtype", "mask_dtype"}, "Top2GatingOnLogits arguments"},
        {"t5x", {"MOE_TRUNCATED_DTYPE"}, "gin macro, bfloat16"},
        {"DeepSpeed", {}, "no setting: the gate runs in float32"},
        {"Hugging Face", {"router_dtype"}, "float32"},
        {"fairseq", {"moe_gating_use_fp32"}, "--moe-gating-use-fp32"},
        {"Tutel", {"fp32_gate"}, "in gate_type"},
        {"megablocks", {"moe_lbl_in_fp32"}, "the balancing loss only"}}},
      {"straight_through",
       "Straight-through dispatch",
       kNumbers,
       "Makes the 0/1 dispatch tensor carry the combine weights' gradient (dispatch + combine − "
       "stop_gradient(combine)); the same values in the forward pass up to rounding.",
       "",
       {}},
      {"differentiable_topk",
       "Differentiable top-k",
       kNumbers,
       "Replaces the gate values of the top-k choices by a differentiable relaxation (CoLT5's coordinate "
       "descent).",
       "",
       {}},
  };
}

}  // namespace

const std::vector<std::string>& glossary_implementations() {
  static const std::vector<std::string> implementations = {"mtf",     "lingvo",         "praxis",    "flaxformer",
                                                           "t5x",     "st-moe-pytorch", "DeepSpeed", "Hugging Face",
                                                           "fairseq", "Tutel",          "megablocks"};
  return implementations;
}

std::string implementation_of_variant(const std::string& variant_id) {
  static const std::vector<std::pair<std::string, std::string>> origins = {
      {"mtf", "mtf"},         {"lingvo", "lingvo"},        {"praxis", "praxis"},        {"flaxformer", "flaxformer"},
      {"t5x", "t5x"},         {"stmoe", "st-moe-pytorch"}, {"deepspeed", "DeepSpeed"},  {"hf", "Hugging Face"},
      {"fairseq", "fairseq"}, {"tutel", "Tutel"},          {"megablocks", "megablocks"}};
  const std::string origin = variant_id.substr(0, variant_id.find('_'));
  for (const auto& [prefix, name] : origins) {
    if (origin == prefix) return name;
  }
  return origin;
}

const std::vector<HparamTopic>& hparam_topics() {
  static const std::vector<HparamTopic> topics = make_topics();
  return topics;
}

const std::vector<std::string>& glossary_themes() {
  static const std::vector<std::string> themes = {kGroups, kCapacity, kChoosing, kNoise, kLosses, kExperts, kNumbers};
  return themes;
}

const HparamTopic* find_hparam_topic(const std::string& key) {
  for (const HparamTopic& topic : hparam_topics()) {
    if (topic.key == key) return &topic;
  }
  return nullptr;
}

}  // namespace moeref
