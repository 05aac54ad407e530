// The storage of a tensor's values: a std::vector whose elements start unset.
//
// std::vector<float>(n) writes n zeros on one thread before anyone else touches the
// memory. For the [E, G, C, H] tensors of a layer that loop also takes every first-touch
// page fault (the kernel maps and clears each fresh page inside it), so at two threads
// it cost more than a tenth of the layer. With this allocator a resize leaves the new
// elements unset and their owner writes them first: Tensor::float32 / Tensor::int32
// write zeros from all threads (fill_zeros), and a reader that fills every element from
// a file writes nothing twice.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <new>
#include <utility>
#include <vector>

namespace moeref {

template <class T>
struct UnsetAllocator {
  using value_type = T;

  UnsetAllocator() = default;
  template <class U>
  explicit UnsetAllocator(const UnsetAllocator<U>& /*other*/) {}

  T* allocate(size_t n) { return std::allocator<T>().allocate(n); }
  void deallocate(T* memory, size_t n) { std::allocator<T>().deallocate(memory, n); }

  // resize(n) and vector(n) construct with no arguments: leave the value unset.
  template <class U>
  void construct(U* at) {
    ::new (static_cast<void*>(at)) U;
  }
  template <class U, class... Args>
  void construct(U* at, Args&&... args) {
    ::new (static_cast<void*>(at)) U(std::forward<Args>(args)...);
  }

  friend bool operator==(const UnsetAllocator& /*a*/, const UnsetAllocator& /*b*/) { return true; }
  friend bool operator!=(const UnsetAllocator& /*a*/, const UnsetAllocator& /*b*/) { return false; }
};

using FloatBuffer = std::vector<float, UnsetAllocator<float>>;
using Int32Buffer = std::vector<int32_t, UnsetAllocator<int32_t>>;

// A buffer equals a plain vector holding the same values in the same order (tests and
// callers compare tensors with literal std::vector lists).
template <class T>
bool operator==(const std::vector<T, UnsetAllocator<T>>& buffer, const std::vector<T>& values) {
  return std::equal(buffer.begin(), buffer.end(), values.begin(), values.end());
}
template <class T>
bool operator==(const std::vector<T>& values, const std::vector<T, UnsetAllocator<T>>& buffer) {
  return buffer == values;
}
template <class T>
bool operator!=(const std::vector<T, UnsetAllocator<T>>& buffer, const std::vector<T>& values) {
  return !(buffer == values);
}
template <class T>
bool operator!=(const std::vector<T>& values, const std::vector<T, UnsetAllocator<T>>& buffer) {
  return !(buffer == values);
}

// Sets every element to zero, in fixed 1 MiB slices shared among the threads, so that
// fresh pages are first touched (and cleared by the kernel) by all threads at once.
void fill_zeros(float* values, size_t count);
void fill_zeros(int32_t* values, size_t count);

}  // namespace moeref
