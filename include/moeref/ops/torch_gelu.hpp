// F.gelu with approximate='none' (the default), as PyTorch's CPU kernel computes
// it (pytorch/pytorch v1.13.1, aten/src/ATen/native/cpu/Activation.cpp,
// GeluKernelImpl, the scalar path):
//   x * 0.5 * (1 + erf(x * M_SQRT1_2))
// evaluated left to right in float32: a = x * f32(M_SQRT1_2); e = erf(a);
// (x * 0.5) * (1 + e). erf is evaluated in double and rounded once (torch's
// vectorised path uses Sleef's erf, within 1 ulp).
#pragma once

namespace moeref::ops {

float torch_gelu(float x);

}  // namespace moeref::ops
