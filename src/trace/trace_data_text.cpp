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
// Chunks formatted at once (about 20 MB of text): what the threads make before it is
// appended, and a streamed file can take it.
constexpr size_t kBatchChunks = 32;

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

void append_data_values(std::string& out, const Tensor& tensor, const FormatProgress& progress,
                        const std::function<void()>& after_batch) {
  const size_t count = tensor.dtype == DType::kFloat32 ? tensor.f32.size() : tensor.i32.size();
  if (count <= kChunkElements) {
    append_range(out, tensor, 0, count);
    if (progress) progress(count, count);
    return;
  }
  const size_t chunks = (count + kChunkElements - 1) / kChunkElements;
  size_t done = 0;  // chunks finished, for the progress callback (under the critical section)
  std::vector<std::string> texts(kBatchChunks);
  for (size_t batch_begin = 0; batch_begin < chunks; batch_begin += kBatchChunks) {
    const size_t batch = std::min(kBatchChunks, chunks - batch_begin);
#pragma omp parallel for schedule(dynamic, 1)
    for (int64_t b = 0; b < static_cast<int64_t>(batch); ++b) {
      const size_t c = batch_begin + static_cast<size_t>(b);
      const size_t begin = c * kChunkElements;
      const size_t end = std::min(count, begin + kChunkElements);
      std::string& text = texts[static_cast<size_t>(b)];
      text.clear();
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
    for (size_t b = 0; b < batch; ++b) total += texts[b].size();
    if (total > out.capacity()) out.reserve(std::max(total, 2 * out.capacity()));  // doubling: few copies
    for (size_t b = 0; b < batch; ++b) out += texts[b];
    if (after_batch) after_batch();
  }
}

}  // namespace moeref
