#include "moeref/ops/mtf_grouping.hpp"

#include <algorithm>
#include <string>

#include "moeref/error.hpp"

namespace moeref::ops {

Grouping mtf_split_into_groups(int64_t n, int64_t max_group_size, int64_t mesh_dim_size) {
  if (n % mesh_dim_size != 0) {
    fail_input("hparams.mesh_dim_size", std::to_string(mesh_dim_size),
               "a divisor of the token count B*L = " + std::to_string(n));
  }
  int64_t num_groups = std::max<int64_t>(1, n / max_group_size);
  while (num_groups % mesh_dim_size != 0 || n % num_groups != 0) ++num_groups;
  return {num_groups, n / num_groups};
}

}  // namespace moeref::ops
