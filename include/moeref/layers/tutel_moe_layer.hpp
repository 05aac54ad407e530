// Tutel's MoE layer around its routing: MOELayer.forward (microsoft/tutel,
// tutel/impls/moe_layer.py at 82af7aa): the gate (LinearTopKGate, tutel/gates/top.py),
// the training noise, the softmax, then extract_critical (the variant), then the
// fast dispatcher's encode, the experts (tutel/experts/ffn.py, FusedExpertsNetwork)
// and decode (tutel/impls/fast_dispatch.py, GatingEncoder / GatingDecoder and the
// CPU kernels of tutel/jit_kernels/sparse.py).
//
// Dims: B batch, L length, G = 1 group, S = B * L tokens (`input.reshape(-1,
// model_dim)`), E experts, K ranks, C expert capacity, M model dim, H expert
// hidden dim, N = M. One device: no all-to-all, sharded_count 1, alignment 1.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "moeref/frame/frame.hpp"
#include "moeref/frame/hparam_table.hpp"

namespace moeref {

// MOELayer's and the gate's arguments the layer reads.
struct TutelLayerHparams {
  double gate_noise = 0.0;
  bool is_postscore = true;
  bool has_fc1_bias = true;
  bool has_fc2_bias = true;
};

// What routing() hands extract_critical.
struct TutelRouting {
  const Tensor* logits = nullptr;          // [G, S, E]
  const Tensor* logits_w_noise = nullptr;  // [G, S, E]: logits itself without noise
  const Tensor* scores = nullptr;          // [G, S, E] F.softmax(logits_w_noise, dim=1)
};

// What extract_critical returns: per rank k, indices_s[k], locations_s[k] ([G, S]
// int32), gates_s[k] ([G, S] float32), and the capacity.
struct TutelCritical {
  std::vector<const Tensor*> indices_s;
  std::vector<const Tensor*> locations_s;
  std::vector<const Tensor*> gates_s;
  int64_t capacity = 0;
};

using TutelExtractCritical = std::function<TutelCritical(const TutelRouting& routing)>;

// MOELayer.forward: dims (E; tokens as B and L or G = 1 and S; M when the gate
// runs or in scope "layer"; H in scope "layer"; N = M); x -> "inputs";
// logits = self.wg(x) (no bias); with train and gate_noise > 0, logits_w_noise =
// logits + gate_noise * randn_like(logits) / E (the draw "gate_noise_normal");
// scores = softmax; `extract`; then in scope "layer" fast_encode ("expert_inputs"
// [E, G, C, M]: x, or gate * x when not is_postscore), the experts (relu(x . wi
// + wi_bias) . wo + wo_bias: "expert_hidden", "expert_outputs"), fast_decode
// ("outputs" [G, S, N]: the sum over ranks, in rank order, of gate * y, or y when
// not is_postscore, for slots below C).
void tutel_moe_layer(Frame& frame, const TutelLayerHparams& hparams, const TutelExtractCritical& extract);

// Declares gate_noise, is_postscore, has_fc1_bias and has_fc2_bias.
template <typename P>
void declare_tutel_layer_hparams(HparamTable<P>& table) {
  table.number("gate_noise", &P::gate_noise)
      .defaults_to(0.0)
      .at_least(0.0)
      .train_only()
      .means("When training and > 0: logits + gate_noise * N(0, 1) / E before the softmax.")
      .cites("moe_layer.py: MOELayer.forward")
      .about("gate_noise");
  table.flag("is_postscore", &P::is_postscore)
      .defaults_to(true)
      .means("True: the gate multiplies the expert output at decode; false: the expert input at encode (scope layer).")
      .cites("moe_layer.py: MOELayer; fast_dispatch.py: TutelMoeFastDispatcher")
      .about("gate_application");
  table.flag("has_fc1_bias", &P::has_fc1_bias)
      .defaults_to(true)
      .means("The experts' first layer has a bias (scope layer).")
      .cites("experts/ffn.py: FusedExpertsNetwork")
      .about("expert_bias");
  table.flag("has_fc2_bias", &P::has_fc2_bias)
      .defaults_to(true)
      .means("The experts' second layer has a bias (scope layer).")
      .cites("experts/ffn.py: FusedExpertsNetwork")
      .about("expert_bias");
}

}  // namespace moeref
