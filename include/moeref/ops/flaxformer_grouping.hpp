// Token padding, grouping and capacity of flaxformer's MoeLayer (google/flaxformer,
// flaxformer/architectures/moe/moe_layers.py at 399ea3a: _maybe_pad, _num_groups,
// MoeLayer.__call__).
#pragma once

#include <cstdint>

namespace moeref::ops {

// _maybe_pad(inputs [B, L, ...], num_experts, num_expert_replicas): when B*L is not a
// multiple of E*replicas, the fewest zero rows (batch padding, multiples of L) or
// zero positions (sequence padding, multiples of B) that make it one; sequence
// padding unless it needs strictly more tokens (`min_seq_padding * batch_size >
// min_batch_padding * seq_length` pads the batch). At most one of the two is nonzero.
struct FlaxformerPadding {
  int64_t batch_padding = 0;
  int64_t seq_padding = 0;
};
FlaxformerPadding flaxformer_padding(int64_t batch_size, int64_t seq_length, int64_t num_experts,
                                     int64_t num_expert_replicas);

// _num_groups(num_tokens, max_group_size, num_experts, num_expert_replicas,
// strict_group_size): the smallest g >= max(num_tokens // max_group_size, replicas * E)
// with num_tokens % g == 0 and g % (replicas * E) == 0, searching up to num_tokens.
// Throws InputError where the source raises ValueError (no such g; or strict and
// num_tokens / g != max_group_size).
int64_t flaxformer_num_groups(int64_t num_tokens, int64_t max_group_size, int64_t num_experts,
                              int64_t num_expert_replicas, bool strict_group_size);

// MoeLayer.__call__: expert_capacity = int(round(capacity_factor * tokens_per_group /
// num_experts)) in Python doubles (round: half to even), then max(., min_expert_capacity).
int64_t flaxformer_expert_capacity(int64_t tokens_per_group, double capacity_factor, int64_t num_experts,
                                   int64_t min_expert_capacity);

}  // namespace moeref::ops
