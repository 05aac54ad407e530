// The data text of long tensors is formatted in chunks on every thread
// (src/trace/trace_data_text.cpp): the bytes must not depend on the chunking or the
// thread count, and progress must reach the end.
#include <omp.h>

#include <catch2/catch.hpp>
#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "moeref/json_number.hpp"
#include "moeref/trace.hpp"
#include "moeref/trace_data_text.hpp"

namespace moeref {

namespace {

// 200,003 elements: three full chunks of 2^16 and a partial one, with the values
// whose text is special (NaN, infinities, -0, subnormals) spread across chunk edges.
Tensor awkward_float_tensor() {
  Tensor t = Tensor::float32({"S"}, {200003});
  for (size_t i = 0; i < t.f32.size(); ++i) t.f32[i] = static_cast<float>(std::sin(static_cast<double>(i))) * 1e3f;
  const size_t chunk = size_t{1} << 16;
  t.f32[0] = -0.0f;
  t.f32[chunk - 1] = std::numeric_limits<float>::quiet_NaN();
  t.f32[chunk] = std::numeric_limits<float>::infinity();
  t.f32[2 * chunk] = -std::numeric_limits<float>::infinity();
  t.f32[2 * chunk + 1] = std::numeric_limits<float>::denorm_min();
  t.f32.back() = -0.0f;
  return t;
}

// The text element by element, one thread, as a plain loop writes it.
std::string one_by_one(const Tensor& t) {
  std::string out;
  for (size_t i = 0; i < t.f32.size(); ++i) {
    if (i > 0) out += ',';
    append_float32(out, t.f32[i]);
  }
  return out;
}

std::string formatted_on(int threads, const Tensor& t) {
  const int before = omp_get_max_threads();
  omp_set_num_threads(threads);
  std::string out;
  append_data_values(out, t);
  omp_set_num_threads(before);
  return out;
}

}  // namespace

TEST_CASE("long float data formats to the same bytes in chunks as one by one, on 1, 2 and 3 threads") {
  const Tensor t = awkward_float_tensor();
  const std::string expected = one_by_one(t);
  CHECK(formatted_on(1, t) == expected);
  CHECK(formatted_on(2, t) == expected);
  CHECK(formatted_on(3, t) == expected);
  // The text around the chunk edges is the special values' own.
  CHECK(expected.rfind("-0.0,", 0) == 0);
  CHECK(expected.find(",\"NaN\",\"Infinity\",") != std::string::npos);
}

TEST_CASE("long int32 data formats in chunks to the same bytes as one by one") {
  Tensor t = Tensor::int32({"S"}, {140000});
  for (size_t i = 0; i < t.i32.size(); ++i) t.i32[i] = static_cast<int32_t>(i % 7) - 3;
  t.i32[65536] = std::numeric_limits<int32_t>::min();
  std::string expected;
  for (size_t i = 0; i < t.i32.size(); ++i) expected += (i > 0 ? "," : "") + std::to_string(t.i32[i]);
  CHECK(formatted_on(2, t) == expected);
}

TEST_CASE("formatting progress rises to the element count of each tensor") {
  Trace trace;
  trace.add_step("long", awkward_float_tensor());
  trace.add_step("short", Tensor::scalar(1.5f));
  std::vector<std::string> names;
  size_t last_long = 0, long_total = 0;
  bool rising = true;
  const std::string text = write_trace(trace, [&](const std::string& tensor, size_t done, size_t total) {
    if (names.empty() || names.back() != tensor) names.push_back(tensor);
    if (tensor == "long") {
      rising = rising && done >= last_long;
      last_long = done;
      long_total = total;
    }
  });
  CHECK(text == write_trace(trace));
  CHECK(names == std::vector<std::string>{"long", "short"});
  CHECK(rising);
  CHECK(long_total == 200003);
  CHECK(last_long == 200003);
}

}  // namespace moeref
