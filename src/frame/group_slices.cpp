#include "moeref/frame/group_slices.hpp"

#include <algorithm>
#include <cstdio>
#include <cstring>
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
template <typename Values>
void copy_groups(const Values& from, const GroupLayout& layout, int64_t groups, int64_t first, int64_t end, Values& to,
                 int64_t to_groups, int64_t to_first) {
  const int64_t run = (end - first) * layout.inner;
  for (int64_t o = 0; o < layout.outer; ++o) {
    const auto source = from.begin() + (o * groups + first) * layout.inner;
    std::copy(source, source + run, to.begin() + (o * to_groups + to_first) * layout.inner);
  }
}

// FNV-1a over 64-bit words, each word first spread over all 64 bits by
// splitmix64's finalizer (without it, a flip of a word's top bit would only flip
// the digest's top bit, and two such flips would cancel).
class WordDigest {
 public:
  void add(uint64_t word) {
    word ^= word >> 30;
    word *= 0xbf58476d1ce4e5b9ULL;
    word ^= word >> 27;
    word *= 0x94d049bb133111ebULL;
    word ^= word >> 31;
    state_ = (state_ ^ word) * 0x100000001b3ULL;
  }
  void add_bytes(const void* data, size_t size) {
    const unsigned char* bytes = static_cast<const unsigned char*>(data);
    size_t at = 0;
    for (; at + 8 <= size; at += 8) {
      uint64_t word = 0;
      std::memcpy(&word, bytes + at, 8);
      add(word);
    }
    uint64_t tail = 0;
    std::memcpy(&tail, bytes + at, size - at);
    add(tail ^ (static_cast<uint64_t>(size - at) << 56));
  }
  void add_text(const std::string& text) { add_bytes(text.data(), text.size()); }
  uint64_t value() const { return state_; }

 private:
  uint64_t state_ = 0xcbf29ce484222325ULL;
};

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

std::string inputs_digest(const std::deque<NamedTensor>& inputs) {
  // By name: a trace read back from JSON lists its inputs in name order.
  std::vector<const NamedTensor*> by_name;
  for (const NamedTensor& input : inputs) by_name.push_back(&input);
  std::sort(by_name.begin(), by_name.end(),
            [](const NamedTensor* a, const NamedTensor* b) { return a->name < b->name; });
  WordDigest digest;
  for (const NamedTensor* named : by_name) {
    const NamedTensor& input = *named;
    const Tensor& tensor = input.tensor;
    digest.add_text(input.name);
    for (const std::string& dim : tensor.dims) digest.add_text(dim);
    for (int64_t extent : tensor.shape) digest.add(static_cast<uint64_t>(extent));
    digest.add(tensor.dtype == DType::kInt32 ? 1 : 0);
    if (tensor.dtype == DType::kInt32) {
      digest.add_bytes(tensor.i32.data(), tensor.i32.size() * sizeof(int32_t));
    } else {
      digest.add_bytes(tensor.f32.data(), tensor.f32.size() * sizeof(float));
    }
  }
  char text[32];
  std::snprintf(text, sizeof(text), "mix64:%016llx", static_cast<unsigned long long>(digest.value()));
  return text;
}

}  // namespace moeref
