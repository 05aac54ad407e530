// Helpers for the tests of the PyTorch-family variants (hf_*, deepspeed_*, fairseq_*, tutel_*,
// megablocks_*): invariants their routings share.
#pragma once

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "test_support.hpp"

namespace moeref::testing {

// A top-1 routing that fills each expert in token order within each group: the n-th token of group
// g choosing expert e (n = 0, 1, ...) holds slot n when n < C and no slot (-1) otherwise.
// `expert_step` [G, S] and `slot_step` [G, S, 1] (index form) are steps of `trace`.
inline void check_top1_capacity_in_token_order(const Trace& trace, const std::string& expert_step,
                                               const std::string& slot_step, int64_t C) {
  const Tensor& expert = step(trace, expert_step);
  const Tensor& slot = step(trace, slot_step);
  const int64_t G = expert.shape[0], S = expert.shape[1];
  for (int64_t g = 0; g < G; ++g) {
    std::vector<int64_t> taken(64, 0);
    for (int64_t s = 0; s < S; ++s) {
      const size_t at = static_cast<size_t>(g * S + s);
      const int32_t e = expert.i32[at];
      const int64_t n = taken[static_cast<size_t>(e)]++;
      INFO("g=" << g << " s=" << s << " e=" << e << " n=" << n);
      CHECK(slot.i32[at] == (n < C ? n : -1));
    }
  }
}

// The numbers torch.manual_seed(seed); torch.rand(count) gives on CPU: PyTorch's CPU generator
// is MT19937 seeded by init_genrand(seed) (std::mt19937 is the same), and a float32 U[0, 1) is
// (word & (2^24 - 1)) * 2^-24 (pytorch/pytorch, aten/src/ATen/core/TransformationHelper.h,
// uniform_real). tools/source_tests/torch_rand_stream.py restates it and was checked against torch
// 1.13 on 400 values. `skip` drops that many draws first (what an nn.Linear's init consumed).
inline std::vector<float> torch_cpu_rand(uint32_t seed, size_t skip, size_t count) {
  std::mt19937 generator(seed);
  for (size_t i = 0; i < skip; ++i) generator();
  std::vector<float> values(count);
  for (float& value : values) value = static_cast<float>(generator() & 0xFFFFFFu) * (1.0f / 16777216.0f);
  return values;
}

}  // namespace moeref::testing
