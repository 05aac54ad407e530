// Token grouping of praxis TransformerFeedForwardMoe (google/praxis,
// praxis/layers/transformers.py, `TransformerFeedForwardMoe._dispatch_and_combine_expert_outputs`,
// at feeaff1):
//
//   num_groups = self.num_groups
//   if min_group_size is not None and num_tokens / num_groups < min_group_size:
//     num_groups = (num_tokens + min_group_size - 1) // min_group_size
//   if num_tokens % num_groups != 0: raise ValueError
//   g_len = num_tokens // num_groups
#pragma once

#include <cstdint>
#include <optional>

namespace moeref::ops {

struct PraxisGrouping {
  int64_t num_groups;  // G
  int64_t group_size;  // S (g_len)
};

// Throws InputError (the source's ValueError) when G does not divide num_tokens.
PraxisGrouping praxis_moe_groups(int64_t num_tokens, int64_t num_groups, std::optional<int64_t> min_group_size);

}  // namespace moeref::ops
