#include "moeref/ops/gshard_gates.hpp"

namespace moeref::ops {

Tensor gshard_gate(const Tensor& gates, const Tensor& mask) {
  const int64_t E = gates.shape.back();
  Tensor gate =
      Tensor::float32({gates.dims.begin(), gates.dims.end() - 1}, {gates.shape.begin(), gates.shape.end() - 1});
  for (size_t t = 0; t < gate.f32.size(); ++t) {
    double sum = 0.0;
    for (size_t k = t * static_cast<size_t>(E); k < (t + 1) * static_cast<size_t>(E); ++k) {
      sum += static_cast<double>(gates.f32[k] * static_cast<float>(mask.i32[k]));
    }
    gate.f32[t] = static_cast<float>(sum);
  }
  return gate;
}

Tensor gshard_gates_without_top_1(const Tensor& raw_gates, const Tensor& mask_1) {
  Tensor out = raw_gates;
  for (size_t k = 0; k < out.f32.size(); ++k)
    out.f32[k] = raw_gates.f32[k] * (1.0f - static_cast<float>(mask_1.i32[k]));
  return out;
}

}  // namespace moeref::ops
