#include "moeref/layers/tutel_moe_layer.hpp"

#include <cmath>

#include "moeref/frame/mtf_expert_layer.hpp"
#include "moeref/layers/torch_tokens.hpp"
#include "moeref/ops/matmul.hpp"
#include "moeref/ops/torch_softmax.hpp"

namespace moeref {

namespace {

// The experts' slot-by-slot computation and the decode, in scope "layer".
void tutel_experts(Frame& f, const TutelLayerHparams& hp, const Tensor& x, const TutelCritical& crit) {
  const int64_t S = f.dim("S"), E = f.dim("E"), M = f.dim("M"), H = f.dim("H"), N = f.dim("N");
  const int64_t C = crit.capacity, K = static_cast<int64_t>(crit.indices_s.size());
  const MtfExpertWeights weights = take_mtf_expert_weights(f, 1, E, M, H, N);
  // FusedExpertsNetwork.reset_parameters: nn.Linear's init, the biases U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
  const double fc1_bound = 1.0 / std::sqrt(static_cast<double>(M)), fc2_bound = 1.0 / std::sqrt(static_cast<double>(H));
  const Tensor* fc1_bias =
      hp.has_fc1_bias ? &f.inputs().float_input("wi_bias", {"E", "H"}, {E, H}, -fc1_bound, fc1_bound) : nullptr;
  const Tensor* fc2_bias =
      hp.has_fc2_bias ? &f.inputs().float_input("wo_bias", {"E", "N"}, {E, N}, -fc2_bound, fc2_bound) : nullptr;
  Reads routing = {x};
  for (int64_t k = 0; k < K; ++k) {
    const size_t r = static_cast<size_t>(k);
    routing.insert(routing.end(),
                   {crit.indices_s[r], crit.locations_s[r], hp.is_postscore ? nullptr : crit.gates_s[r]});
  }

  // fast_encode: dispatched_input[(index * capacity + location)] = gate * x[i] (gate = 1 when postscore),
  // for location < capacity and index >= 0.
  Tensor& expert_inputs = f.float32_step("expert_inputs", routing, {"E", "G", "C", "M"}, {E, 1, C, M});
  for (int64_t k = 0; k < K; ++k) {
    const size_t r = static_cast<size_t>(k);
    for (int64_t s = 0; s < S; ++s) {
      const int32_t e = crit.indices_s[r]->i32[static_cast<size_t>(s)],
                    c = crit.locations_s[r]->i32[static_cast<size_t>(s)];
      if (c >= C || e < 0) continue;
      const float gate = hp.is_postscore ? 1.0f : crit.gates_s[r]->f32[static_cast<size_t>(s)];
      for (int64_t m = 0; m < M; ++m) {
        expert_inputs.f32[static_cast<size_t>((e * C + c) * M + m)] = gate * x.f32[static_cast<size_t>(s * M + m)];
      }
    }
  }
  // FusedExpertsNetwork.forward: relu(x . fc1_w + fc1_bias) . fc2_w + fc2_bias, per expert over its C slots.
  Tensor& expert_hidden =
      f.float32_step("expert_hidden", {expert_inputs, weights.wi[0], fc1_bias}, {"E", "G", "C", "H"}, {E, 1, C, H});
  Tensor& expert_outputs =
      f.float32_step("expert_outputs", {expert_hidden, weights.wo, fc2_bias}, {"E", "G", "C", "N"}, {E, 1, C, N});
#pragma omp parallel for schedule(static)
  for (int64_t e = 0; e < E; ++e) {
    float* hidden = expert_hidden.f32.data() + e * C * H;  // [C, H]
    ops::matmul(expert_inputs.f32.data() + e * C * M, weights.wi[0]->f32.data() + e * M * H, hidden, C, M, H);
    for (int64_t i = 0; i < C * H; ++i) {
      const float biased = fc1_bias ? hidden[i] + fc1_bias->f32[static_cast<size_t>(e * H + i % H)] : hidden[i];
      hidden[i] = biased > 0.0f ? biased : 0.0f;
    }
    float* out = expert_outputs.f32.data() + e * C * N;  // [C, N]
    ops::matmul(hidden, weights.wo->f32.data() + e * H * N, out, C, H, N);
    if (fc2_bias) {
      for (int64_t i = 0; i < C * N; ++i) out[i] = out[i] + fc2_bias->f32[static_cast<size_t>(e * N + i % N)];
    }
  }
  // fast_decode: per rank, single_output[i] = gate * expert_output[index * capacity + location] (gate = 1
  // when not postscore; 0 beyond the capacity); last_result = last_result + single_output, in rank order.
  Reads decode_reads = {expert_outputs};
  for (int64_t k = 0; k < K; ++k) {
    const size_t r = static_cast<size_t>(k);
    decode_reads.insert(decode_reads.end(),
                        {crit.indices_s[r], crit.locations_s[r], hp.is_postscore ? crit.gates_s[r] : nullptr});
  }
  Tensor& outputs = f.float32_step("outputs", decode_reads, {"G", "S", "N"});
  for (int64_t s = 0; s < S; ++s) {
    for (int64_t k = 0; k < K; ++k) {
      const size_t r = static_cast<size_t>(k);
      const int32_t e = crit.indices_s[r]->i32[static_cast<size_t>(s)],
                    c = crit.locations_s[r]->i32[static_cast<size_t>(s)];
      const bool kept = c < C && e >= 0;
      const float gate = hp.is_postscore ? crit.gates_s[r]->f32[static_cast<size_t>(s)] : 1.0f;
      for (int64_t n = 0; n < N; ++n) {
        const float single = kept ? gate * expert_outputs.f32[static_cast<size_t>((e * C + c) * N + n)] : 0.0f;
        float& total = outputs.f32[static_cast<size_t>(s * N + n)];
        total = k == 0 ? single : total + single;
      }
    }
  }
}

}  // namespace

void tutel_moe_layer(Frame& f, const TutelLayerHparams& hp, const TutelExtractCritical& extract) {
  resolve_torch_token_dims(f, TorchTokenGroups::kAllTokensOneGroup, "model_dim", "hidden_size_per_expert");
  const int64_t G = f.dim("G"), S = f.dim("S"), E = f.dim("E");
  // x = input.reshape(-1, original_shape[-reserve_dims:].numel())
  const Tensor* x = take_torch_tokens_inputs(f);  // [G, S, M]

  // routing(): logits = gctx(x)
  TutelRouting routing;
  routing.logits = &torch_router_logits(f, x, false);  // [G, S, E]
  routing.logits_w_noise = routing.logits;
  if (f.train() && hp.gate_noise > 0.0) {
    // logits_w_noise = logits + gctx.gate_noise * torch.randn_like(logits) / self.num_global_experts
    const Tensor& normal = f.inputs().normal_draw("gate_noise_normal", {"G", "S", "E"}, {G, S, E});
    Tensor& noised = f.float32_step("logits_w_noise", {routing.logits, normal}, {"G", "S", "E"});
    const float noise = static_cast<float>(hp.gate_noise), experts = static_cast<float>(E);
    for (size_t i = 0; i < noised.f32.size(); ++i)
      noised.f32[i] = routing.logits->f32[i] + noise * normal.f32[i] / experts;
    routing.logits_w_noise = &noised;
  }
  // scores = F.softmax(logits_w_noise, dim=1)
  Tensor& scores = f.float32_step("scores", {routing.logits_w_noise}, {"G", "S", "E"});  // [G, S, E]
  ops::torch_softmax(routing.logits_w_noise->f32.data(), scores.f32.data(), G * S, E);
  routing.scores = &scores;

  // crit, l_aux = extract_critical(scores, top_k, loss_fn, capacity_factor, ...)
  const TutelCritical crit = extract(routing);
  if (f.layer_scope()) tutel_experts(f, hp, *x, crit);
}

}  // namespace moeref
