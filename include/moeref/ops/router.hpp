// The router matmul: logits[t, e] = sum_m x[t, m] * router_weights[m, e], no bias.
//
// An explicit loop over m in increasing order, accumulated in double and
// rounded once to float32, so routing decisions never depend on the CPU, the
// compiler or a BLAS blocking choice.
#pragma once

#include <cstdint>

#include "moeref/tensor.hpp"

namespace moeref::ops {

// x: [T, M], router_weights: [M, E], logits: [T, E]; all row-major.
void router_logits(const float* x, const float* router_weights, int64_t tokens, int64_t model_dim, int64_t num_experts,
                   float* logits);

// The same on tensors: x [G, S, M], router_weights [M, E] -> logits [G, S, E]
// (einsum 'GSM,ME->GSE'), groups in parallel.
Tensor router_logits(const Tensor& x, const Tensor& router_weights);

}  // namespace moeref::ops
