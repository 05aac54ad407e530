#include "moeref/ops/top_k.hpp"

#include <algorithm>
#include <numeric>
#include <vector>

namespace moeref::ops {

void tf_top_k_indices(const float* values, int64_t n, int64_t k, int32_t* indices) {
  std::vector<int32_t> order(static_cast<size_t>(n));
  std::iota(order.begin(), order.end(), 0);
  // stable_comp(a, b): values[b] < values[a], or equal values and a < b.
  std::sort(order.begin(), order.end(), [values](int32_t a, int32_t b) {
    if (values[b] < values[a]) return true;
    if (values[b] > values[a]) return false;
    return a < b;
  });
  for (int64_t i = 0; i < k; ++i) indices[i] = order[static_cast<size_t>(i)];
}

int64_t praxis_top_k_count(int64_t n, int64_t k) { return (k == 0 || k > n) ? n : k; }

void praxis_top_k_indices(const float* values, int64_t n, int64_t k, int32_t* indices) {
  std::vector<int32_t> sorted_idxs(static_cast<size_t>(n));
  std::iota(sorted_idxs.begin(), sorted_idxs.end(), 0);
  // lax.sort_key_val(x, bcast_idxs): ascending by key, stable (equal keys keep index order).
  std::stable_sort(sorted_idxs.begin(), sorted_idxs.end(),
                   [values](int32_t a, int32_t b) { return values[a] < values[b]; });
  // sorted_idxs[..., -k:]
  const int64_t count = praxis_top_k_count(n, k);
  for (int64_t i = 0; i < count; ++i) indices[i] = sorted_idxs[static_cast<size_t>(n - count + i)];
}

}  // namespace moeref::ops
