// The router matmul's blocks of 16 experts for wider instruction sets
// (router_block.inc). Only src/ops/router.cpp calls them, after checking that the CPU
// runs them; each gives the bits of its plain loop.
#pragma once

#include <cstdint>

namespace moeref::ops::kernels {

inline constexpr int64_t kRouterBlockExperts = 16;

// logits[t, e0 .. e0 + 16) for every token t: x [tokens, model_dim], router_weights
// [model_dim, num_experts], logits [tokens, num_experts], all row-major.
using RouterBlock = void(const float* x, const float* router_weights, int64_t tokens, int64_t model_dim,
                         int64_t num_experts, int64_t e0, float* logits);
using RouterBlockFn = RouterBlock*;

RouterBlock router_block_avx2, router_block_avx512;

}  // namespace moeref::ops::kernels
