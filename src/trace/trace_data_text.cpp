#include "moeref/trace_data_text.hpp"

#include <omp.h>

#include <algorithm>
#include <cstdint>
#include <vector>

#include "moeref/json_number.hpp"

namespace moeref {

namespace {

// Elements per chunk: large enough that a chunk's string dwarfs the cost of
// joining it, small enough to share a medium tensor among threads.
constexpr size_t kChunkElements = size_t{1} << 16;

void append_value(std::string& out, const Tensor& tensor, size_t i) {
  if (tensor.dtype == DType::kFloat32) {
    append_float32(out, tensor.f32[i]);
  } else {
    out += std::to_string(tensor.i32[i]);
  }
}

void append_range(std::string& out, const Tensor& tensor, size_t begin, size_t end) {
  for (size_t i = begin; i < end; ++i) {
    if (i > 0) out += ',';
    append_value(out, tensor, i);
  }
}

}  // namespace

void append_data_values(std::string& out, const Tensor& tensor, const FormatProgress& progress) {
  const size_t count = tensor.dtype == DType::kFloat32 ? tensor.f32.size() : tensor.i32.size();
  if (count <= kChunkElements) {
    append_range(out, tensor, 0, count);
    if (progress) progress(count, count);
    return;
  }
  const size_t chunks = (count + kChunkElements - 1) / kChunkElements;
  std::vector<std::string> texts(chunks);
  size_t done = 0;  // chunks finished, for the progress callback (under the critical section)
#pragma omp parallel for schedule(dynamic, 1)
  for (int64_t c = 0; c < static_cast<int64_t>(chunks); ++c) {
    const size_t begin = static_cast<size_t>(c) * kChunkElements;
    const size_t end = std::min(count, begin + kChunkElements);
    std::string& text = texts[static_cast<size_t>(c)];
    text.reserve((end - begin) * 12);
    append_range(text, tensor, begin, end);
    if (progress) {
#pragma omp critical(moeref_format_progress)
      {
        ++done;
        if (omp_get_thread_num() == 0 || done == chunks) progress(std::min(count, done * kChunkElements), count);
      }
    }
  }
  size_t total = out.size();
  for (const std::string& text : texts) total += text.size();
  out.reserve(total);
  for (std::string& text : texts) {
    out += text;
    std::string().swap(text);  // free as we go: peak memory stays near one copy
  }
}

}  // namespace moeref
