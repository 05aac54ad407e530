#include "moeref/tensor_buffer.hpp"

#include <algorithm>
#include <cstring>

namespace moeref {

namespace {

// Only the value 0 is written, so the result cannot depend on the schedule.
template <class T>
void fill_zeros_in_slices(T* values, size_t count) {
  const size_t slice = (size_t{1} << 20) / sizeof(T);
  const int64_t slices = static_cast<int64_t>((count + slice - 1) / slice);
#pragma omp parallel for schedule(static) if (slices > 1)
  for (int64_t k = 0; k < slices; ++k) {
    const size_t begin = static_cast<size_t>(k) * slice;
    std::memset(values + begin, 0, std::min(slice, count - begin) * sizeof(T));
  }
}

}  // namespace

void fill_zeros(float* values, size_t count) { fill_zeros_in_slices(values, count); }
void fill_zeros(int32_t* values, size_t count) { fill_zeros_in_slices(values, count); }

}  // namespace moeref
