// mtf _split_into_groups (tensorflow/mesh, mesh_tensorflow/transformer/moe.py).
#pragma once

#include <cstdint>

namespace moeref::ops {

struct Grouping {
  int64_t num_groups;  // G
  int64_t group_size;  // S
};

// num_groups starts at max(1, n // max_group_size) and grows until it divides n
// and is a multiple of mesh_dim_size. S may exceed max_group_size (n=1500,
// max 1024 gives G=1, S=1500). Throws InputError when n % mesh_dim_size != 0.
Grouping mtf_split_into_groups(int64_t n, int64_t max_group_size, int64_t mesh_dim_size);

}  // namespace moeref::ops
