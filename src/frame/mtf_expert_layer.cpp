#include "moeref/frame/mtf_expert_layer.hpp"

#include <cmath>
#include <string>

#include "moeref/frame/group_slices.hpp"
#include "moeref/frame/mtf_index_dispatch.hpp"
#include "moeref/ops/matmul.hpp"

namespace moeref {

MtfExpertWeights take_mtf_expert_weights(Frame& frame, size_t factors, int64_t E, int64_t M, int64_t H, int64_t N) {
  const double wi_bound = std::sqrt(3.0 / static_cast<double>(M));
  const double wo_bound = std::sqrt(3.0 / static_cast<double>(H));
  MtfExpertWeights weights;
  for (size_t i = 0; i < factors; ++i) {
    const std::string name = factors == 1 ? "wi" : "wi_" + std::to_string(i);
    weights.wi.push_back(&frame.inputs().float_input(name, {"E", "M", "H"}, {E, M, H}, -wi_bound, wi_bound));
  }
  weights.wo = &frame.inputs().float_input("wo", {"E", "H", "N"}, {E, H, N}, -wo_bound, wo_bound);
  return weights;
}

namespace {

// The literal dispatch einsum over S: per group, [E*C, S] x [S, M] with the dispatch
// tensor read as float 0/1, as the source's matrix product, so a slot takes exactly
// the one token dispatched to it; slot (e, c) of group g lands in row (e, g, c).
void dense_dispatch(const Tensor& inputs, const Tensor& dispatch_tensor, Tensor& expert_inputs) {
  const int64_t G = inputs.shape[0], S = inputs.shape[1], M = inputs.shape[2];
  const int64_t E = dispatch_tensor.shape[2], C = dispatch_tensor.shape[3];
  const int64_t EC = E * C;
#pragma omp parallel for schedule(static)
  for (int64_t g = 0; g < G; ++g) {
    std::vector<const float*> token_rows(static_cast<size_t>(S));  // [S] rows of [S, M]
    for (int64_t s = 0; s < S; ++s) token_rows[static_cast<size_t>(s)] = inputs.f32.data() + (g * S + s) * M;
    std::vector<float*> slot_rows(static_cast<size_t>(EC));  // [E*C] rows of [E, G, C, M]
    for (int64_t e = 0; e < E; ++e) {
      for (int64_t c = 0; c < C; ++c) {
        slot_rows[static_cast<size_t>(e * C + c)] = expert_inputs.f32.data() + ((e * G + g) * C + c) * M;
      }
    }
    // a(e*C + c, s) = dispatch_tensor[g, s, e, c]: the transpose of [S, E*C].
    const ops::MatmulLhs dispatch_transposed{nullptr, dispatch_tensor.i32.data() + g * S * EC, 1, EC};
    ops::matmul(EC, S, M, dispatch_transposed, token_rows.data(), slot_rows.data());
  }
}

// The literal combine einsum over E and C: per group, [S, E*C] x [E*C, N], slot
// (e, c) of group g read from row (e, g, c).
void dense_combine(const Tensor& expert_outputs, const Tensor& combine_tensor, Tensor& outputs) {
  const int64_t G = outputs.shape[0], S = outputs.shape[1], N = outputs.shape[2];
  const int64_t E = combine_tensor.shape[2], C = combine_tensor.shape[3];
  const int64_t EC = E * C;
#pragma omp parallel for schedule(static)
  for (int64_t g = 0; g < G; ++g) {
    std::vector<const float*> slot_rows(static_cast<size_t>(EC));  // [E*C] rows of [E, G, C, N]
    for (int64_t e = 0; e < E; ++e) {
      for (int64_t c = 0; c < C; ++c) {
        slot_rows[static_cast<size_t>(e * C + c)] = expert_outputs.f32.data() + ((e * G + g) * C + c) * N;
      }
    }
    std::vector<float*> token_rows(static_cast<size_t>(S));  // [S] rows of [G, S, N]
    for (int64_t s = 0; s < S; ++s) token_rows[static_cast<size_t>(s)] = outputs.f32.data() + (g * S + s) * N;
    const ops::MatmulLhs combine_g{combine_tensor.f32.data() + g * S * EC, nullptr, EC, 1};  // [S, E*C]
    ops::matmul(S, EC, N, combine_g, slot_rows.data(), token_rows.data());
  }
}

// What the expert layer computes on: the recorded tensors, or (in a group shard)
// their groups [first, end) only. Steps still name the recorded tensors as reads.
struct ExpertOperands {
  const Tensor* inputs;
  const Tensor* dispatch_tensor;
  const Tensor* combine_tensor;
  const Tensor* dropout_uniform;
  // In a shard: the cut copies the pointers above point to.
  Tensor cut_inputs, cut_dispatch, cut_combine, cut_uniform;
};

// --groups FIRST:END (spec/sharding.md): every product of this layer is per group
// (dispatch, combine) or per row of one expert's [G*C, M] slots (the FFN), and
// ops::matmul sums each element in index order whatever the number of rows, so
// the shard's groups get the one-shot run's bits.
void cut_to_shard(const GroupRange& range, ExpertOperands& operands) {
  operands.cut_inputs = slice_groups(*operands.inputs, range.first, range.end);
  operands.cut_dispatch = slice_groups(*operands.dispatch_tensor, range.first, range.end);
  operands.cut_combine = slice_groups(*operands.combine_tensor, range.first, range.end);
  operands.inputs = &operands.cut_inputs;
  operands.dispatch_tensor = &operands.cut_dispatch;
  operands.combine_tensor = &operands.cut_combine;
  if (operands.dropout_uniform != nullptr) {
    operands.cut_uniform = slice_groups(*operands.dropout_uniform, range.first, range.end);
    operands.dropout_uniform = &operands.cut_uniform;
  }
}

}  // namespace

const Tensor& mtf_expert_layer(Frame& frame, const Tensor& recorded_inputs, const Tensor& recorded_dispatch,
                               const Tensor& recorded_combine, const std::vector<ops::Activation>& activations,
                               const MtfExpertWeights& weights, const std::optional<MtfDropout>& dropout) {
  ExpertOperands operands{
      &recorded_inputs, &recorded_dispatch, &recorded_combine, dropout ? dropout->uniform : nullptr, {}, {}, {}, {}};
  const std::optional<GroupRange>& shard = frame.group_shard();
  if (shard) cut_to_shard(*shard, operands);
  const Tensor& inputs = *operands.inputs;
  const Tensor& dispatch_tensor = *operands.dispatch_tensor;
  const Tensor& combine_tensor = *operands.combine_tensor;
  // Steps made here hold the shard's groups only (Frame::finish cuts the rest). Each is
  // written whole below (every slot, row and product), so none is zeroed first.
  auto made = [&](Tensor& step, const std::string& name) -> Tensor& {
    if (shard) frame.recorded_as_shard(name);
    return step;
  };

  const int64_t G = inputs.shape[0], S = inputs.shape[1], M = inputs.shape[2];
  const int64_t E = dispatch_tensor.shape[2], C = dispatch_tensor.shape[3];
  const int64_t H = weights.wi[0]->shape[2], N = weights.wo->shape[2];
  // --fast: the dispatch and combine einsums from the nonzero entries only
  // (mtf_index_dispatch.hpp), and the expert FFN's products with fused multiply-adds
  // where the CPU has them (ops::Products::kFused): within the checker's bounds of the
  // literal products, which round each product and each sum apart.
  const bool fast = frame.config().fast;
  if (fast) frame.note_fast_path();
  const ops::Products ffn_products = fast ? ops::Products::kFused : ops::Products::kSeparate;

  // expert_inputs = einsum([inputs, dispatch_tensor]) over S.
  Tensor& expert_inputs = made(frame.float32_step_written_whole("expert_inputs", {recorded_inputs, recorded_dispatch},
                                                                {"E", "G", "C", "M"}, {E, G, C, M}),
                               "expert_inputs");
  if (fast) {
    index_dispatch(inputs, dispatch_tensor, expert_inputs);
  } else {
    dense_dispatch(inputs, dispatch_tensor, expert_inputs);
  }

  // The expert FFN's steps, recorded in the source's order; each expert then runs its
  // whole FFN at once below (its hidden slots are still in cache for the second product).
  // h = dense_product(expert_inputs, wi...): the product of act_i(expert_inputs . wi_i).
  Reads hidden_reads = {expert_inputs};
  for (const Tensor* wi : weights.wi) hidden_reads.push_back(wi);
  Tensor& expert_hidden =
      made(frame.float32_step_written_whole("expert_hidden", hidden_reads, {"E", "G", "C", "H"}, {E, G, C, H}),
           "expert_hidden");
  // mtf.dropout: noise = cast(U < keep_prob); noise /= keep_prob (a scalar, so
  // noise * f32(1 / keep_prob)); x * noise.
  Tensor* dropped = nullptr;
  if (dropout) {
    dropped = &made(frame.float32_step_written_whole("expert_hidden_dropout", {expert_hidden, dropout->uniform},
                                                     {"E", "G", "C", "H"}, {E, G, C, H}),
                    "expert_hidden_dropout");
  }
  const Tensor& hidden = dropped != nullptr ? *dropped : expert_hidden;
  // expert_output = dense(h, output_dim): per expert [G*C, H] x [H, N].
  Tensor& expert_outputs = made(
      frame.float32_step_written_whole("expert_outputs", {&hidden, weights.wo}, {"E", "G", "C", "N"}, {E, G, C, N}),
      "expert_outputs");

  const int64_t rows = G * C;  // every slot of one expert, all groups
#pragma omp parallel for schedule(static)
  for (int64_t e = 0; e < E; ++e) {
    const float* a_e = expert_inputs.f32.data() + e * rows * M;  // [G*C, M]
    float* h_e = expert_hidden.f32.data() + e * rows * H;        // [G*C, H]
    std::vector<float> factor;                                   // [G*C, H], from the second factor on
    for (size_t i = 0; i < activations.size(); ++i) {
      const float* wi_e = weights.wi[i]->f32.data() + e * M * H;  // [M, H]
      if (i > 0) factor.resize(static_cast<size_t>(rows * H));
      float* product = i == 0 ? h_e : factor.data();
      ops::matmul(a_e, wi_e, product, rows, M, H, ffn_products);
      ops::apply_activation(activations[i], product, rows * H);
      // functools.reduce(mtf.multiply, factors): ((f0 * f1) * f2) ...
      if (i > 0) {
        for (int64_t k = 0; k < rows * H; ++k) h_e[k] = h_e[k] * product[k];
      }
    }
    if (dropped != nullptr) {
      const float inverse_keep = static_cast<float>(1.0 / dropout->keep_prob);
      const float keep = static_cast<float>(dropout->keep_prob);
      const float* uniform = operands.dropout_uniform->f32.data();
      float* out = dropped->f32.data();
      for (int64_t k = e * rows * H; k < (e + 1) * rows * H; ++k) {
        const float noise = (uniform[k] < keep ? 1.0f : 0.0f) * inverse_keep;
        out[k] = expert_hidden.f32[static_cast<size_t>(k)] * noise;
      }
    }
    ops::matmul(hidden.f32.data() + e * rows * H, weights.wo->f32.data() + e * H * N,
                expert_outputs.f32.data() + e * rows * N, rows, H, N, ffn_products);
  }

  // output = einsum([expert_output, combine_tensor]) over E and C.
  Tensor& outputs =
      made(frame.float32_step_written_whole("outputs", {expert_outputs, recorded_combine}, {"G", "S", "N"}, {G, S, N}),
           "outputs");
  if (fast) {
    index_combine(expert_outputs, combine_tensor, outputs);
  } else {
    dense_combine(expert_outputs, combine_tensor, outputs);
  }
  return outputs;
}

}  // namespace moeref
