#include "moeref/ops/flaxformer_grouping.hpp"

#include <algorithm>
#include <cmath>
#include <string>

#include "moeref/error.hpp"

namespace moeref::ops {

FlaxformerPadding flaxformer_padding(int64_t batch_size, int64_t seq_length, int64_t num_experts,
                                     int64_t num_expert_replicas) {
  const int64_t num_tokens = batch_size * seq_length;
  const int64_t total_num_experts = num_expert_replicas * num_experts;
  FlaxformerPadding padding;
  if (num_tokens % total_num_experts == 0) return padding;
  // Padding the batch dimension: whole sequences of seq_length tokens.
  int64_t min_batch_padding = 1;
  while ((num_tokens + min_batch_padding * seq_length) % total_num_experts != 0) ++min_batch_padding;
  // Padding the sequence dimension: one position in every sequence, batch_size tokens.
  int64_t min_seq_padding = 1;
  while ((num_tokens + min_seq_padding * batch_size) % total_num_experts != 0) ++min_seq_padding;
  if (min_seq_padding * batch_size > min_batch_padding * seq_length) {
    padding.batch_padding = min_batch_padding;
  } else {
    padding.seq_padding = min_seq_padding;
  }
  return padding;
}

int64_t flaxformer_num_groups(int64_t num_tokens, int64_t max_group_size, int64_t num_experts,
                              int64_t num_expert_replicas, bool strict_group_size) {
  const int64_t experts = num_expert_replicas * num_experts;
  auto viable = [&](int64_t n) { return num_tokens % n == 0 && n % experts == 0; };
  int64_t num_groups = std::max(num_tokens / max_group_size, experts);
  while (num_groups < num_tokens && !viable(num_groups)) ++num_groups;
  if (num_tokens % num_groups > 0) {
    fail_input("dims",
               std::to_string(num_tokens) + " tokens (after padding) for " + std::to_string(num_groups) + " groups",
               "a token count that num_groups divides (MoeLayer._num_groups raises ValueError)");
  }
  const int64_t group_size = num_tokens / num_groups;
  if (strict_group_size && group_size != max_group_size) {
    fail_input("hparams.strict_group_size", "true with group size " + std::to_string(group_size),
               "false, or a token count that gives groups of exactly max_group_size (_num_groups raises "
               "ValueError)");
  }
  return num_groups;
}

int64_t flaxformer_expert_capacity(int64_t tokens_per_group, double capacity_factor, int64_t num_experts,
                                   int64_t min_expert_capacity) {
  const double scaled = capacity_factor * static_cast<double>(tokens_per_group) / static_cast<double>(num_experts);
  // Python's round() on a float: to the nearest integer, ties to even.
  const double lower = std::floor(scaled);
  const double fraction = scaled - lower;
  double rounded = fraction > 0.5 ? lower + 1.0 : lower;
  if (fraction == 0.5) rounded = std::fmod(lower, 2.0) == 0.0 ? lower : lower + 1.0;
  const double capped = std::min(rounded, static_cast<double>(int64_t{1} << 40));
  return std::max(static_cast<int64_t>(capped), min_expert_capacity);
}

}  // namespace moeref::ops
