#include "moeref/ops/lingvo_expert_padding.hpp"

#include "moeref/ops/gshard_sampling.hpp"

namespace moeref::ops {

Tensor lingvo_expert_padded_logits(const Tensor& logits, const std::vector<int64_t>& expert_padding_idx) {
  const int64_t E = logits.shape.back();
  std::vector<bool> epad_mask(static_cast<size_t>(E), false);
  for (int64_t index : expert_padding_idx) epad_mask[static_cast<size_t>(index < 0 ? index + E : index)] = true;
  const float very_negative = gshard_very_negative_logit();
  Tensor padded = logits;
  for (size_t k = 0; k < padded.f32.size(); ++k) {
    if (epad_mask[k % static_cast<size_t>(E)]) padded.f32[k] = very_negative;
  }
  return padded;
}

}  // namespace moeref::ops
