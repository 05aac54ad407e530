// Splitting a run by group (spec/sharding.md): `moeref run --groups FIRST:END`
// writes one shard, `moeref merge` joins the shards into the one-shot trace.
//
// A shard computes every input and the whole gating (all G groups), but the expert
// layer only for its groups; its trace keeps every tensor with a G dim cut to those
// groups and every other tensor (losses, counts, weights) whole, and says which
// groups it holds in config "groups": {"first", "end", "of"}.
#pragma once

#include <string>
#include <vector>

#include "moeref/config.hpp"
#include "moeref/trace.hpp"

namespace moeref {

// "FIRST:END" as given to `field` ("--groups"): two integers, 0 <= FIRST < END.
// Whether END <= G is known once the run resolves G (Frame).
GroupRange parse_group_range(const std::string& text, const std::string& field);

// Fails naming the config's variant, and the variants that can, when it cannot be
// split by group (VariantSpec::group_shards).
void check_group_shards_supported(const Config& config);

// One shard as read, with where it came from (for messages).
struct GroupShard {
  std::string source;
  Trace trace;
};

// The trace the one-shot run writes, from shards of one config (equal in
// everything but config "groups") that cover the groups [0, G) exactly once, given
// in any order. Throws InputError naming the shard files when one is not a shard,
// the configs differ, a group is missing or in two shards, or a tensor without a G
// dim (a loss, a count over all groups) is not bit for bit the same in every shard.
Trace merge_group_shards(std::vector<GroupShard> shards);

}  // namespace moeref
