#include "moeref/ops/mtf_top_k.hpp"

#include <stdexcept>
#include <vector>

#include "moeref/ops/top_k.hpp"

namespace moeref::ops {

bool mtf_top_k_is_iterative(int64_t k) { return k > 1 && k < 5; }

bool mtf_top_k_runs(int64_t n, int64_t k) { return k >= 0 && (mtf_top_k_is_iterative(k) || k <= n); }

void mtf_top_k(const float* row, int64_t stride, int64_t n, int64_t k, float* values, int32_t* indices) {
  if (!mtf_top_k_runs(n, k)) throw std::logic_error("mtf_top_k: TopKOperation raises for k > n");
  std::vector<float> x(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) x[static_cast<size_t>(i)] = row[i * stride];
  if (!mtf_top_k_is_iterative(k)) {
    // tf.math.top_k (k == 1: reduce_max and argmax select the same entry).
    std::vector<int32_t> chosen(static_cast<size_t>(k));
    tf_top_k_indices(x.data(), n, k, chosen.data());
    for (int64_t c = 0; c < k; ++c) {
      indices[c] = chosen[static_cast<size_t>(c)];
      values[c] = x[static_cast<size_t>(chosen[static_cast<size_t>(c)])];
    }
    return;
  }
  // _iterative_top_k: for i in range(k): max_val, max_index = top_1(x);
  // if i + 1 < k: x += one_hot(max_index, on_value=-1e9).
  const float kMinusBillion = -1e9f;
  for (int64_t i = 0; i < k; ++i) {
    int32_t best = 0;
    for (int64_t j = 1; j < n; ++j) {
      if (x[static_cast<size_t>(j)] > x[static_cast<size_t>(best)]) best = static_cast<int32_t>(j);
    }
    indices[i] = best;
    values[i] = x[static_cast<size_t>(best)];
    if (i + 1 < k) x[static_cast<size_t>(best)] = x[static_cast<size_t>(best)] + kMinusBillion;
  }
}

}  // namespace moeref::ops
