#include "moeref/ops/routing_form.hpp"

#include <string>

#include "moeref/error.hpp"

namespace moeref::ops {

void dense_from_index_form(const Tensor& routing_expert, const Tensor& routing_slot, const Tensor& routing_weight,
                           int64_t E, int64_t C, Tensor& combine_tensor, Tensor& dispatch_tensor) {
  const int64_t G = routing_expert.shape[0], S = routing_expert.shape[1], K = routing_expert.shape[2];
  combine_tensor = Tensor::float32({"G", "S", "E", "C"}, {G, S, E, C});
  dispatch_tensor = Tensor::int32({"G", "S", "E", "C"}, {G, S, E, C});
  for (int64_t t = 0; t < G * S; ++t) {
    for (int64_t k = 0; k < K; ++k) {
      const size_t at = static_cast<size_t>(t * K + k);
      const int32_t slot = routing_slot.i32[at];
      if (slot < 0) continue;
      const int32_t expert = routing_expert.i32[at];
      if (expert < 0 || expert >= E) {
        fail_input("routing_expert" + routing_expert.named_index(static_cast<int64_t>(at)), std::to_string(expert),
                   "an expert in [0, " + std::to_string(E) + ") where routing_slot >= 0");
      }
      if (slot >= C) {
        fail_input("routing_slot" + routing_slot.named_index(static_cast<int64_t>(at)), std::to_string(slot),
                   "-1 or a slot in [0, " + std::to_string(C) + ")");
      }
      combine_tensor.f32[static_cast<size_t>((t * E + expert) * C + slot)] += routing_weight.f32[at];
    }
  }
  for (size_t i = 0; i < combine_tensor.f32.size(); ++i) dispatch_tensor.i32[i] = combine_tensor.f32[i] != 0.0f ? 1 : 0;
}

}  // namespace moeref::ops
