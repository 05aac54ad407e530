#include "moeref/ops/dispatch_tensor.hpp"

namespace moeref::ops {

Tensor dispatch_from_combine(const Tensor& combine_tensor) {
  Tensor dispatch_tensor = Tensor::int32(combine_tensor.dims, combine_tensor.shape);
  for (size_t k = 0; k < combine_tensor.f32.size(); ++k) dispatch_tensor.i32[k] = combine_tensor.f32[k] != 0.0f ? 1 : 0;
  return dispatch_tensor;
}

}  // namespace moeref::ops
