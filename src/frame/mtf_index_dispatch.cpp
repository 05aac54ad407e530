#include "moeref/frame/mtf_index_dispatch.hpp"

#include <algorithm>
#include <cstdint>
#include <cstring>

namespace moeref {

namespace {

// Entries are looked at in runs of this many: a run of zeros (most of a dispatch or
// combine row: a token fills at most two of its E*C slots) is passed over with one
// vectorised test instead of one branch an entry.
constexpr int64_t kRun = 16;

// Whether entries [at, at + kRun) of a dispatch row are all 0.
bool all_zero(const int32_t* d, int64_t at) {
  int32_t any = 0;
  for (int64_t i = 0; i < kRun; ++i) any |= d[at + i];
  return any == 0;
}

// Whether entries [at, at + kRun) of a combine row are all +0 or -0 (a NaN is not).
bool all_zero(const float* w, int64_t at) {
  uint32_t any = 0;
  for (int64_t i = 0; i < kRun; ++i) {
    uint32_t bits;
    std::memcpy(&bits, &w[at + i], sizeof bits);
    any |= bits & 0x7fffffffu;
  }
  return any == 0;
}

}  // namespace

void index_dispatch(const Tensor& inputs, const Tensor& dispatch_tensor, Tensor& expert_inputs) {
  const int64_t G = inputs.shape[0], S = inputs.shape[1], M = inputs.shape[2];
  const int64_t E = dispatch_tensor.shape[2], C = dispatch_tensor.shape[3];
  const int64_t EC = E * C;
#pragma omp parallel for schedule(static)
  for (int64_t g = 0; g < G; ++g) {
    // Every slot of this group starts at +0, as the literal sum does.
    for (int64_t e = 0; e < E; ++e) {
      float* slots = expert_inputs.f32.data() + (e * G + g) * C * M;  // [C, M]
      std::fill(slots, slots + C * M, 0.0f);
    }
    // Tokens in order s = 0 .. S-1: each slot receives its terms in the literal order.
    for (int64_t s = 0; s < S; ++s) {
      const int32_t* d = dispatch_tensor.i32.data() + (g * S + s) * EC;  // [E*C]
      const float* x = inputs.f32.data() + (g * S + s) * M;              // [M]
      for (int64_t ec = 0; ec < EC; ++ec) {
        if (ec % kRun == 0 && ec + kRun <= EC && all_zero(d, ec)) {
          ec += kRun - 1;
          continue;
        }
        if (d[ec] == 0) continue;
        const float weight = static_cast<float>(d[ec]);
        float* slot = expert_inputs.f32.data() + (((ec / C) * G + g) * C + ec % C) * M;  // row (e, g, c)
        for (int64_t m = 0; m < M; ++m) slot[m] = slot[m] + weight * x[m];
      }
    }
  }
}

void index_combine(const Tensor& expert_outputs, const Tensor& combine_tensor, Tensor& outputs) {
  const int64_t G = outputs.shape[0], S = outputs.shape[1], N = outputs.shape[2];
  const int64_t E = combine_tensor.shape[2], C = combine_tensor.shape[3];
  const int64_t EC = E * C;
#pragma omp parallel for schedule(static)
  for (int64_t g = 0; g < G; ++g) {
    for (int64_t s = 0; s < S; ++s) {
      const float* w = combine_tensor.f32.data() + (g * S + s) * EC;  // [E*C]
      float* out = outputs.f32.data() + (g * S + s) * N;              // [N]
      std::fill(out, out + N, 0.0f);
      // Slots in order (e, c), as the literal sum over E*C runs.
      for (int64_t ec = 0; ec < EC; ++ec) {
        if (ec % kRun == 0 && ec + kRun <= EC && all_zero(w, ec)) {
          ec += kRun - 1;
          continue;
        }
        if (w[ec] == 0.0f) continue;
        const float* y = expert_outputs.f32.data() + (((ec / C) * G + g) * C + ec % C) * N;  // row (e, g, c)
        for (int64_t n = 0; n < N; ++n) out[n] = out[n] + w[ec] * y[n];
      }
    }
  }
}

}  // namespace moeref
