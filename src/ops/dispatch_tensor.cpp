#include "moeref/ops/dispatch_tensor.hpp"

#include <cstdint>

namespace moeref::ops {

Tensor dispatch_from_combine(const Tensor& combine_tensor) {
  // Every element is written below: no zeros first.
  Tensor dispatch_tensor = Tensor::with_unset_values(combine_tensor.dims, combine_tensor.shape, DType::kInt32);
  const int64_t n = static_cast<int64_t>(combine_tensor.f32.size());
  const float* combine = combine_tensor.f32.data();
  int32_t* dispatch = dispatch_tensor.i32.data();
  // Elementwise, so any split over threads gives the same tensor.
#pragma omp parallel for schedule(static)
  for (int64_t k = 0; k < n; ++k) dispatch[k] = combine[k] != 0.0f ? 1 : 0;
  return dispatch_tensor;
}

}  // namespace moeref::ops
