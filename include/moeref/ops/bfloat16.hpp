// bfloat16 as float32 values: the 8 high bits of the mantissa kept, rounded to nearest with
// ties to even (what XLA's and PyTorch's float32 -> bfloat16 conversions do; Eigen's
// Eigen::bfloat16 and jnp.bfloat16 round the same way). NaN stays NaN (quiet), and values that
// round past the largest bfloat16 become infinities. moeref stores bfloat16 tensors as float32
// holding exactly representable values, and restates a bfloat16 op as float32 arithmetic on
// bfloat16 operands rounded once to bfloat16 (spec/bfloat16.md).
#pragma once

#include <cstdint>

namespace moeref::ops {

float round_to_bfloat16(float x);

// A dot product of bfloat16 operands with a bfloat16 result, as XLA computes it on CPU (the
// operands widened to float32, the float32 result rounded to bfloat16): x [rows, M] and
// w [M, E], already bfloat16 values; out [rows, E] = bf16(f32(sum over M, in double)).
void bfloat16_matmul(const float* x, const float* w, int64_t rows, int64_t model_dim, int64_t num_experts, float* out);

// jax.nn.softmax on bfloat16 logits (jax-ml/jax, jax/_src/nn/functions.py, _softmax), every op
// rounded to bfloat16: d = bf16(x - max), u = bf16(exp(d)), z = bf16(sum of u in float32:
// jnp.sum upcasts bfloat16 for the computation), p = bf16(u / z).
void jax_softmax_bfloat16(const float* logits, float* probs, int64_t rows, int64_t num_experts);

// jax.nn.logsumexp on bfloat16 (jax/_src/ops/special.py, logsumexp): m = max (0 if not
// finite); s = bf16(sum in float32 of bf16(exp(bf16(x - m)))); bf16(bf16(log s) + m).
void jax_logsumexp_bfloat16(const float* x, float* out, int64_t rows, int64_t num_experts);

}  // namespace moeref::ops
