#include "moeref/ops/elementwise.hpp"

namespace moeref::ops {

namespace {

Tensor float32_like(const Tensor& x) { return Tensor::float32(x.dims, x.shape); }

}  // namespace

Tensor scale_by(const Tensor& values, const Tensor& factor) {
  const size_t rows = static_cast<size_t>(factor.num_elements());
  const size_t width = rows == 0 ? 0 : static_cast<size_t>(values.num_elements()) / rows;
  Tensor out = values;
  for (size_t k = 0; k < (rows * width); ++k) {
    const size_t r = k / width;
    if (values.dtype == DType::kInt32) {
      const int32_t f = factor.dtype == DType::kInt32 ? factor.i32[r] : static_cast<int32_t>(factor.f32[r]);
      out.i32[k] = values.i32[k] * f;
    } else {
      const float f = factor.dtype == DType::kInt32 ? static_cast<float>(factor.i32[r]) : factor.f32[r];
      out.f32[k] = values.f32[k] * f;
    }
  }
  return out;
}

Tensor one_minus(const Tensor& x) {
  Tensor out = float32_like(x);
  for (size_t k = 0; k < x.f32.size(); ++k) out.f32[k] = 1.0f - x.f32[k];
  return out;
}

Tensor equal_to(const Tensor& x, float value) {
  Tensor out = Tensor::int32(x.dims, x.shape);
  for (size_t k = 0; k < x.f32.size(); ++k) out.i32[k] = x.f32[k] == value ? 1 : 0;
  return out;
}

Tensor greater_than(const Tensor& x, float value) {
  Tensor out = Tensor::int32(x.dims, x.shape);
  for (size_t k = 0; k < x.f32.size(); ++k) out.i32[k] = x.f32[k] > value ? 1 : 0;
  return out;
}

Tensor add(const Tensor& a, const Tensor& b) {
  Tensor out = float32_like(a);
  for (size_t k = 0; k < a.f32.size(); ++k) out.f32[k] = a.f32[k] + b.f32[k];
  return out;
}

Tensor add(const Tensor& a, float scalar) {
  Tensor out = float32_like(a);
  for (size_t k = 0; k < a.f32.size(); ++k) out.f32[k] = a.f32[k] + scalar;
  return out;
}

Tensor divide(const Tensor& a, const Tensor& b) {
  Tensor out = float32_like(a);
  for (size_t k = 0; k < a.f32.size(); ++k) out.f32[k] = a.f32[k] / b.f32[k];
  return out;
}

Tensor positive_or_one(const Tensor& x) {
  Tensor out = float32_like(x);
  for (size_t k = 0; k < x.f32.size(); ++k) out.f32[k] = x.f32[k] > 0.0f ? x.f32[k] : 1.0f;
  return out;
}

}  // namespace moeref::ops
