// Helpers for the tests of the PyTorch-family variants (hf_*, deepspeed_*, fairseq_*, tutel_*,
// megablocks_*): invariants their routings share.
#pragma once

#include <cstdint>
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

}  // namespace moeref::testing
