// Who sits where: the routing a trace records, read back per token and per
// expert for `moeref explain` and `moeref render`.
//
// The seats come from the trace's [G, S, E, C] routing tensors (combine_tensor /
// combine_array with dispatch_tensor / dispatch_mask; mtf_moe2d: its outer level,
// [G, S, X, C]) or, in a candidate that holds only the index form, from
// routing_expert / routing_slot / routing_weight. What each token asked for comes
// from the variant's choice steps (routing_expert, expert_index(es), index_1 and
// index_2, gate_indices), the random policy's verdict from second_policy_keep,
// sampled_2 or should_route; padding from inputs.importance (0), inputs.paddings (1)
// or the padding_mask step (0).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "moeref/trace.hpp"

namespace moeref {

struct Seat {
  int32_t expert = 0;
  int32_t slot = 0;
  float weight = 0.0f;  // the combine weight
};

struct TokenRouting {
  int64_t group = 0;
  int64_t token = 0;  // s within its group
  bool padding = false;
  std::vector<int32_t> requested;  // the experts it chose, by rank (empty when experts choose tokens)
  std::vector<Seat> seats;         // the slots it got, by expert
  // Per rank of `requested`: 0 when a random second-expert policy dropped the choice
  // (second_policy_keep, sampled_2, should_route), 1 when it kept it, -1 when the
  // trace has no such policy step.
  std::vector<int8_t> policy_keep;
  bool seated_at(int32_t expert) const;
  // Rank k's choice was dropped by the policy rather than for want of a slot.
  bool dropped_by_policy(size_t k) const { return k < policy_keep.size() && policy_keep[k] == 0; }
};

struct RoutingView {
  std::string seats_from;     // "combine_tensor and dispatch_tensor", "routing_expert/slot/weight (index form)"
  std::string requests_from;  // the choice steps read, or "" when the variant's experts choose tokens
  std::string expert_dim = "E";
  int64_t G = 0, S = 0, E = 0, C = 0;
  std::vector<TokenRouting> tokens;  // G * S, group-major

  // Derived counts over every group.
  int64_t routed_tokens = 0;   // real tokens with at least one seat
  int64_t dropped_tokens = 0;  // real tokens with no seat at all
  int64_t padding_tokens = 0;
  int64_t requested_choices = 0;       // choices of real tokens
  int64_t dropped_choices = 0;         // of those, choices that got no seat
  int64_t policy_dropped_choices = 0;  // of those, dropped by the second-expert policy
  std::string policy_from;             // the policy steps read, or ""
  std::vector<int64_t> fill;           // [G * E]: slots taken

  int64_t fill_of(int64_t g, int64_t e) const { return fill[static_cast<size_t>(g * E + e)]; }
  const TokenRouting& at(int64_t g, int64_t s) const { return tokens[static_cast<size_t>(g * S + s)]; }
};

// nullopt when the trace holds no routing in either form (a trace of a step subset).
std::optional<RoutingView> routing_view(const Trace& trace);

// "t3" for token 3 of a one-group trace, "g1.t3" otherwise.
std::string token_label(const RoutingView& view, int64_t g, int64_t s);

}  // namespace moeref
