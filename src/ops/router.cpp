#include "moeref/ops/router.hpp"

#include <algorithm>
#include <exception>
#include <string>

#include "kernels/router_blocks.hpp"
#include "moeref/ops/matmul.hpp"

namespace moeref::ops {

namespace {

// Experts summed side by side: a token's row of x meets each row of the weights once,
// and the independent sums run as vector lanes instead of one long chain of adds.
constexpr int64_t kExpertsAtOnce = 16;

// logits[e0 .. e0 + count) of one token; each sum still runs m = 0 .. M-1 from 0.0.
template <int64_t kCount>
void token_logits(const float* x_row, const float* router_weights, int64_t model_dim, int64_t num_experts, int64_t e0,
                  int64_t count, float* logits_row) {
  double sums[kExpertsAtOnce] = {};
  const int64_t n = kCount > 0 ? kCount : count;
  for (int64_t m = 0; m < model_dim; ++m) {
    const double x_m = static_cast<double>(x_row[m]);
    const float* w = router_weights + m * num_experts + e0;
    for (int64_t j = 0; j < n; ++j) sums[j] += x_m * static_cast<double>(w[j]);
  }
  for (int64_t j = 0; j < n; ++j) logits_row[e0 + j] = static_cast<float>(sums[j]);
}

// The wider block of 16 experts for the instruction set of the matmul kernel in use
// (so MOEREF_MATMUL_KERNEL=generic keeps the router on the plain loop too), or null.
// Never throws: it runs inside parallel loops, and a bad MOEREF_MATMUL_KERNEL (which
// run_config reports before any product) leaves the router on the plain loop here.
kernels::RouterBlockFn wide_block() {
#if defined(__x86_64__)
  std::string kernel;
  try {
    kernel = matmul_kernel();
  } catch (const std::exception&) {
    return nullptr;
  }
  if (kernel == "avx512") return kernels::router_block_avx512;
  if (kernel == "avx2") return kernels::router_block_avx2;
#endif
  return nullptr;
}

}  // namespace

// Each product of two float32 values is exact in double, so each logit is one rounding
// of a double sum in order m = 0 .. M-1, whatever the lanes. Whole blocks of 16 experts
// go to the wider kernels where the CPU has them (several tokens side by side: the medium
// size's 4096 x 512 x 16 on one core of README's Xeon took 6.8 ms in the plain loop, 3.7
// with AVX2, 2.4 with AVX-512); the rest to the plain loop.
void router_logits(const float* x, const float* router_weights, int64_t tokens, int64_t model_dim, int64_t num_experts,
                   float* logits) {
  static_assert(kernels::kRouterBlockExperts == kExpertsAtOnce, "a wide block is one block of the plain loop");
  int64_t wide_experts = 0;
  if (const kernels::RouterBlockFn block = wide_block()) {
    for (; wide_experts + kExpertsAtOnce <= num_experts; wide_experts += kExpertsAtOnce) {
      block(x, router_weights, tokens, model_dim, num_experts, wide_experts, logits);
    }
  }
  for (int64_t t = 0; t < tokens; ++t) {
    const float* x_row = x + t * model_dim;
    float* logits_row = logits + t * num_experts;
    for (int64_t e0 = wide_experts; e0 < num_experts; e0 += kExpertsAtOnce) {
      const int64_t count = std::min(kExpertsAtOnce, num_experts - e0);
      if (count == kExpertsAtOnce) {
        token_logits<kExpertsAtOnce>(x_row, router_weights, model_dim, num_experts, e0, count, logits_row);
      } else {
        token_logits<0>(x_row, router_weights, model_dim, num_experts, e0, count, logits_row);
      }
    }
  }
}

Tensor router_logits(const Tensor& x, const Tensor& router_weights) {
  const int64_t G = x.shape[0], S = x.shape[1], M = x.shape[2], E = router_weights.shape[1];
  Tensor logits = Tensor::float32({"G", "S", "E"}, {G, S, E});  // [G, S, E]
#pragma omp parallel for schedule(static)
  for (int64_t g = 0; g < G; ++g) {
    router_logits(x.f32.data() + g * S * M, router_weights.f32.data(), S, M, E, logits.f32.data() + g * S * E);
  }
  return logits;
}

}  // namespace moeref::ops
