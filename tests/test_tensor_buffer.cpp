// Tensor storage: new tensors still start at zero, on any thread count, now that the
// buffers leave a resize unset and Tensor::float32 / int32 write the zeros themselves.
#include <omp.h>

#include <catch2/catch.hpp>
#include <cstdint>
#include <vector>

#include "moeref/tensor.hpp"
#include "moeref/tensor_buffer.hpp"

namespace {

// Frees a buffer full of nonzero values of `count` elements first, so that the next
// allocation of that size likely gets the same memory back, not fresh zero pages.
void leave_garbage(size_t count) {
  moeref::FloatBuffer garbage(count);
  for (float& value : garbage) value = 1.5f;
}

bool all_zero_floats(const moeref::FloatBuffer& values) {
  for (float value : values) {
    if (value != 0.0f) return false;
  }
  return true;
}

}  // namespace

TEST_CASE("A new tensor is all zeros over reused memory, for one slice and several", "[tensor]") {
  const int threads_before = omp_get_max_threads();
  // 20k floats: one 1 MiB slice, from the heap; 700k: three slices.
  for (int64_t count : {int64_t{20000}, int64_t{700000}}) {
    for (int threads : {1, 2, 3}) {
      omp_set_num_threads(threads);
      leave_garbage(static_cast<size_t>(count));
      const moeref::Tensor floats = moeref::Tensor::float32({"S", "M"}, {count / 4, 4});
      CHECK(static_cast<int64_t>(floats.f32.size()) == count);
      CHECK(all_zero_floats(floats.f32));
      leave_garbage(static_cast<size_t>(count));
      const moeref::Tensor ints = moeref::Tensor::int32({"S"}, {count});
      bool ints_zero = true;
      for (int32_t value : ints.i32) ints_zero = ints_zero && value == 0;
      CHECK(ints_zero);
    }
  }
  omp_set_num_threads(threads_before);
}

TEST_CASE("fill_zeros clears exactly the elements it is given", "[tensor]") {
  // 262145 floats: one more than a 1 MiB slice, so the last slice holds one element.
  std::vector<float> values(262147, 2.0f);
  moeref::fill_zeros(values.data() + 1, 262145);
  CHECK(values.front() == 2.0f);
  CHECK(values.back() == 2.0f);
  size_t zeros = 0;
  for (float value : values) zeros += value == 0.0f ? 1 : 0;
  CHECK(zeros == 262145);
}

TEST_CASE("A buffer compares equal to a plain vector of the same values", "[tensor]") {
  const moeref::FloatBuffer buffer{1.0f, 2.0f, 3.0f};
  CHECK(buffer == std::vector<float>{1.0f, 2.0f, 3.0f});
  CHECK(std::vector<float>{1.0f, 2.0f, 3.0f} == buffer);
  CHECK(buffer != std::vector<float>{1.0f, 2.0f});
  CHECK(buffer != std::vector<float>{1.0f, 2.0f, 4.0f});
}
