#include "moeref/ops/torch_gelu.hpp"

#include <cmath>

namespace moeref::ops {

float torch_gelu(float x) {
  // kAlpha = M_SQRT1_2 and kPointFive = 0.5 as scalar_t (float32).
  const float alpha = static_cast<float>(M_SQRT1_2);
  const float erf_term = static_cast<float>(std::erf(static_cast<double>(x * alpha)));
  return (x * 0.5f) * (1.0f + erf_term);
}

}  // namespace moeref::ops
