// stmoe_topn: the top-n gating of lucidrains/st-moe-pytorch, literal to the source.
//
// Source: lucidrains/st-moe-pytorch at d94e65d (d94e65d8a1f50eb5b41efa5317b0d1b17c9dbfad),
//   st_moe_pytorch/st_moe_pytorch.py: TopNGating.__init__ and .forward (the gate),
//   cumsum_exclusive, gumbel_noise, log, safe_one_hot; the layers MoE and
//   SparseMoEBlock are in layers/stmoe_moe_layer.hpp.
// Spec: spec/variants/stmoe_topn.md.
//
// Dims: G groups = the source's b (one group per sequence), S group size = n,
//       E experts (num_gates), C expert capacity, M model dim (dim), K = top_n.
//
// Each step is one statement (or a few) of TopNGating.forward, in the source's
// order, under the source's variable name. The source keeps the top-n dim first
// ('... k -> k ...'), so do the rank-major steps: [K, G, S]. Where the source
// reassigns a variable (gates /= denom, mask *= ...), the trace keeps every
// version under a suffix naming the stage. The loop `for n in range(top_n)`
// records one set of steps per rank, suffixed with the loop's n (0 = the first
// choice, the source's mask_1). Masks, positions and counts are float32 0/1 and
// integer values in the source; they are exact integers, so moeref stores them
// as int32.

#include <algorithm>
#include <cmath>
#include <optional>
#include <string>
#include <vector>

#include "moeref/error.hpp"
#include "moeref/frame/define_variant.hpp"
#include "moeref/frame/routing_index_form.hpp"
#include "moeref/layers/stmoe_moe_layer.hpp"
#include "moeref/ops/cumsum.hpp"
#include "moeref/ops/dispatch_tensor.hpp"
#include "moeref/ops/mtf_capacity.hpp"
#include "moeref/ops/one_hot.hpp"
#include "moeref/ops/router.hpp"
#include "moeref/ops/stmoe_combine.hpp"
#include "moeref/ops/switch_balance_loss.hpp"
#include "moeref/ops/top_k.hpp"
#include "moeref/ops/torch_softmax.hpp"

namespace moeref {

namespace {

// MIN_EXPERT_CAPACITY, a module constant.
constexpr int64_t kMinExpertCapacity = 4;

// MoE's and SparseMoEBlock's hyperparameters, and TopNGating's own.
struct StmoeTopnHparams : StmoeLayerHparams {
  int64_t top_n = 2;
  double eps = 0.0;
  NumberOrList threshold_train;
  NumberOrList threshold_eval;
  double capacity_factor_train = 0.0;
  double capacity_factor_eval = 0.0;
  bool straight_through_dispatch_tensor = true;
  bool differentiable_topk = false;
  bool noise_gates = false;
  double noise_mult = 1.0;

  // TopNGating.forward picks these by self.training.
  const NumberOrList& threshold(bool train) const { return train ? threshold_train : threshold_eval; }
  double capacity_factor(bool train) const { return train ? capacity_factor_train : capacity_factor_eval; }
};

void declare_hparams(HparamTable<StmoeTopnHparams>& table) {
  using P = StmoeTopnHparams;
  const char* gate = "st_moe_pytorch.py: TopNGating";
  table.integer("top_n", &P::top_n)
      .defaults_to(2)
      .between(2, kMaxHparamExtent)
      .means("K: experts per token (TopNGating asserts top_n >= 2; torch.topk needs top_n <= E).")
      .cites(gate)
      .known_as({"gating_top_n"})
      .about("top_k");
  table.number("eps", &P::eps)
      .defaults_to(1e-9)
      .at_least(0.0)
      .means("Floor of the top-n gate sum and of every threshold; also rank 0's threshold.")
      .cites(gate)
      .about("gate_epsilon");
  table.number_or_list("threshold_train", &P::threshold_train)
      .defaults_to(0.2)
      .train_only()
      .means("Rank r >= 1 is kept iff U < gate_r / max(t_r, eps): one number for every rank, or top_n - 1 of them.")
      .cites(gate)
      .about("second_expert_threshold");
  table.number_or_list("threshold_eval", &P::threshold_eval)
      .defaults_to(0.2)
      .eval_only()
      .means("The same thresholds when train is false (evaluation keeps drawing U).")
      .cites(gate)
      .about("second_expert_threshold");
  table.number("capacity_factor_train", &P::capacity_factor_train)
      .defaults_to(1.25)
      .at_least(0.0)
      .train_only()
      .means("C = max(min(S, int(S * capacity_factor / E)), 4) when training.")
      .cites(gate)
      .about("capacity_factor");
  table.number("capacity_factor_eval", &P::capacity_factor_eval)
      .defaults_to(2.0)
      .at_least(0.0)
      .eval_only()
      .means("The same capacity factor when train is false.")
      .cites(gate)
      .about("capacity_factor");
  table.flag("straight_through_dispatch_tensor", &P::straight_through_dispatch_tensor)
      .defaults_to(true)
      .means("dispatch = (dispatch + combine) - combine in float32: 1 or 1 - 2^-24 where dispatched.")
      .cites(gate)
      .about("straight_through");
  table.flag("differentiable_topk", &P::differentiable_topk)
      .defaults_to(false)
      .means("CoLT5 coordinate-descent top-k gate values; not modelled (true is refused).")
      .cites(gate)
      .about("differentiable_topk");
  table.flag("noise_gates", &P::noise_gates)
      .defaults_to(false)
      .means("forward(noise_gates=True): add Gumbel noise to the gate logits, in training and evaluation alike.")
      .cites(gate)
      .about("gate_noise");
  table.number("noise_mult", &P::noise_mult)
      .defaults_to(1.0)
      .means("forward(noise_mult): the Gumbel noise is multiplied by it.")
      .cites(gate)
      .about("gate_noise");
  declare_stmoe_layer_hparams(table);
}

// threshold = torch.tensor([eps, *cast_tuple(threshold, top_n - 1)]).clamp(min=eps):
// float32, one per rank. A tuple of the wrong length fails the source's assert.
std::vector<float> rank_thresholds(const StmoeTopnHparams& hp, bool train) {
  const NumberOrList& given = hp.threshold(train);
  const size_t ranks_after_first = static_cast<size_t>(hp.top_n - 1);
  if (given.is_list && given.values.size() != ranks_after_first) {
    fail_input(std::string("hparams.") + (train ? "threshold_train" : "threshold_eval"),
               "a list of " + std::to_string(given.values.size()),
               "one number, or a list of top_n - 1 = " + std::to_string(ranks_after_first) + " numbers");
  }
  const float eps = static_cast<float>(hp.eps);
  std::vector<float> threshold = {eps};
  for (size_t r = 0; r < ranks_after_first; ++r)
    threshold.push_back(static_cast<float>(given.values[given.is_list ? r : 0]));
  for (float& t : threshold) t = std::max(t, eps);
  return threshold;
}

// TopNGating.forward(x, noise_gates, noise_mult): dispatch, combine and the two losses.
StmoeGatingOutputs top_n_gating(Frame& f, const StmoeTopnHparams& hp, const Tensor* x) {
  const int64_t G = f.dim("G"), S = f.dim("S"), E = f.dim("E"), C = f.dim("C"), K = f.dim("K");
  const int64_t T = G * S;
  const std::vector<float> threshold = rank_thresholds(hp, f.train());
  const float eps = static_cast<float>(hp.eps);

  // gate_logits = self.to_gates(x): Linear(dim, num_gates, bias=False), router_weights = weight.T.
  const Tensor* gate_logits = f.inputs().optional_input("gate_logits", {"G", "S", "E"}, {G, S, E});
  if (gate_logits != nullptr) {
    gate_logits = &f.step("gate_logits", {gate_logits}, *gate_logits);
  } else {
    const int64_t M = f.dim("M");
    const double bound = 1.0 / std::sqrt(static_cast<double>(M));  // nn.Linear's kaiming_uniform(a=sqrt(5))
    const Tensor& router_weights = f.inputs().float_input("router_weights", {"M", "E"}, {M, E}, -bound, bound);
    Tensor& computed = f.float32_step("gate_logits", {x, &router_weights}, {"G", "S", "E"});  // [G, S, E]
    ops::router_logits(x->f32.data(), router_weights.f32.data(), T, M, E, computed.f32.data());
    gate_logits = &computed;
  }

  // if noise_gates: noise = gumbel_noise(gate_logits) = -log(-log(U)), with log(t) =
  // torch.log(t.clamp(min=1e-20)); maybe_noised_gate_logits = gate_logits + noise * noise_mult
  const Tensor* maybe_noised_gate_logits = gate_logits;
  if (hp.noise_gates) {
    const Tensor& uniform = f.inputs().uniform_draw("gumbel_uniform", {"G", "S", "E"}, {G, S, E});
    Tensor& noise = f.float32_step("noise", {uniform}, {"G", "S", "E"});  // [G, S, E]
    auto clamped_log = [](float t) { return static_cast<float>(std::log(static_cast<double>(std::max(t, 1e-20f)))); };
    for (int64_t i = 0; i < T * E; ++i) noise.f32[i] = -clamped_log(-clamped_log(uniform.f32[i]));
    Tensor& noised = f.float32_step("maybe_noised_gate_logits", {gate_logits, noise}, {"G", "S", "E"});
    const float noise_mult = static_cast<float>(hp.noise_mult);
    for (int64_t i = 0; i < T * E; ++i) noised.f32[i] = gate_logits->f32[i] + noise.f32[i] * noise_mult;
    maybe_noised_gate_logits = &noised;
  }

  // raw_gates = maybe_noised_gate_logits.softmax(dim=-1)
  Tensor& raw_gates = f.float32_step("raw_gates", {maybe_noised_gate_logits}, {"G", "S", "E"});  // [G, S, E]
  ops::torch_softmax(maybe_noised_gate_logits->f32.data(), raw_gates.f32.data(), T, E);

  // topk_return = self.topk(raw_gates, k=top_n): torch.topk; gate_indices, gates =
  // rearrange('... k -> k ...'). moeref takes equal values in ascending index order
  // (torch leaves ties unspecified: a near tie, declared below).
  const Tensor* forced = f.forced_decision("gate_indices", {K, G, S});
  Tensor& gate_indices = f.int32_step("gate_indices", {raw_gates}, {"K", "G", "S"});    // [K, G, S]
  Tensor& gates = f.float32_step("gates", {raw_gates, gate_indices}, {"K", "G", "S"});  // [K, G, S]
  for (int64_t t = 0; t < T; ++t) {
    const float* row = raw_gates.f32.data() + t * E;
    std::vector<int32_t> order(static_cast<size_t>(K));
    ops::tf_top_k_indices(row, E, K, order.data());  // larger first, equal gates in expert order
    for (int64_t k = 0; k < K; ++k) {
      int32_t index = order[static_cast<size_t>(k)];
      const int32_t forced_index = forced != nullptr ? forced->i32[static_cast<size_t>(k * T + t)] : -1;
      if (forced_index >= 0 && forced_index < E) index = forced_index;
      gate_indices.i32[static_cast<size_t>(k * T + t)] = index;
      gates.f32[static_cast<size_t>(k * T + t)] = row[index];
    }
  }

  // mask = F.one_hot(gate_indices, num_gates).float(); mask_1 = mask[0] (for the balance loss).
  // mask_1 is a VIEW of mask[0]: the in-place `mask *= ...` and `mask[n] *= ...` below change it
  // too, so the balance loss sees rank 0 after its capacity drops (mask_0_capacity).
  const Tensor& mask = f.step("mask", {gate_indices}, ops::one_hot(gate_indices, E, "E"));  // [K, G, S, E]

  // denom = reduce(gates, 'k ... -> 1 ...', 'sum').clamp(min=eps); gates = gates / denom
  Tensor& denom = f.float32_step("denom", {gates}, {"G", "S"});  // [G, S]
  for (int64_t t = 0; t < T; ++t) {
    double sum = 0.0;
    for (int64_t k = 0; k < K; ++k) sum += static_cast<double>(gates.f32[static_cast<size_t>(k * T + t)]);
    denom.f32[t] = std::max(static_cast<float>(sum), eps);
  }
  Tensor& gates_normalized = f.float32_step("gates_normalized", {gates, denom}, {"K", "G", "S"});  // [K, G, S]
  for (int64_t i = 0; i < K * T; ++i) gates_normalized.f32[i] = gates.f32[i] / denom.f32[i % T];

  // probs = torch.zeros_like(gates).uniform_(0., 1.), one draw per rank (rank 0 included);
  // should_route = probs < gates / threshold.clamp(min=eps); should_route[0, ...] = True
  const Tensor& probs = f.inputs().uniform_draw("route_uniform", {"K", "G", "S"}, {K, G, S});
  const Tensor* forced_route = f.forced_decision("should_route", {K, G, S});
  Tensor& should_route = f.int32_step("should_route", {probs, gates_normalized}, {"K", "G", "S"});  // [K, G, S]
  for (int64_t i = 0; i < K * T; ++i) {
    const size_t rank = static_cast<size_t>(i / T);
    bool route = rank == 0 || probs.f32[i] < gates_normalized.f32[i] / threshold[rank];
    if (rank > 0 && forced_route != nullptr && forced_route->i32[i] >= 0) route = forced_route->i32[i] != 0;
    should_route.i32[i] = route ? 1 : 0;
  }
  // mask *= rearrange(should_route.float(), '... -> ... 1')
  Tensor& mask_routed = f.int32_step("mask_routed", {mask, should_route}, {"K", "G", "S", "E"});  // [K, G, S, E]
  for (int64_t i = 0; i < K * T * E; ++i) mask_routed.i32[i] = mask.i32[i] * should_route.i32[i / E];
  // mask_cumsum = cumsum_exclusive(mask, dim=-2): along the sequence, per rank and group
  Tensor reshaped = mask_routed;
  reshaped.dims = {"G", "S", "E"};
  reshaped.shape = {K * G, S, E};
  Tensor cumsum = ops::exclusive_cumsum_over_s(reshaped);
  cumsum.dims = {"K", "G", "S", "E"};
  cumsum.shape = {K, G, S, E};
  const Tensor& mask_cumsum = f.step("mask_cumsum", {mask_routed}, std::move(cumsum));  // [K, G, S, E]

  // for n in range(top_n): position_in_expert = (mask_cumsum[n] + prev_expert_count) * mask[n];
  // mask[n] *= (position_in_expert < expert_capacity_f); prev_expert_count += reduce(mask[n], sum
  // over n); position_in_expert = reduce(position_in_expert, sum over e). Rank-major queueing:
  // rank n queues behind every kept choice of ranks < n.
  const Tensor* prev_expert_count = nullptr;  // [G, E]; prev_expert_count = 0. before rank 0
  std::vector<const Tensor*> mask_kept, flat_positions;
  for (int64_t n = 0; n < K; ++n) {
    const std::string suffix = "_" + std::to_string(n);
    Tensor& position_in_expert =
        f.int32_step("position_in_expert" + suffix, {mask_cumsum, prev_expert_count, mask_routed}, {"G", "S", "E"});
    Tensor& mask_n = f.int32_step("mask" + suffix + "_capacity", {mask_routed, position_in_expert}, {"G", "S", "E"});
    for (int64_t i = 0; i < T * E; ++i) {
      const size_t at = static_cast<size_t>(n * T * E + i);
      const int32_t before = prev_expert_count ? prev_expert_count->i32[(i / (S * E)) * E + i % E] : 0;
      position_in_expert.i32[i] = (mask_cumsum.i32[at] + before) * mask_routed.i32[at];
      mask_n.i32[i] = position_in_expert.i32[i] < C ? mask_routed.i32[at] : 0;
    }
    Tensor& count = f.int32_step("prev_expert_count" + suffix, {mask_n, prev_expert_count}, {"G", "E"});  // [G, E]
    for (int64_t i = 0; i < T * E; ++i) count.i32[(i / (S * E)) * E + i % E] += mask_n.i32[i];
    for (int64_t i = 0; prev_expert_count != nullptr && i < G * E; ++i) count.i32[i] += prev_expert_count->i32[i];
    prev_expert_count = &count;
    flat_positions.push_back(&f.step("position_in_expert" + suffix + "_flat", {position_in_expert},
                                     ops::sum_over_last(position_in_expert)));  // [G, S]
    mask_kept.push_back(&mask_n);
  }
  // positions = torch.stack(positions); mask_flat = reduce(mask, '... n e -> ... n', 'sum')
  Reads position_reads(flat_positions.begin(), flat_positions.end());
  Reads mask_reads(mask_kept.begin(), mask_kept.end());
  Tensor& positions = f.int32_step("positions", position_reads, {"K", "G", "S"});  // [K, G, S]
  Tensor& mask_flat = f.int32_step("mask_flat", mask_reads, {"K", "G", "S"});      // [K, G, S]
  for (int64_t n = 0; n < K; ++n) {
    const Tensor kept_flat = ops::sum_over_last(*mask_kept[static_cast<size_t>(n)]);
    for (int64_t t = 0; t < T; ++t) {
      positions.i32[static_cast<size_t>(n * T + t)] = flat_positions[static_cast<size_t>(n)]->i32[t];
      mask_flat.i32[static_cast<size_t>(n * T + t)] = kept_flat.i32[t];
    }
  }
  // gates = gates * mask_flat: no renormalisation after the drops
  Tensor& gates_capacity = f.float32_step("gates_capacity", {gates_normalized, mask_flat}, {"K", "G", "S"});
  for (int64_t i = 0; i < K * T; ++i)
    gates_capacity.f32[i] = gates_normalized.f32[i] * static_cast<float>(mask_flat.i32[i]);

  record_routing_index_form_rank_major(f, gate_indices, positions, mask_flat, gates_capacity);

  // combine_tensor = einx.multiply('k b n, k b n, k b n e, k b n c -> k b n e c', gates, mask_flat,
  // one_hot_gate_indices, safe_one_hot(positions, C)), summed over k. A position >= C selects no slot.
  const Tensor& combine_tensor =
      f.step("combine_tensor", {gates_capacity, mask_flat, gate_indices, positions},
             ops::stmoe_combine_tensor(gates_capacity, mask_flat, gate_indices, positions, E, C));  // [G, S, E, C]
  // dispatch_tensor = combine_tensor.bool().type(dtype)
  const Tensor& dispatch_tensor =
      f.step("dispatch_tensor", {combine_tensor}, ops::dispatch_from_combine(combine_tensor));  // [G, S, E, C]
  StmoeGatingOutputs out{&dispatch_tensor, &combine_tensor, 0.0f, 0.0f};
  if (hp.straight_through_dispatch_tensor) {
    // dispatch_tensor = dispatch_tensor + combine_tensor - combine_tensor.detach(): (d + c) - c in float32
    out.dispatch_tensor = &f.step("dispatch_tensor_straight_through", {dispatch_tensor, combine_tensor},
                                  ops::straight_through_dispatch(dispatch_tensor, combine_tensor));  // [G, S, E, C]
  }

  if (!f.train()) return out;  // balance_loss = router_z_loss = self.zero
  // density_1 = reduce(mask_1, '... n e -> ... e', 'mean'); density_1_proxy = reduce(raw_gates, ..., 'mean'):
  // torch's CPU mean is sum(...).div_(n). mask_1, the view of mask[0], now holds mask_0_capacity.
  const Tensor& mask_1 = *mask_kept.front();                                                      // [G, S, E]
  const Tensor& density_1 = f.step("density_1", {mask_1}, ops::mean_over_s_by_division(mask_1));  // [G, E]
  const Tensor& density_1_proxy =
      f.step("density_1_proxy", {raw_gates}, ops::mean_over_s_by_division(raw_gates));  // [G, E]
  // balance_loss = (density_1_proxy * density_1).mean() * float(num_gates ** 2)
  out.balance_loss = ops::switch_balance_loss(density_1_proxy, density_1, E);
  f.scalar_step("balance_loss", {density_1_proxy, density_1}, out.balance_loss);
  // router_z_loss = torch.logsumexp(gate_logits, dim=-1) (the un-noised logits); torch.square; .mean()
  Tensor& logsumexp = f.float32_step("router_z_loss_logsumexp", {gate_logits}, {"G", "S"});  // [G, S]
  ops::torch_logsumexp(gate_logits->f32.data(), logsumexp.f32.data(), T, E);
  Tensor& square = f.float32_step("router_z_loss_square", {logsumexp}, {"G", "S"});  // [G, S]
  double square_sum = 0.0;
  for (int64_t t = 0; t < T; ++t) {
    square.f32[t] = logsumexp.f32[t] * logsumexp.f32[t];
    square_sum += static_cast<double>(square.f32[t]);
  }
  out.router_z_loss = static_cast<float>(square_sum) / static_cast<float>(T);
  f.scalar_step("router_z_loss", {square}, out.router_z_loss);
  return out;
}

void stmoe_topn(Frame& f, const StmoeTopnHparams& hp) {
  if (hp.differentiable_topk) {
    fail_input("hparams.differentiable_topk", "true",
               "false: the CoLT5 coordinate-descent top-k values are not modelled (spec/variants/stmoe_topn.md)");
  }
  resolve_stmoe_layer_dims(f, hp, !f.supplied("gate_logits"));
  // torch.topk(raw_gates, k=top_n) raises "selected index k out of range" when top_n > E.
  if (hp.top_n > f.dim("E")) {
    fail_input("hparams.top_n", std::to_string(hp.top_n),
               "an integer in [2, E = " + std::to_string(f.dim("E")) + "] (torch.topk needs k <= num_gates)");
  }
  f.derived_dim("K", hp.top_n, "top_n");
  // expert_capacity = max(min(group_size, int((group_size * capacity_factor) / num_gates)), MIN_EXPERT_CAPACITY)
  const double capacity_factor = hp.capacity_factor(f.train());
  f.derived_dim("C", ops::mtf_expert_capacity(f.dim("S"), capacity_factor, f.dim("E"), kMinExpertCapacity),
                "max(min(S, int(S * capacity_factor / E)), 4)");
  f.check_routing_size();
  f.capacity({{"expert_capacity", f.dim("C")},
              {"rule", "st-moe: max(min(S, int(S * capacity_factor / E)), MIN_EXPERT_CAPACITY = 4)"},
              {"capacity_factor", capacity_factor},
              {"group_size", f.dim("S")},
              {"num_groups", f.dim("G")}});
  stmoe_moe_layer(f, hp, [&](const Tensor* x) { return top_n_gating(f, hp, x); });
}

// The decisions of TopNGating.forward that a backend can legitimately make the
// other way when the deciding values are within float tolerance: the top-n
// choice of each rank (torch.topk leaves ties unspecified) and the random keep of
// ranks >= 1.
std::optional<NearTie> stmoe_topn_near_tie(const NearTieQuery& query, const StmoeTopnHparams& hp) {
  if (query.step == "gate_indices") return ranked_choice_near_tie(query, "raw_gates", true);
  if (query.step != "should_route") return std::nullopt;
  const int64_t T = query.dim("G") * query.dim("S");
  const size_t rank = static_cast<size_t>(query.flat / T);
  if (rank == 0) return std::nullopt;  // should_route[0, ...] = True: never a near tie
  const float threshold = rank_thresholds(hp, query.train()).at(rank);
  // less(U, gates / threshold)
  return random_keep_near_tie(
      query, "route_uniform", "gates_normalized", [threshold](float gate) { return gate / threshold; },
      1.0 / static_cast<double>(threshold), "gates_normalized / threshold");
}

}  // namespace

VariantSpec stmoe_topn_variant() {
  return define_variant<StmoeTopnHparams>(
      {"stmoe_topn", "st-moe-pytorch top-n gating (per-rank thresholds) in MoE / SparseMoEBlock",
       "lucidrains/st-moe-pytorch st_moe_pytorch/st_moe_pytorch.py: TopNGating, MoE, SparseMoEBlock",
       "spec/variants/stmoe_topn.md"},
      declare_hparams, stmoe_topn, stmoe_topn_near_tie);
}

}  // namespace moeref
