// PyTorch's ways of turning a uniform draw U in [0, 1) into the noise its MoE
// routers use. moeref records U (every random draw is an input, notation §4.7)
// and restates the source's arithmetic from U, so a backend that replays the
// recorded U gets the same noise bit for bit. Each rule was checked against
// torch 1.13 on CPU by drawing U and the noise from the same generator state
// (spec/notation.md §5 gives the experiments).
//
// Dims: any; the result has the dims and shape of U.
#pragma once

#include "moeref/tensor.hpp"

namespace moeref::ops {

// Tensor.uniform_(from, to) (pytorch/pytorch, aten/src/ATen/core/
// TransformationHelper.h, uniform_real, as the CPU uniform kernel calls it):
// from and to are rounded to float32 first, then the value is
// f32(U * (to - from) + from) computed in double. Hugging Face's router jitter
// `uniform_(1.0 - eps, 1.0 + eps)` is this with from = 1 - eps, to = 1 + eps (in
// Python doubles).
Tensor torch_uniform_(const Tensor& uniform, double from, double to);

// torch.distributions.Uniform(low=tensor(low), high=tensor(high)).rsample
// (pytorch/pytorch, torch/distributions/uniform.py, rsample): low and high are
// float32 tensors, and the value is low + U * (high - low), each op in float32.
// DeepSpeed's multiplicative_jitter and its random token selection use it.
Tensor torch_distributions_uniform(const Tensor& uniform, double low, double high);

// The uniform inside torch.distributions.Gumbel(0, 1).rsample (torch/
// distributions/gumbel.py: a TransformedDistribution of
// Uniform(finfo.tiny, 1 - finfo.eps)): u = tiny + U * (f32(1 - eps) - tiny) in
// float32. The Gumbel value is then -log(-log(u)) (ops::gumbel_noise): the two
// AffineTransforms are 0 + (-1) * x, exact negations.
Tensor torch_gumbel_uniform(const Tensor& uniform);

}  // namespace moeref::ops
