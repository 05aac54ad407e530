#include "moeref/ops/torch_routing.hpp"

namespace moeref::ops {

Tensor torch_cumsum_over_s(const Tensor& mask, int32_t offset) {
  const int64_t G = mask.shape[0], S = mask.shape[1], E = mask.shape[2];
  Tensor out = Tensor::int32(mask.dims, mask.shape);
  for (int64_t g = 0; g < G; ++g) {
    for (int64_t e = 0; e < E; ++e) {
      int32_t running = 0;
      for (int64_t s = 0; s < S; ++s) {
        const size_t at = static_cast<size_t>((g * S + s) * E + e);
        running += mask.i32[at];
        out.i32[at] = running + offset;
      }
    }
  }
  return out;
}

Tensor torch_argmax_of_mask(const Tensor& values) {
  const int64_t E = values.shape.back();
  Tensor index =
      Tensor::int32({values.dims.begin(), values.dims.end() - 1}, {values.shape.begin(), values.shape.end() - 1});
  for (size_t r = 0; r < index.i32.size(); ++r) {
    const int32_t* row = values.i32.data() + r * static_cast<size_t>(E);
    int32_t best = 0;
    for (int32_t e = 1; e < E; ++e) best = row[e] > row[best] ? e : best;
    index.i32[r] = best;
  }
  return index;
}

Tensor torch_mean_over_s(const Tensor& x) {
  const int64_t G = x.shape[0], S = x.shape[1], E = x.shape[2];
  Tensor mean = Tensor::float32({x.dims[0], x.dims[2]}, {G, E});
  for (int64_t g = 0; g < G; ++g) {
    for (int64_t e = 0; e < E; ++e) {
      double sum = 0.0;
      for (int64_t s = 0; s < S; ++s) {
        const size_t at = static_cast<size_t>((g * S + s) * E + e);
        sum += x.dtype == DType::kInt32 ? static_cast<double>(x.i32[at]) : static_cast<double>(x.f32[at]);
      }
      mean.f32[static_cast<size_t>(g * E + e)] = static_cast<float>(sum) / static_cast<float>(S);
    }
  }
  return mean;
}

Tensor torch_max_over_last(const Tensor& values) {
  const int64_t E = values.shape.back();
  Tensor out =
      Tensor::float32({values.dims.begin(), values.dims.end() - 1}, {values.shape.begin(), values.shape.end() - 1});
  for (size_t r = 0; r < out.f32.size(); ++r) {
    const float* row = values.f32.data() + r * static_cast<size_t>(E);
    float best = row[0];
    for (int64_t e = 1; e < E; ++e) best = row[e] > best ? row[e] : best;
    out.f32[r] = best;
  }
  return out;
}

Tensor torch_not_bool(const Tensor& mask) {
  Tensor out = Tensor::int32(mask.dims, mask.shape);
  for (size_t i = 0; i < out.i32.size(); ++i) out.i32[i] = mask.f32[i] != 0.0f ? 0 : 1;
  return out;
}

Tensor torch_mask_rows(const Tensor& mask, const Tensor& keep) {
  const int64_t E = mask.shape.back();
  Tensor out = Tensor::int32(mask.dims, mask.shape);
  for (size_t i = 0; i < out.i32.size(); ++i) out.i32[i] = mask.i32[i] * keep.i32[i / static_cast<size_t>(E)];
  return out;
}

Tensor torch_sum_where(const Tensor& values, const Tensor& mask) {
  const int64_t E = values.shape.back();
  Tensor out =
      Tensor::int32({values.dims.begin(), values.dims.end() - 1}, {values.shape.begin(), values.shape.end() - 1});
  for (size_t r = 0; r < out.i32.size(); ++r) {
    int32_t sum = 0;
    for (int64_t e = 0; e < E; ++e) {
      const size_t at = r * static_cast<size_t>(E) + static_cast<size_t>(e);
      sum += values.i32[at] * mask.i32[at];
    }
    out.i32[r] = sum;
  }
  return out;
}

}  // namespace moeref::ops
