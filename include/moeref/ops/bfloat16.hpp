// bfloat16 as float32 values: the 8 high bits of the mantissa kept, rounded to nearest with
// ties to even (what XLA's and PyTorch's float32 -> bfloat16 conversions do; Eigen's
// Eigen::bfloat16 and jnp.bfloat16 round the same way). NaN stays NaN (quiet), and values that
// round past the largest bfloat16 become infinities. moeref stores bfloat16 tensors as float32
// holding exactly representable values, and restates a bfloat16 op as float32 arithmetic on
// bfloat16 operands rounded once to bfloat16 (spec/bfloat16.md).
#pragma once

namespace moeref::ops {

float round_to_bfloat16(float x);

}  // namespace moeref::ops
