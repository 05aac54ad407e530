// mtf_moe2d: Mesh TensorFlow's two-level (hierarchical) top-2 MoE layer, literal to the source.
//
// Source: tensorflow/mesh, mesh_tensorflow/transformer/moe.py at da90793,
//   MoE2D (its hyperparameters) and transformer_moe_layer_v2 (the layer), which
//   calls _top_2_gating twice (layers/mtf_top2_gating.hpp). Spec:
//   spec/variants/mtf_moe2d.md.
//
// Dims: B batch, L length, G outer groups, S outer group size, X outer experts,
//       C outer capacity, I inner groups, T inner group size, Y inner experts,
//       D inner capacity, M model dim, H expert hidden dim, N output dim (= M).
//       (The source's a0 outer batch is 1; its h, the inner groups, is I here.)
//
// The outer level routes each token to up to two of X expert groups. The slots
// of each outer expert (all groups, all C slots) are regrouped as inner tokens,
// with importance 1 for a slot holding a first choice, 0.5 for a second choice
// and 0 for an empty slot, and routed by an inner top-2 gating with its own
// router per outer expert to Y inner experts. Expert (y, x) is a ReLU FFN; the
// outputs are combined back through both levels. At HEAD, MoE2D never sets
// moe_min_expert_capacity, which transformer_moe_layer_v2 reads, so the source
// raises AttributeError; moeref takes min_expert_capacity = 4 (see the spec).

#include <algorithm>
#include <cmath>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "moeref/error.hpp"
#include "moeref/frame/define_variant.hpp"
#include "moeref/layers/mtf_top2_gating.hpp"
#include "moeref/ops/matmul.hpp"
#include "moeref/ops/mtf_capacity.hpp"
#include "moeref/ops/mtf_grouping.hpp"
#include "moeref/ops/router.hpp"

namespace moeref {

namespace {

// MoE2D.__init__'s arguments (and the missing moe_min_expert_capacity).
struct MtfMoe2dHparams : MtfTop2GatingHparams {
  int64_t expert_x = 0;
  int64_t expert_y = 0;
  double loss_coef = 0.0;
  int64_t group_size = 0;
  int64_t mesh_dim_size = 0;
  double capacity_factor_train = 0.0;
  double capacity_factor_eval = 0.0;
  double capacity_factor_second_level = 0.0;
  int64_t min_expert_capacity = 0;
  std::optional<int64_t> num_microbatches;
};

void declare_hparams(HparamTable<MtfMoe2dHparams>& table) {
  using P = MtfMoe2dHparams;
  const char* moe2d = "moe.py: MoE2D, transformer_moe_layer_v2";
  table.integer("expert_x", &P::expert_x)
      .defaults_to(8)
      .between(1, kMaxHparamExtent)
      .means("X, the number of outer experts (expert groups).")
      .cites(moe2d)
      .about("num_experts");
  table.integer("expert_y", &P::expert_y)
      .defaults_to(8)
      .between(1, kMaxHparamExtent)
      .means("Y, the number of inner experts per outer expert; the experts are the X * Y pairs (y, x).")
      .cites(moe2d)
      .about("num_experts");
  table.number("loss_coef", &P::loss_coef)
      .defaults_to(1e-2)
      .at_least(0.0)
      .means("The layer returns (outer loss + inner loss) times this coefficient.")
      .cites(moe2d)
      .known_as({"moe_loss_coef"})
      .about("balance_loss_coef");
  table.integer("group_size", &P::group_size)
      .defaults_to(1024)
      .between(1, kMaxHparamExtent)
      .means("Target group size of both levels' _split_into_groups (the inner one groups G * C slots).")
      .cites(moe2d)
      .known_as({"moe_group_size"})
      .about("grouping");
  table.integer("mesh_dim_size", &P::mesh_dim_size)
      .defaults_to(1)
      .between(1, kMaxHparamExtent)
      .means("Mesh size over which the outer groups are split (the inner level's, a0's, is 1 here).")
      .cites(moe2d)
      .about("device_split");
  table.number("capacity_factor_train", &P::capacity_factor_train)
      .defaults_to(1.25)
      .at_least(0.0)
      .train_only()
      .means("Outer capacity factor when training: C = max(min(S, int(S * factor / X)), min_expert_capacity).")
      .cites(moe2d)
      .known_as({"moe_capacity_factor_train"})
      .about("capacity_factor");
  table.number("capacity_factor_eval", &P::capacity_factor_eval)
      .defaults_to(2.0)
      .at_least(0.0)
      .eval_only()
      .means("Outer capacity factor when train is false.")
      .cites(moe2d)
      .known_as({"moe_capacity_factor_eval"})
      .about("capacity_factor");
  table.number("capacity_factor_second_level", &P::capacity_factor_second_level)
      .defaults_to(1.0)
      .at_least(0.0)
      .means("Inner capacity factor, train and eval alike: D = max(min(T, int(T * factor / Y)), min_expert_capacity).")
      .cites(moe2d)
      .known_as({"moe_capacity_factor_second_level"})
      .about("capacity_factor");
  table.integer("min_expert_capacity", &P::min_expert_capacity)
      .defaults_to(4)
      .between(1, kMaxHparamExtent)
      .means(
          "moeref default: MoE2D never sets moe_min_expert_capacity, which transformer_moe_layer_v2 reads for C and D "
          "(AttributeError at HEAD); 4 is MoE1D's default and the minimum hard-coded before commit 5a9d503.")
      .cites(moe2d)
      .known_as({"moe_min_expert_capacity"})
      .about("min_capacity");
  declare_mtf_top2_gating_hparams(table);
  table.optional_integer("num_microbatches", &P::num_microbatches)
      .defaults_to(1)
      .between(1, kMaxHparamExtent)
      .means("Number of microbatches (MoE2D passes the context's, default 1); each level's loss is divided by it.")
      .cites(moe2d)
      .about("num_microbatches");
}

// The same values under other dims (mtf.reshape keeps row-major order).
Tensor relabeled(Tensor tensor, std::vector<std::string> dims, std::vector<int64_t> shape) {
  tensor.dims = std::move(dims);
  tensor.shape = std::move(shape);
  return tensor;
}

// Both levels' grouping and capacity. Returns whether x is [B, L, M].
bool resolve_dims(Frame& f, const MtfMoe2dHparams& hp) {
  f.forbid_dim("E", "MoE2D's experts are the hparams expert_x (X) and expert_y (Y)");
  const bool batch_length = f.batch_length_layout("group_size");
  if (batch_length) {
    // num_groups, group_size = _split_into_groups(b1.size * l.size, moe_group_size, mesh size of b1)
    const ops::Grouping outer = ops::mtf_split_into_groups(f.dim("B") * f.dim("L"), hp.group_size, hp.mesh_dim_size);
    f.derived_dim("G", outer.num_groups, "_split_into_groups(B*L, group_size, mesh_dim_size)");
    f.derived_dim("S", outer.group_size, "_split_into_groups(B*L, group_size, mesh_dim_size)");
  }
  f.resolve_model_dims(true, "d_model", "moe_hidden_size");
  if (f.layer_scope()) f.derived_dim("N", f.dim("M"), "MoE2D passes the model dim as output_dim");
  const int64_t G = f.dim("G"), S = f.dim("S"), X = hp.expert_x, Y = hp.expert_y;
  // expert_capacity = max(min(s, int((s * capacity_factor) / x)), moe_min_expert_capacity)
  const double cf = f.train() ? hp.capacity_factor_train : hp.capacity_factor_eval;
  const int64_t C = f.derived_dim("C", ops::mtf_expert_capacity(S, cf, X, hp.min_expert_capacity),
                                  "max(min(S, int(S * capacity_factor / X)), min_expert_capacity)");
  // num_groups, group_size = _split_into_groups(a0 * g * c, moe_group_size, mesh size of a0 = 1)
  const ops::Grouping inner = ops::mtf_split_into_groups(G * C, hp.group_size, 1);
  const int64_t I = inner.num_groups, T = inner.group_size;
  // expert_capacity = max(min(t, int((t * capacity_factor_second_level) / y)), moe_min_expert_capacity)
  const int64_t D = ops::mtf_expert_capacity(T, hp.capacity_factor_second_level, Y, hp.min_expert_capacity);
  const std::pair<const char*, int64_t> step_extents[] = {{"X", X}, {"Y", Y}, {"I", I}, {"T", T}, {"D", D}};
  for (const auto& [letter, extent] : step_extents) f.set_step_extent(letter, extent);
  const double outer_size = static_cast<double>(G) * static_cast<double>(S) * static_cast<double>(X * C);
  const double inner_size = static_cast<double>(X * I) * static_cast<double>(T) * static_cast<double>(Y * D);
  if (outer_size > static_cast<double>(kMaxRoutingElements) || inner_size > static_cast<double>(kMaxRoutingElements)) {
    fail_input(
        "dims",
        "routing tensors of " + std::to_string(static_cast<int64_t>(std::max(outer_size, inner_size))) + " elements",
        "at most 2^31 elements in [G, S, X, C] and [X, I, T, Y, D]");
  }
  // The outer level's record, with the inner level's beside it.
  f.capacity({{"expert_capacity", C},
              {"rule", "mtf: max(min(S, int(S * capacity_factor / X)), min_expert_capacity)"},
              {"capacity_factor", cf},
              {"group_size", S},
              {"num_groups", G},
              {"inner",
               {{"expert_capacity", D},
                {"rule",
                 "mtf: (I, T) = _split_into_groups(G * C, group_size, 1); "
                 "D = max(min(T, int(T * capacity_factor_second_level / Y)), min_expert_capacity)"},
                {"capacity_factor", hp.capacity_factor_second_level},
                {"group_size", T},
                {"num_groups", I}}}});
  return batch_length;
}

// einsum([x [R, K, M], dispatch [R, K, E, P]]) -> [E, R, P, M]: each of R rows of K tokens
// fills its E x P slots; per row, [E*P, K] x [K, M], a copy of the one token a slot holds.
void dispatch_einsum(const Tensor& x, const Tensor& dispatch, int64_t R, int64_t K, int64_t E, int64_t P, float* out) {
  const int64_t M = x.shape.back();
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < R; ++r) {
    // a(e*P + p, k) = dispatch[r, k, e, p]: the transpose of [K, E*P]; slot (e, p) lands in row (e, r, p).
    const ops::MatmulLhs dispatch_transposed{nullptr, dispatch.i32.data() + r * K * E * P, 1, E * P};
    std::vector<const float*> token_rows(static_cast<size_t>(K));
    for (int64_t k = 0; k < K; ++k) token_rows[static_cast<size_t>(k)] = x.f32.data() + (r * K + k) * M;
    std::vector<float*> slot_rows(static_cast<size_t>(E * P));
    for (int64_t e = 0; e < E; ++e) {
      for (int64_t p = 0; p < P; ++p) slot_rows[static_cast<size_t>(e * P + p)] = out + ((e * R + r) * P + p) * M;
    }
    ops::matmul(E * P, K, M, dispatch_transposed, token_rows.data(), slot_rows.data());
  }
}

// einsum([expert_output [E, R, P, N], combine [R, K, E, P]]) -> [R, K, N]: per row, [K, E*P] x [E*P, N].
void combine_einsum(const Tensor& expert_output, const Tensor& combine, int64_t R, int64_t K, int64_t E, int64_t P,
                    float* out) {
  const int64_t N = expert_output.shape.back();
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < R; ++r) {
    std::vector<const float*> slot_rows(static_cast<size_t>(E * P));  // row (e, r, p) of expert_output
    for (int64_t e = 0; e < E; ++e) {
      for (int64_t p = 0; p < P; ++p)
        slot_rows[static_cast<size_t>(e * P + p)] = expert_output.f32.data() + ((e * R + r) * P + p) * N;
    }
    std::vector<float*> token_rows(static_cast<size_t>(K));
    for (int64_t k = 0; k < K; ++k) token_rows[static_cast<size_t>(k)] = out + (r * K + k) * N;
    const ops::MatmulLhs combine_r{combine.f32.data() + r * K * E * P, nullptr, E * P, 1};  // [K, E*P]
    ops::matmul(K, E * P, N, combine_r, slot_rows.data(), token_rows.data());
  }
}

// transformer_moe_layer_v2(inputs, output_dim, hparams, train, ..., nonpadding, num_microbatches).
void transformer_moe_layer_v2(Frame& f, const MtfMoe2dHparams& hp) {
  const bool batch_length = resolve_dims(f, hp);
  const int64_t G = f.dim("G"), S = f.dim("S"), C = f.dim("C"), M = f.dim("M");
  const int64_t X = hp.expert_x, Y = hp.expert_y;
  const std::vector<int64_t> xit = f.extents({"X", "I", "T"});
  const int64_t I = xit[1], T = xit[2], D = f.extents({"D"})[0];

  // ---- Inputs: x [B, L, M] (or [G, S, M]), nonpadding, both routers --------------------
  InputSet& inputs = f.inputs();
  const std::vector<std::string> token_dims =
      batch_length ? std::vector<std::string>{"B", "L"} : std::vector<std::string>{"G", "S"};
  const std::vector<int64_t> token_shape = f.extents(token_dims);
  const Tensor& x =
      inputs.float_input("x", {token_dims[0], token_dims[1], "M"}, {token_shape[0], token_shape[1], M}, -1.0, 1.0);
  const Tensor* nonpadding = inputs.optional_input("importance", token_dims, token_shape);
  const double router_bound = std::sqrt(6.0 / static_cast<double>(M));
  const Tensor& outer_router =
      inputs.float_input("outer_router_weights", {"M", "X"}, {M, X}, -router_bound, router_bound);
  const Tensor& inner_router =
      inputs.float_input("inner_router_weights", {"X", "M", "Y"}, {X, M, Y}, -router_bound, router_bound);

  // inputs = mtf.reshape(inputs, [a0, g1, s, m]); nonpadding = mtf.reshape(nonpadding, [a0, g1, s])
  const Tensor& grouped = f.step("inputs", {x}, relabeled(x, {"G", "S", "M"}, {G, S, M}));  // [G, S, M]
  const Tensor* importance =
      nonpadding != nullptr ? &f.step("importance", {nonpadding}, relabeled(*nonpadding, {"G", "S"}, {G, S})) : nullptr;

  // ---- First level: _top_2_gating(inputs, experts_dim=x, expert_capacity_dim=c, name="outer_gating")
  const Tensor& outer_logits =
      f.step("outer_logits", {grouped, outer_router},
             relabeled(ops::router_logits(grouped, outer_router), {"G", "S", "X"}, {G, S, X}));  // [G, S, X]
  const MtfTop2Gated outer =
      mtf_top_2_gating(f, {{"G"}, "S", "X", "C", "outer_"}, outer_logits, importance, hp, hp.num_microbatches);
  const Tensor& combine_x = *outer.combine_tensor;  // [G, S, X, C]

  // expert_inputs_x = mtf.einsum([inputs, dispatch_tensor_x], [x, a0, g1, c, m])
  Tensor& expert_inputs_x =
      f.float32_step("expert_inputs_x", {grouped, outer.dispatch_tensor}, {"X", "G", "C", "M"});  // [X, G, C, M]
  dispatch_einsum(grouped, *outer.dispatch_tensor, G, S, X, C, expert_inputs_x.f32.data());
  // importance = mtf.reduce_sum(combine_tensor_x, output_shape=[x, a0, g1, c]): the weight of the
  // token a slot holds (a slot holds at most one token, so the sum is exact), 0 when empty.
  Tensor& slot_importance_sum = f.float32_step("slot_importance_sum", {combine_x}, {"X", "G", "C"});  // [X, G, C]
  for (int64_t k = 0; k < G * S * X * C; ++k) {
    const int64_t g = k / (S * X * C), xc = k % (X * C);
    slot_importance_sum.f32[(xc / C * G + g) * C + xc % C] += combine_x.f32[k];
  }
  // importance = 0.5 * (to_float(greater(importance, 0.5)) + to_float(greater(importance, 0.0))):
  // 1 for a first choice (gate > 0.5), 0.5 for a second choice, 0 for an empty slot.
  Tensor& slot_importance = f.float32_step("slot_importance", {slot_importance_sum}, {"X", "G", "C"});
  for (size_t k = 0; k < slot_importance.f32.size(); ++k) {
    const float sum = slot_importance_sum.f32[k];
    slot_importance.f32[k] = 0.5f * ((sum > 0.5f ? 1.0f : 0.0f) + (sum > 0.0f ? 1.0f : 0.0f));
  }

  // ---- Second level: the slots of each outer expert, regrouped as I groups of T tokens ----
  // inputs_y = mtf.reshape(expert_inputs_x, [x1, h0, t, m]); importance = mtf.reshape(importance, [x1, h0, t])
  const Tensor& inputs_y =
      f.step("inputs_y", {expert_inputs_x}, relabeled(expert_inputs_x, {"X", "I", "T", "M"}, {X, I, T, M}));
  const Tensor& importance_y =
      f.step("importance_y", {slot_importance}, relabeled(slot_importance, {"X", "I", "T"}, {X, I, T}));
  // mtf.layers.dense(inputs_y, y, expert_dims=[x1], name="inner_gating"): one [M, Y] router per x.
  Tensor& inner_logits = f.float32_step("inner_logits", {inputs_y, inner_router}, {"X", "I", "T", "Y"});
  for (int64_t ox = 0; ox < X; ++ox) {
    ops::router_logits(inputs_y.f32.data() + ox * I * T * M, inner_router.f32.data() + ox * M * Y, I * T, M, Y,
                       inner_logits.f32.data() + ox * I * T * Y);
  }
  // _top_2_gating(inputs_y, outer_expert_dims=[x1], experts_dim=y, expert_capacity_dim=d,
  //               importance=importance, name="inner_gating")
  const MtfTop2Gated inner =
      mtf_top_2_gating(f, {{"X", "I"}, "T", "Y", "D", "inner_"}, inner_logits, &importance_y, hp, hp.num_microbatches);

  if (f.layer_scope()) {
    const int64_t H = f.dim("H"), N = f.dim("N");
    const double wi_bound = std::sqrt(3.0 / static_cast<double>(M)), wo_bound = std::sqrt(3.0 / static_cast<double>(H));
    const Tensor& wi = inputs.float_input("wi", {"Y", "X", "M", "H"}, {Y, X, M, H}, -wi_bound, wi_bound);
    const Tensor& wo = inputs.float_input("wo", {"Y", "X", "H", "N"}, {Y, X, H, N}, -wo_bound, wo_bound);
    // expert_inputs_y = mtf.einsum([inputs_y, dispatch_tensor_y], [y, x1, h0, d, m]): rows (x, i), slots (y, d).
    Tensor& expert_inputs_y =
        f.float32_step("expert_inputs_y", {inputs_y, inner.dispatch_tensor}, {"Y", "X", "I", "D", "M"});
    dispatch_einsum(inputs_y, *inner.dispatch_tensor, X * I, T, Y, D, expert_inputs_y.f32.data());
    // hidden_output = mtf.layers.dense(expert_inputs_y, hidden_dim, expert_dims=[y0, x1], activation=mtf.relu);
    // expert_output = mtf.layers.dense(hidden_output, output_dim, expert_dims=[y0, x1]); no bias.
    Tensor& hidden = f.float32_step("hidden_output", {expert_inputs_y, wi}, {"Y", "X", "I", "D", "H"});
    Tensor& expert_output = f.float32_step("expert_output", {hidden, wo}, {"Y", "X", "I", "D", "N"});
    const int64_t rows = I * D;
#pragma omp parallel for schedule(static)
    for (int64_t yx = 0; yx < Y * X; ++yx) {
      float* h = hidden.f32.data() + yx * rows * H;  // [rows, H]
      ops::matmul(expert_inputs_y.f32.data() + yx * rows * M, wi.f32.data() + yx * M * H, h, rows, M, H);
      for (int64_t k = 0; k < rows * H; ++k) h[k] = h[k] > 0.0f ? h[k] : 0.0f;
      ops::matmul(h, wo.f32.data() + yx * H * N, expert_output.f32.data() + yx * rows * N, rows, H, N);
    }
    // output_y = mtf.einsum([expert_output, combine_tensor_y], [x1, h0, t, n]): per row (x, i),
    // [T, Y*D] x [Y*D, N].
    Tensor& output_y = f.float32_step("output_y", {expert_output, inner.combine_tensor}, {"X", "I", "T", "N"});
    combine_einsum(expert_output, *inner.combine_tensor, X * I, T, Y, D, output_y.f32.data());
    // output = mtf.reshape(output_y, [x1, a0, g, c, n]); output_x = mtf.einsum([expert_output_x,
    // combine_tensor_x], [a0, g1, s, n]): per group, [S, X*C] x [X*C, N].
    const Tensor& output = f.step("output", {output_y}, relabeled(output_y, {"X", "G", "C", "N"}, {X, G, C, N}));
    Tensor& outputs = f.float32_step("outputs", {output, combine_x}, {"G", "S", "N"});  // [G, S, N]
    combine_einsum(output, combine_x, G, S, X, C, outputs.f32.data());
  }

  // return output, (loss_outer + loss_inner) * hparams.moe_loss_coef
  f.loss("loss_outer", outer.loss);
  f.loss("loss_inner", inner.loss);
  f.loss("loss", (outer.loss + inner.loss) * static_cast<float>(hp.loss_coef));
}

// The decisions a backend may make the other way at a near tie: each level's two
// top_1 choices and its second-expert policy.
std::optional<NearTie> mtf_moe2d_near_tie(const NearTieQuery& query, const MtfMoe2dHparams& hp) {
  if (std::optional<NearTie> tie = mtf_top_2_near_tie(query, hp, "outer_")) return tie;
  return mtf_top_2_near_tie(query, hp, "inner_");
}

}  // namespace

VariantSpec mtf_moe2d_variant() {
  return define_variant<MtfMoe2dHparams>(
      {"mtf_moe2d", "Mesh TensorFlow hierarchical MoE2D layer (outer top-2 over expert groups, inner top-2 per group)",
       "tensorflow/mesh mesh_tensorflow/transformer/moe.py: MoE2D, transformer_moe_layer_v2, _top_2_gating",
       "spec/variants/mtf_moe2d.md"},
      declare_hparams, transformer_moe_layer_v2, mtf_moe2d_near_tie);
}

}  // namespace moeref
