// Tensors cut to a range of groups and joined again: the pieces of
// `moeref run --groups` and `moeref merge` (spec/sharding.md).
//
// A tensor is cut along its dim named "G" wherever that dim stands ([G, S, M],
// [E, G, C, H]). Data is row-major, so for a tensor [P..., G, Q...] the groups
// [first, end) are, for each index over P, one contiguous run of
// (end - first) * prod(Q) elements: cutting and joining copy those runs in order.
#pragma once

#include <cstdint>
#include <deque>
#include <string>
#include <vector>

#include "moeref/tensor.hpp"

namespace moeref {

// The position of dim "G" in `tensor.dims`, or -1 when it has none.
int64_t group_axis(const Tensor& tensor);

// The groups [first, end) of `tensor`, which has a G dim with at least `end` groups
// (std::logic_error otherwise): the same dims, G's extent end - first.
Tensor slice_groups(const Tensor& tensor, int64_t first, int64_t end);

// The pieces joined along G in the order given: each has the same dims, dtype and
// extents except G's (std::logic_error otherwise; callers check what they read).
Tensor concat_groups(const std::vector<const Tensor*>& pieces);

// A digest of a run's inputs, whole (every name, dim, extent, dtype and data bit, by
// name): "mix64:" and 16 hex digits, FNV-1a over splitmix64-mixed 64-bit words. A
// shard records it before it is cut, and merge checks the joined inputs against it,
// so shards made from different supplied inputs, or edited, are not joined. It
// catches mistakes, not forgery.
std::string inputs_digest(const std::deque<NamedTensor>& inputs);

}  // namespace moeref
