#include "moeref/frame/group_slices.hpp"

#include <algorithm>
#include <stdexcept>

namespace moeref {

namespace {

// Elements before G (the number of runs) and after it (one group's run length).
struct GroupLayout {
  int64_t outer = 1;
  int64_t inner = 1;
};

GroupLayout layout_around(const Tensor& tensor, int64_t axis) {
  GroupLayout layout;
  for (int64_t i = 0; i < tensor.rank(); ++i) {
    if (i < axis) layout.outer *= tensor.shape[static_cast<size_t>(i)];
    if (i > axis) layout.inner *= tensor.shape[static_cast<size_t>(i)];
  }
  return layout;
}

// Appends the groups [first, end) of each outer index of `from` to `to`, for the
// data vector of the tensor's dtype.
template <typename T>
void copy_groups(const std::vector<T>& from, const GroupLayout& layout, int64_t groups, int64_t first, int64_t end,
                 std::vector<T>& to, int64_t to_groups, int64_t to_first) {
  const int64_t run = (end - first) * layout.inner;
  for (int64_t o = 0; o < layout.outer; ++o) {
    const auto source = from.begin() + (o * groups + first) * layout.inner;
    std::copy(source, source + run, to.begin() + (o * to_groups + to_first) * layout.inner);
  }
}

}  // namespace

int64_t group_axis(const Tensor& tensor) {
  const auto it = std::find(tensor.dims.begin(), tensor.dims.end(), "G");
  return it == tensor.dims.end() ? -1 : static_cast<int64_t>(it - tensor.dims.begin());
}

Tensor slice_groups(const Tensor& tensor, int64_t first, int64_t end) {
  const int64_t axis = group_axis(tensor);
  if (axis < 0) throw std::logic_error("slice_groups: the tensor has no G dim");
  const int64_t groups = tensor.shape[static_cast<size_t>(axis)];
  if (first < 0 || end < first || end > groups) throw std::logic_error("slice_groups: groups out of range");
  std::vector<int64_t> shape = tensor.shape;
  shape[static_cast<size_t>(axis)] = end - first;
  Tensor out = tensor.dtype == DType::kInt32 ? Tensor::int32(tensor.dims, shape) : Tensor::float32(tensor.dims, shape);
  const GroupLayout layout = layout_around(tensor, axis);
  if (tensor.dtype == DType::kInt32) {
    copy_groups(tensor.i32, layout, groups, first, end, out.i32, end - first, 0);
  } else {
    copy_groups(tensor.f32, layout, groups, first, end, out.f32, end - first, 0);
  }
  return out;
}

Tensor concat_groups(const std::vector<const Tensor*>& pieces) {
  if (pieces.empty()) throw std::logic_error("concat_groups: no pieces");
  const Tensor& head = *pieces.front();
  const int64_t axis = group_axis(head);
  if (axis < 0) throw std::logic_error("concat_groups: the tensor has no G dim");
  int64_t groups = 0;
  for (const Tensor* piece : pieces) {
    std::vector<int64_t> others = piece->shape, head_others = head.shape;
    if (piece->dims != head.dims || piece->dtype != head.dtype || others.size() != head_others.size()) {
      throw std::logic_error("concat_groups: pieces of different dims or dtype");
    }
    others[static_cast<size_t>(axis)] = head_others[static_cast<size_t>(axis)] = 0;
    if (others != head_others) throw std::logic_error("concat_groups: pieces differ outside G");
    groups += piece->shape[static_cast<size_t>(axis)];
  }
  std::vector<int64_t> shape = head.shape;
  shape[static_cast<size_t>(axis)] = groups;
  Tensor out = head.dtype == DType::kInt32 ? Tensor::int32(head.dims, shape) : Tensor::float32(head.dims, shape);
  int64_t at = 0;
  for (const Tensor* piece : pieces) {
    const int64_t extent = piece->shape[static_cast<size_t>(axis)];
    const GroupLayout layout = layout_around(*piece, axis);
    if (head.dtype == DType::kInt32) {
      copy_groups(piece->i32, layout, extent, 0, extent, out.i32, groups, at);
    } else {
      copy_groups(piece->f32, layout, extent, 0, extent, out.f32, groups, at);
    }
    at += extent;
  }
  return out;
}

}  // namespace moeref
