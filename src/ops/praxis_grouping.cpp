#include "moeref/ops/praxis_grouping.hpp"

#include <string>

#include "moeref/error.hpp"

namespace moeref::ops {

PraxisGrouping praxis_moe_groups(int64_t num_tokens, int64_t num_groups, std::optional<int64_t> min_group_size) {
  int64_t groups = num_groups;
  // num_tokens / num_groups is Python true division (a double).
  if (min_group_size.has_value() &&
      static_cast<double>(num_tokens) / static_cast<double>(groups) < static_cast<double>(*min_group_size)) {
    groups = (num_tokens + *min_group_size - 1) / *min_group_size;
  }
  if (num_tokens % groups != 0) {
    fail_input("hparams.num_groups", std::to_string(groups) + " groups for " + std::to_string(num_tokens) + " tokens",
               "a number of groups that evenly divides B*L (TransformerFeedForwardMoe raises ValueError)");
  }
  return {groups, num_tokens / groups};
}

}  // namespace moeref::ops
