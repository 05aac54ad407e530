#include "moeref/layers/torch_tokens.hpp"

#include <algorithm>
#include <cmath>
#include <vector>

#include "moeref/error.hpp"
#include "moeref/frame/forced_choice.hpp"
#include "moeref/frame/mtf_expert_layer.hpp"
#include "moeref/ops/matmul.hpp"
#include "moeref/ops/one_hot.hpp"
#include "moeref/ops/top1.hpp"

namespace moeref {

void resolve_torch_token_dims(Frame& f, TorchTokenGroups groups, const std::string& model_name,
                              const std::string& hidden_name) {
  f.required_dim("E", "the number of experts (num_experts), an integer >= 1");
  const bool per_sequence = groups == TorchTokenGroups::kOneSequencePerGroup;
  const std::string rule = per_sequence ? "one sequence per group" : "every token in one group";
  if (f.batch_length_layout(rule)) {
    const int64_t B = f.dim("B"), L = f.dim("L");
    f.derived_dim("G", per_sequence ? B : 1, per_sequence ? "G = B: one sequence per group" : "G = 1");
    f.derived_dim("S", per_sequence ? L : B * L, per_sequence ? "S = L" : "S = B * L: input.reshape(-1, d_model)");
  } else if (!per_sequence && f.dim("G") != 1) {
    fail_input("dims.G", std::to_string(f.dim("G")), "1 (the source routes every token of the call as one group)");
  }
  f.resolve_model_dims(!f.supplied("logits"), model_name, hidden_name);
  if (f.layer_scope()) f.derived_dim("N", f.dim("M"), "the experts' output dim is the model dim");
}

const Tensor* take_torch_tokens_inputs(Frame& f) {
  if (!f.layer_scope() && f.supplied("logits") && !f.supplied("x")) return nullptr;
  const int64_t G = f.dim("G"), S = f.dim("S"), M = f.dim("M");
  const bool batch_length = f.config().dims.count("B") > 0;
  const std::vector<std::string> dims =
      batch_length ? std::vector<std::string>{"B", "L", "M"} : std::vector<std::string>{"G", "S", "M"};
  const Tensor& x = f.inputs().float_input("x", dims, f.extents(dims), -1.0, 1.0);
  // A row-major reshape to [G, S, M] relabels the dims only.
  Tensor grouped = x;
  grouped.dims = {"G", "S", "M"};
  grouped.shape = {G, S, M};
  return &f.step("inputs", {x}, std::move(grouped));
}

const Tensor* take_torch_tokens_optional(Frame& f, const std::string& name, const std::string& step_name) {
  const bool batch_length = f.config().dims.count("B") > 0;
  const std::vector<std::string> dims =
      batch_length ? std::vector<std::string>{"B", "L"} : std::vector<std::string>{"G", "S"};
  const Tensor* given = f.inputs().optional_input(name, dims, f.extents(dims));
  if (given == nullptr) return nullptr;
  Tensor grouped = *given;
  grouped.dims = {"G", "S"};
  grouped.shape = {f.dim("G"), f.dim("S")};
  return &f.step(step_name, {given}, std::move(grouped));
}

const Tensor& torch_router_logits(Frame& f, const Tensor* hidden, bool bias) {
  const int64_t G = f.dim("G"), S = f.dim("S"), E = f.dim("E");
  const Tensor* given = f.inputs().optional_input("logits", {"G", "S", "E"}, {G, S, E});
  if (given != nullptr) return f.step("logits", {given}, *given);
  const int64_t M = f.dim("M");
  // nn.Linear's reset_parameters: kaiming_uniform_(a=sqrt(5)) gives U(-1/sqrt(M), 1/sqrt(M)); so does the bias.
  const double bound = 1.0 / std::sqrt(static_cast<double>(M));
  const Tensor& router_weights = f.inputs().float_input("router_weights", {"M", "E"}, {M, E}, -bound, bound);
  const Tensor* router_bias = bias ? &f.inputs().float_input("router_bias", {"E"}, {E}, -bound, bound) : nullptr;
  Tensor& logits = f.float32_step("logits", {hidden, router_weights, router_bias}, {"G", "S", "E"});  // [G, S, E]
#pragma omp parallel for schedule(static)
  for (int64_t t = 0; t < G * S; ++t) {
    for (int64_t e = 0; e < E; ++e) {
      double sum = 0.0;
      for (int64_t m = 0; m < M; ++m) {
        sum += static_cast<double>(hidden->f32[static_cast<size_t>(t * M + m)]) *
               static_cast<double>(router_weights.f32[static_cast<size_t>(m * E + e)]);
      }
      if (router_bias != nullptr) sum += static_cast<double>(router_bias->f32[static_cast<size_t>(e)]);
      logits.f32[static_cast<size_t>(t * E + e)] = static_cast<float>(sum);
    }
  }
  return logits;
}

const Tensor& torch_token_experts(Frame& f, const Tensor& x, const std::vector<TorchTokenRank>& ranks,
                                  ops::Activation activation, double dropout_rate, bool biases) {
  const int64_t G = f.dim("G"), S = f.dim("S"), E = f.dim("E"), M = f.dim("M"), H = f.dim("H"), N = f.dim("N");
  const int64_t K = static_cast<int64_t>(ranks.size());
  const MtfExpertWeights weights = take_mtf_expert_weights(f, 1, E, M, H, N);
  const Tensor& wi = *weights.wi[0];
  const Tensor& wo = *weights.wo;
  // nn.Linear's default init: the bias is U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
  const double wi_bound = 1.0 / std::sqrt(static_cast<double>(M)), wo_bound = 1.0 / std::sqrt(static_cast<double>(H));
  const Tensor* wi_bias =
      biases ? &f.inputs().float_input("wi_bias", {"E", "H"}, {E, H}, -wi_bound, wi_bound) : nullptr;
  const Tensor* wo_bias =
      biases ? &f.inputs().float_input("wo_bias", {"E", "N"}, {E, N}, -wo_bound, wo_bound) : nullptr;
  Reads routing_reads = {x, wi, wi_bias};
  for (const TorchTokenRank& rank : ranks) routing_reads.insert(routing_reads.end(), {rank.expert, rank.dispatched});

  // The rows each expert gathers: (token, rank) pairs in token order, as hidden_states[router_mask[:, :, idx]].
  std::vector<std::vector<int64_t>> rows_of(static_cast<size_t>(E));
  for (int64_t t = 0; t < G * S; ++t) {
    for (int64_t k = 0; k < K; ++k) {
      const TorchTokenRank& rank = ranks[static_cast<size_t>(k)];
      if (rank.dispatched->i32[static_cast<size_t>(t)] == 0) continue;
      rows_of[static_cast<size_t>(rank.expert->i32[static_cast<size_t>(t)])].push_back(t * K + k);
    }
  }

  // hidden_states = self.act(self.wi(hidden_states)): per expert [n_e, M] x [M, H].
  Tensor& expert_hidden = f.float32_step("expert_hidden", routing_reads, {"G", "S", "K", "H"}, {G, S, K, H});
#pragma omp parallel for schedule(static)
  for (int64_t e = 0; e < E; ++e) {
    const std::vector<int64_t>& rows = rows_of[static_cast<size_t>(e)];
    const int64_t n = static_cast<int64_t>(rows.size());
    if (n == 0) continue;
    // x's rows gathered; the product lands in the (token, rank) rows of expert_hidden.
    std::vector<float> gathered(static_cast<size_t>(n * M));  // [n, M]
    std::vector<float*> hidden_rows(static_cast<size_t>(n));
    for (int64_t r = 0; r < n; ++r) {
      const int64_t row = rows[static_cast<size_t>(r)];
      const float* token = x.f32.data() + (row / K) * M;
      std::copy(token, token + M, gathered.data() + r * M);
      hidden_rows[static_cast<size_t>(r)] = expert_hidden.f32.data() + row * H;
    }
    std::vector<const float*> wi_rows(static_cast<size_t>(M));
    for (int64_t m = 0; m < M; ++m) wi_rows[static_cast<size_t>(m)] = wi.f32.data() + (e * M + m) * H;
    ops::matmul(n, M, H, ops::MatmulLhs{gathered.data(), nullptr, M, 1}, wi_rows.data(), hidden_rows.data());
    for (int64_t r = 0; r < n; ++r) {
      float* out = hidden_rows[static_cast<size_t>(r)];
      for (int64_t h = 0; h < H; ++h) {
        const float biased = wi_bias ? out[h] + wi_bias->f32[static_cast<size_t>(e * H + h)] : out[h];
        out[h] = ops::apply_activation(activation, biased);
      }
    }
  }

  const Tensor* hidden = &expert_hidden;
  if (f.train() && dropout_rate > 0.0) {
    // torch.nn.Dropout on CPU (aten/src/ATen/native/Dropout.cpp, _dropout_impl):
    // noise.bernoulli_(1 - p); noise.div_(1 - p); input * noise.
    const Tensor& uniform = f.inputs().uniform_draw("dropout_uniform", {"G", "S", "K", "H"}, {G, S, K, H});
    const float keep_prob = static_cast<float>(1.0 - dropout_rate);
    const float kept = 1.0f / keep_prob;
    Tensor& dropped =
        f.float32_step("expert_hidden_dropout", {expert_hidden, uniform}, {"G", "S", "K", "H"}, {G, S, K, H});
    for (size_t i = 0; i < dropped.f32.size(); ++i) {
      const float noise = uniform.f32[i] < keep_prob ? kept : 0.0f;
      dropped.f32[i] = expert_hidden.f32[i] * noise;
    }
    hidden = &dropped;
  }

  // hidden_states = self.wo(hidden_states): per expert [n_e, H] x [H, N], written back at the tokens.
  Tensor& expert_outputs = f.float32_step("expert_outputs", {hidden, wo, wo_bias}, {"G", "S", "K", "N"}, {G, S, K, N});
#pragma omp parallel for schedule(static)
  for (int64_t e = 0; e < E; ++e) {
    const std::vector<int64_t>& rows = rows_of[static_cast<size_t>(e)];
    const int64_t n = static_cast<int64_t>(rows.size());
    if (n == 0) continue;
    std::vector<float> gathered(static_cast<size_t>(n * H));  // [n, H]
    std::vector<float*> out_rows(static_cast<size_t>(n));
    for (int64_t r = 0; r < n; ++r) {
      const int64_t row = rows[static_cast<size_t>(r)];
      std::copy(hidden->f32.data() + row * H, hidden->f32.data() + (row + 1) * H, gathered.data() + r * H);
      out_rows[static_cast<size_t>(r)] = expert_outputs.f32.data() + row * N;
    }
    std::vector<const float*> wo_rows(static_cast<size_t>(H));
    for (int64_t h = 0; h < H; ++h) wo_rows[static_cast<size_t>(h)] = wo.f32.data() + (e * H + h) * N;
    ops::matmul(n, H, N, ops::MatmulLhs{gathered.data(), nullptr, H, 1}, wo_rows.data(), out_rows.data());
    if (wo_bias) {
      for (int64_t r = 0; r < n; ++r) {
        float* out = out_rows[static_cast<size_t>(r)];
        for (int64_t j = 0; j < N; ++j) out[j] = out[j] + wo_bias->f32[static_cast<size_t>(e * N + j)];
      }
    }
  }
  return expert_outputs;
}

TorchArgmaxChoice torch_argmax_choice(Frame& f, const std::string& index_name, const std::string& mask_name,
                                      const Tensor& scores) {
  const int64_t E = f.dim("E");
  const Tensor* forced = f.forced_decision(index_name, {f.dim("G"), f.dim("S")});
  TorchArgmaxChoice choice;
  choice.index = &f.step(index_name, {scores}, with_forced_top_1(ops::argmax_lowest_index(scores), forced, E));
  choice.mask = &f.step(mask_name, {choice.index}, ops::one_hot(*choice.index, E, "E"));
  return choice;
}

void record_topk_index_form(Frame& f, const Tensor& top_idx, const Tensor& kept, const Tensor& locations,
                            const Tensor& weights) {
  const int64_t G = top_idx.shape[0], S = top_idx.shape[1], K = top_idx.shape[2];
  const int64_t E = kept.shape[2];
  Tensor routing_slot = Tensor::int32({"G", "S", "K"}, {G, S, K});      // [G, S, K]
  Tensor routing_weight = Tensor::float32({"G", "S", "K"}, {G, S, K});  // [G, S, K]
  for (int64_t t = 0; t < G * S; ++t) {
    for (int64_t k = 0; k < K; ++k) {
      const size_t at = static_cast<size_t>(t * K + k);
      const int32_t expert = top_idx.i32[at];
      const size_t cell = static_cast<size_t>(t * E + (expert >= 0 ? expert : 0));
      const bool holds = expert >= 0 && kept.i32[cell] != 0;
      routing_slot.i32[at] = holds ? locations.i32[cell] : -1;
      routing_weight.f32[at] = holds ? weights.f32[cell] : 0.0f;
    }
  }
  Tensor routing_expert = top_idx;
  routing_expert.dims = {"G", "S", "K"};
  f.step("routing_expert", {top_idx}, std::move(routing_expert));
  f.step("routing_slot", {top_idx, kept, locations}, std::move(routing_slot));
  f.step("routing_weight", {top_idx, kept, weights}, std::move(routing_weight));
}

}  // namespace moeref
