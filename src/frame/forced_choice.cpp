#include "moeref/frame/forced_choice.hpp"

namespace moeref {

Tensor with_forced_top_1(Tensor index, const Tensor* forced, int64_t n) {
  if (forced == nullptr) return index;
  for (size_t r = 0; r < index.i32.size(); ++r) {
    if (forced->i32[r] >= 0 && forced->i32[r] < n) index.i32[r] = forced->i32[r];
  }
  return index;
}

Tensor with_forced_keep(Tensor keep, const Tensor* forced) {
  if (forced == nullptr) return keep;
  for (size_t r = 0; r < keep.i32.size(); ++r) {
    if (forced->i32[r] >= 0) keep.i32[r] = forced->i32[r] != 0 ? 1 : 0;
  }
  return keep;
}

}  // namespace moeref
