#include "moeref/layers/stmoe_moe_layer.hpp"

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "moeref/error.hpp"
#include "moeref/ops/matmul.hpp"
#include "moeref/ops/torch_gelu.hpp"

namespace moeref {

namespace {

// The parameters of one Expert (Linear, GEGLU, Linear), stored [in, out] as
// moeref stores every weight: net[-3].weight.T split into the halves that
// GEGLU's x.chunk(2, dim=-1) gives (`x` first, `gate` second), and so on.
struct ExpertWeights {
  const Tensor* w1_x = nullptr;       // [(E,) M, H]: Linear(dim, dim_hidden * 2).weight[:H].T
  const Tensor* w1_gate = nullptr;    // [(E,) M, H]: ... .weight[H:].T
  const Tensor* b1_x = nullptr;       // [(E,) H]:    ... .bias[:H]
  const Tensor* b1_gate = nullptr;    // [(E,) H]:    ... .bias[H:]
  const Tensor* mult_bias = nullptr;  // [(E,) H]:    GEGLU.mult_bias
  const Tensor* w2 = nullptr;         // [(E,) H, M]: Linear(dim_hidden, dim).weight.T
  const Tensor* b2 = nullptr;         // [(E,) M]:    ... .bias
};

// Expert.init_ draws weight and bias from U(-std, std), std = weight.shape[0] ** -0.5
// (the OUTPUT width of the Linear). GEGLU.mult_bias and RMSNorm.gamma start at
// ones; moeref draws them from [0.5, 1.5) so that a backend that ignores them
// is caught.
ExpertWeights take_expert_weights(Frame& f, const std::string& prefix, bool per_expert, const char* hidden) {
  const int64_t M = f.dim("M"), H = f.dim(hidden);
  std::vector<std::string> lead;
  std::vector<int64_t> lead_shape;
  if (per_expert) {
    lead = {"E"};
    lead_shape = {f.dim("E")};
  }
  auto input = [&](const std::string& name, std::vector<std::string> dims, std::vector<int64_t> shape, double bound,
                   double centre) -> const Tensor* {
    dims.insert(dims.begin(), lead.begin(), lead.end());
    shape.insert(shape.begin(), lead_shape.begin(), lead_shape.end());
    return &f.inputs().float_input(prefix + name, dims, shape, centre - bound, centre + bound);
  };
  const double std_1 = 1.0 / std::sqrt(static_cast<double>(2 * H));
  const double std_2 = 1.0 / std::sqrt(static_cast<double>(M));
  ExpertWeights w;
  w.w1_x = input("w1_x", {"M", hidden}, {M, H}, std_1, 0.0);
  w.w1_gate = input("w1_gate", {"M", hidden}, {M, H}, std_1, 0.0);
  w.b1_x = input("b1_x", {hidden}, {H}, std_1, 0.0);
  w.b1_gate = input("b1_gate", {hidden}, {H}, std_1, 0.0);
  w.mult_bias = input("mult_bias", {hidden}, {H}, 0.5, 1.0);
  w.w2 = input("w2", {hidden, "M"}, {H, M}, std_2, 0.0);
  w.b2 = input("b2", {"M"}, {M}, std_2, 0.0);
  return w;
}

// The steps of one Expert.net applied to `rows` rows of width M, for expert `e`
// (0 for a feed-forward without an expert dim): the Linear's two halves, GEGLU,
// the second Linear. `in`, `hidden_x`, `hidden_gate`, `geglu`, `out` point at the
// rows' first elements. Linear is x @ W.T + b: a float32 GEMM, then the bias.
void expert_net(const float* in, int64_t rows, int64_t M, int64_t H, const ExpertWeights& w, int64_t e, float* hidden_x,
                float* hidden_gate, float* geglu, float* out) {
  ops::matmul(in, w.w1_x->f32.data() + e * M * H, hidden_x, rows, M, H);        // [rows, H]
  ops::matmul(in, w.w1_gate->f32.data() + e * M * H, hidden_gate, rows, M, H);  // [rows, H]
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t h = 0; h < H; ++h) {
      const size_t bias = static_cast<size_t>(e * H + h);
      float& hx = hidden_x[r * H + h];
      float& hg = hidden_gate[r * H + h];
      hx = hx + w.b1_x->f32[bias];
      hg = hg + w.b1_gate->f32[bias];
      // GEGLU: F.gelu(gate) * x * self.mult_bias
      geglu[r * H + h] = (ops::torch_gelu(hg) * hx) * w.mult_bias->f32[bias];
    }
  }
  ops::matmul(geglu, w.w2->f32.data() + e * H * M, out, rows, H, M);  // [rows, M]
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t m = 0; m < M; ++m) out[r * M + m] = out[r * M + m] + w.b2->f32[static_cast<size_t>(e * M + m)];
  }
}

// RMSNorm.forward: F.normalize(x, dim=-1) * self.gamma * self.scale, where
// F.normalize is x / max(||x||_2, 1e-12) and scale = dim ** 0.5 (a Python float).
const Tensor& rms_norm(Frame& f, const std::string& name, const Tensor& x, const Tensor& gamma) {
  const int64_t M = f.dim("M");
  const int64_t rows = x.num_elements() / M;
  Tensor& out = f.float32_step(name, {x, gamma}, {"G", "S", "M"});  // [G, S, M]
  const float scale = static_cast<float>(std::sqrt(static_cast<double>(M)));
  const float eps = 1e-12f;
  for (int64_t r = 0; r < rows; ++r) {
    double squares = 0.0;
    for (int64_t m = 0; m < M; ++m) squares += static_cast<double>(x.f32[r * M + m]) * x.f32[r * M + m];
    const float norm = static_cast<float>(std::sqrt(squares));
    const float denom = norm > eps ? norm : eps;  // .clamp_min(eps)
    for (int64_t m = 0; m < M; ++m) out.f32[r * M + m] = ((x.f32[r * M + m] / denom) * gamma.f32[m]) * scale;
  }
  return out;
}

// SparseMoEBlock's ff_before / ff_after: x = Expert(dim, prenorm=True)(x) + x.
const Tensor& feed_forward_with_residual(Frame& f, const std::string& name, const Tensor& x) {
  const int64_t M = f.dim("M"), F = f.dim("F");
  const int64_t rows = f.dim("G") * f.dim("S");
  const Tensor& gamma = f.inputs().float_input(name + "_gamma", {"M"}, {M}, 0.5, 1.5);
  const ExpertWeights w = take_expert_weights(f, name + "_", false, "F");
  const Tensor& normed = rms_norm(f, name + "_prenorm", x, gamma);  // [G, S, M]
  Tensor& hidden_x = f.float32_step(name + "_hidden_x", {normed, w.w1_x, w.b1_x}, {"G", "S", "F"});
  Tensor& hidden_gate = f.float32_step(name + "_hidden_gate", {normed, w.w1_gate, w.b1_gate}, {"G", "S", "F"});
  Tensor& geglu = f.float32_step(name + "_geglu", {hidden_x, hidden_gate, w.mult_bias}, {"G", "S", "F"});
  Tensor& out = f.float32_step(name + "_output", {geglu, w.w2, w.b2}, {"G", "S", "M"});
  expert_net(normed.f32.data(), rows, M, F, w, 0, hidden_x.f32.data(), hidden_gate.f32.data(), geglu.f32.data(),
             out.f32.data());
  Tensor& sum = f.float32_step("x_" + name, {out, x}, {"G", "S", "M"});  // [G, S, M]
  for (size_t i = 0; i < sum.f32.size(); ++i) sum.f32[i] = out.f32[i] + x.f32[i];
  return sum;
}

// MoE.forward after the gate: dispatch, Experts.forward, combine.
const Tensor& experts_and_combine(Frame& f, const Tensor& x, const StmoeGatingOutputs& gated) {
  const int64_t G = f.dim("G"), S = f.dim("S"), E = f.dim("E"), C = f.dim("C"), M = f.dim("M"), H = f.dim("H");
  const Tensor& dispatch = *gated.dispatch_tensor;
  const Tensor& combine = *gated.combine_tensor;
  const int64_t EC = E * C;
  // expert_inputs = einsum('b n d, b n e c -> b e c d', x, dispatch_tensor): per group,
  // [E*C, S] x [S, M].
  Tensor& expert_inputs = f.float32_step("expert_inputs", {x, dispatch}, {"G", "E", "C", "M"});  // [G, E, C, M]
#pragma omp parallel for schedule(static)
  for (int64_t g = 0; g < G; ++g) {
    // a(e*C + c, s) = dispatch_tensor[g, s, e, c]: the transpose of [S, E*C].
    const bool is_float = dispatch.dtype == DType::kFloat32;
    const ops::MatmulLhs dispatch_transposed{is_float ? dispatch.f32.data() + g * S * EC : nullptr,
                                             is_float ? nullptr : dispatch.i32.data() + g * S * EC, 1, EC};
    std::vector<const float*> token_rows(static_cast<size_t>(S));  // [S] rows of x's group g
    for (int64_t s = 0; s < S; ++s) token_rows[static_cast<size_t>(s)] = x.f32.data() + (g * S + s) * M;
    std::vector<float*> slot_rows(static_cast<size_t>(EC));  // [E*C] rows of expert_inputs' group g
    for (int64_t i = 0; i < EC; ++i) slot_rows[static_cast<size_t>(i)] = expert_inputs.f32.data() + (g * EC + i) * M;
    ops::matmul(EC, S, M, dispatch_transposed, token_rows.data(), slot_rows.data());
  }

  // Experts.forward: rearrange 'b e n d -> e b n d', expert(expert_input) per expert,
  // stack, rearrange 'e b n d -> b e n d'.
  const ExpertWeights w = take_expert_weights(f, "expert_", true, "H");
  Tensor& hidden_x = f.float32_step("expert_hidden_x", {expert_inputs, w.w1_x, w.b1_x}, {"E", "G", "C", "H"});
  Tensor& hidden_gate =
      f.float32_step("expert_hidden_gate", {expert_inputs, w.w1_gate, w.b1_gate}, {"E", "G", "C", "H"});
  Tensor& geglu = f.float32_step("expert_geglu", {hidden_x, hidden_gate, w.mult_bias}, {"E", "G", "C", "H"});
  Tensor& expert_outputs = f.float32_step("expert_outputs", {geglu, w.w2, w.b2}, {"G", "E", "C", "M"});
  const int64_t rows = G * C;
#pragma omp parallel for schedule(static)
  for (int64_t e = 0; e < E; ++e) {
    // expert e's slots of every group, [G*C, M], in and out
    std::vector<float> in(static_cast<size_t>(rows * M)), out(static_cast<size_t>(rows * M));
    for (int64_t g = 0; g < G; ++g) {
      const float* slots = expert_inputs.f32.data() + (g * E + e) * C * M;
      std::copy(slots, slots + C * M, in.data() + g * C * M);
    }
    const int64_t at = e * rows * H;
    expert_net(in.data(), rows, M, H, w, e, hidden_x.f32.data() + at, hidden_gate.f32.data() + at,
               geglu.f32.data() + at, out.data());
    for (int64_t g = 0; g < G; ++g) {
      std::copy(out.data() + g * C * M, out.data() + (g + 1) * C * M, expert_outputs.f32.data() + (g * E + e) * C * M);
    }
  }

  // output = einsum('b e c d, b n e c -> b n d', expert_outputs, combine_tensor): per
  // group, [S, E*C] x [E*C, M].
  Tensor& output = f.float32_step("output", {expert_outputs, combine}, {"G", "S", "M"});  // [G, S, M]
#pragma omp parallel for schedule(static)
  for (int64_t g = 0; g < G; ++g) {
    ops::matmul(combine.f32.data() + g * S * EC, expert_outputs.f32.data() + g * EC * M, output.f32.data() + g * S * M,
                S, EC, M);
  }
  return output;
}

}  // namespace

void resolve_stmoe_layer_dims(Frame& f, const StmoeLayerHparams& hp, bool needs_router) {
  f.required_dim("E", "the number of experts (num_experts / num_gates), an integer >= 1");
  if (f.batch_length_layout("one group per sequence")) {
    f.derived_dim("G", f.dim("B"), "G = B: TopNGating routes each sequence as one group");
    f.derived_dim("S", f.dim("L"), "S = L: the sequence length n");
  }
  if (!f.layer_scope()) {
    if (needs_router) f.required_dim("M", "the model dim (dim), needed for the router");
    if (!needs_router) f.optional_dim("M");
    return;
  }
  f.required_dim("M", "the model dim (dim)");
  // Expert: dim_hidden = int(dim * hidden_mult * 2 / 3), Python left to right in double.
  auto hidden = [&](double mult) { return static_cast<int64_t>(static_cast<double>(f.dim("M")) * mult * 2.0 / 3.0); };
  if (hidden(hp.expert_hidden_mult) < 1) {
    fail_input("hparams.expert_hidden_mult", std::to_string(hp.expert_hidden_mult),
               "a value that gives experts at least one hidden unit: int(M * expert_hidden_mult * 2 / 3) >= 1");
  }
  f.derived_dim("H", hidden(hp.expert_hidden_mult), "int(M * expert_hidden_mult * 2 / 3)");
  if (hp.module == "SparseMoEBlock" && (hp.add_ff_before || hp.add_ff_after)) {
    f.derived_dim("F", hidden(4.0), "int(M * 4 * 2 / 3): Expert(dim, prenorm=True) with hidden_mult 4");
  } else {
    f.forbid_dim("F", "F is the hidden dim of SparseMoEBlock's ff_before / ff_after, which this config has not");
  }
}

void stmoe_moe_layer(Frame& f, const StmoeLayerHparams& hp, const StmoeGatingFunction& gating) {
  const bool layer = f.layer_scope();
  const bool block = layer && hp.module == "SparseMoEBlock";
  const Tensor* x = nullptr;
  if (layer || !f.supplied("gate_logits") || f.supplied("x")) {
    const bool batch_length = f.config().dims.count("B") > 0;
    const std::vector<std::string> dims = {batch_length ? "B" : "G", batch_length ? "L" : "S", "M"};
    x = &f.inputs().float_input("x", dims, f.extents(dims), -1.0, 1.0);
  }
  if (!layer) {
    const StmoeGatingOutputs gated = gating(x);
    f.loss("balance_loss", gated.balance_loss);
    f.loss("router_z_loss", gated.router_z_loss);
    return;
  }

  // SparseMoEBlock.forward: x = self.ff_before(x) + x; residual = x; moe(self.moe_prenorm(x)).
  const Tensor* residual = x;
  const Tensor* moe_input = x;
  if (block) {
    if (hp.add_ff_before) residual = &feed_forward_with_residual(f, "ff_before", *x);
    const Tensor& gamma = f.inputs().float_input("moe_prenorm_gamma", {"M"}, {f.dim("M")}, 0.5, 1.5);
    moe_input = &rms_norm(f, "moe_prenorm", *residual, gamma);
  }

  // MoE.forward
  const StmoeGatingOutputs gated = gating(moe_input);
  const Tensor& output = experts_and_combine(f, *moe_input, gated);
  // weighted_balance_loss = balance_loss * self.balance_loss_coef (a Python float meets a
  // float32 tensor: f32(coef)); likewise the z-loss; total_aux_loss is their sum.
  const float weighted_balance_loss = gated.balance_loss * static_cast<float>(hp.balance_loss_coef);
  const float weighted_router_z_loss = gated.router_z_loss * static_cast<float>(hp.router_z_loss_coef);
  f.loss("balance_loss", gated.balance_loss);
  f.loss("router_z_loss", gated.router_z_loss);
  f.loss("total_aux_loss", weighted_balance_loss + weighted_router_z_loss);

  if (block) {
    // x = moe_out + residual; x = self.ff_after(x) + x
    Tensor& sum = f.float32_step("x_moe", {output, residual}, {"G", "S", "M"});  // [G, S, M]
    for (size_t i = 0; i < sum.f32.size(); ++i) sum.f32[i] = output.f32[i] + residual->f32[i];
    if (hp.add_ff_after) feed_forward_with_residual(f, "ff_after", sum);
  }
}

}  // namespace moeref
