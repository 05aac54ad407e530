#include "moeref/ops/one_hot.hpp"

namespace moeref::ops {

Tensor one_hot(const Tensor& index, int64_t depth, const std::string& depth_dim) {
  std::vector<std::string> dims = index.dims;
  std::vector<int64_t> shape = index.shape;
  dims.push_back(depth_dim);
  shape.push_back(depth);
  Tensor out = Tensor::int32(dims, shape);
  for (size_t r = 0; r < index.i32.size(); ++r) {
    if (index.i32[r] >= 0 && index.i32[r] < depth) out.i32[r * static_cast<size_t>(depth) + index.i32[r]] = 1;
  }
  return out;
}

Tensor sum_over_last(const Tensor& values) {
  const int64_t last = values.shape.back();
  Tensor out =
      Tensor::int32({values.dims.begin(), values.dims.end() - 1}, {values.shape.begin(), values.shape.end() - 1});
  for (size_t r = 0; r < out.i32.size(); ++r) {
    int32_t sum = 0;
    for (int64_t k = 0; k < last; ++k) sum += values.i32[r * static_cast<size_t>(last) + static_cast<size_t>(k)];
    out.i32[r] = sum;
  }
  return out;
}

}  // namespace moeref::ops
