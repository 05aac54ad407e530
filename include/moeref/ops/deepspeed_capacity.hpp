// DeepSpeed's expert capacity (microsoft/DeepSpeed, deepspeed/moe/sharded_moe.py at
// 38327e0, _capacity):
//   capacity = torch.ceil((num_tokens / num_experts) * capacity_factor).to(torch.int64)
//   if capacity < min_capacity: capacity = min_capacity
// capacity_factor is a float32 tensor (torch.tensor(cf), torch.tensor(cf * 2),
// torch.tensor(cf * k): the multiple is taken in Python doubles first), and the
// Python float num_tokens / num_experts meets it as float32, so the product is
// f32(f32(S / E) * f32(factor)): S = 25, E = 2, factor 1.2 gives ceil(15.000001)
// = 16, where double arithmetic gives 15.
#pragma once

#include <cstdint>

namespace moeref::ops {

struct DeepspeedCapacity {
  int64_t expert_capacity = 0;  // C
  float scaled = 0.0f;          // f32(S / E) * f32(factor), before the ceil
  bool raised_to_min = false;   // capacity < min_capacity: C = min_capacity
};

// S tokens, E experts, `factor` the capacity factor times k (the caller's
// Python product), min_capacity as given.
DeepspeedCapacity deepspeed_capacity(int64_t S, int64_t E, double factor, int64_t min_capacity);

}  // namespace moeref::ops
