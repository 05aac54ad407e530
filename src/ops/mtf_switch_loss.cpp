#include "moeref/ops/mtf_switch_loss.hpp"

#include <cmath>
#include <stdexcept>

namespace moeref::ops {

namespace {

double value_at(const Tensor& t, size_t at) {
  return t.dtype == DType::kInt32 ? static_cast<double>(t.i32[at]) : static_cast<double>(t.f32[at]);
}

}  // namespace

Tensor mtf_density_over_s(const Tensor& values) {
  const int64_t G = values.shape[0], S = values.shape[1];
  const int64_t R = values.num_elements() / (G * S);  // the rest: E, or K * E
  const float inverse_group_size = static_cast<float>(1.0 / static_cast<double>(S));
  std::vector<std::string> dims = {values.dims[0]};
  std::vector<int64_t> shape = {G};
  for (size_t d = 2; d < values.dims.size(); ++d) {
    dims.push_back(values.dims[d]);
    shape.push_back(values.shape[d]);
  }
  Tensor density = Tensor::float32(dims, shape);
  for (int64_t g = 0; g < G; ++g) {
    for (int64_t r = 0; r < R; ++r) {
      double sum = 0.0;
      for (int64_t s = 0; s < S; ++s) sum += value_at(values, static_cast<size_t>((g * S + s) * R + r));
      density.f32[static_cast<size_t>(g * R + r)] = static_cast<float>(sum) * inverse_group_size;
    }
  }
  return density;
}

Tensor mtf_proxy_times_important(const Tensor& density_1_proxy, const Tensor& important) {
  const int64_t G = density_1_proxy.shape[0], E = density_1_proxy.shape[1], S = important.shape[1];
  Tensor out = Tensor::float32({"G", "E", "S"}, {G, E, S});
  for (int64_t g = 0; g < G; ++g) {
    for (int64_t e = 0; e < E; ++e) {
      for (int64_t s = 0; s < S; ++s) {
        out.f32[static_cast<size_t>((g * E + e) * S + s)] =
            density_1_proxy.f32[static_cast<size_t>(g * E + e)] *
            static_cast<float>(important.i32[static_cast<size_t>(g * S + s)]);
      }
    }
  }
  return out;
}

float mtf_union_balance_loss(const Tensor& density_1_proxy, const Tensor& density_1) {
  const int64_t G = density_1_proxy.shape[0], E = density_1_proxy.shape[1];
  const int64_t S = density_1_proxy.rank() == 3 ? density_1_proxy.shape[2] : 1;
  const int64_t K = density_1.rank() == 3 ? density_1.shape[1] : 1;
  if (density_1.shape.back() != E) throw std::logic_error("mtf_union_balance_loss: E differs");
  // Product dims: proxy's dims, then density's new ones: [G, E, (S), (K)], or
  // [G, K, E] when the proxy's [G, E] is a subsequence of density's dims.
  // Summed in double in that order.
  double sum = 0.0;
  const auto proxy = [&](int64_t g, int64_t e, int64_t s) {
    return density_1_proxy.f32[static_cast<size_t>((g * E + e) * S + s)];
  };
  const auto density = [&](int64_t g, int64_t k, int64_t e) {
    return density_1.f32[static_cast<size_t>((g * K + k) * E + e)];
  };
  if (density_1_proxy.rank() == 2 && density_1.rank() == 3) {
    for (int64_t g = 0; g < G; ++g)
      for (int64_t k = 0; k < K; ++k)
        for (int64_t e = 0; e < E; ++e) sum += static_cast<double>(proxy(g, e, 0) * density(g, k, e));
  } else {
    for (int64_t g = 0; g < G; ++g)
      for (int64_t e = 0; e < E; ++e)
        for (int64_t s = 0; s < S; ++s)
          for (int64_t k = 0; k < K; ++k) sum += static_cast<double>(proxy(g, e, s) * density(g, k, e));
  }
  const double count = static_cast<double>(G * E * S * K);
  const float mean = static_cast<float>(sum) * static_cast<float>(1.0 / count);
  return mean * static_cast<float>(E * E);
}

Tensor mtf_entropy(const Tensor& probs, int axis) {
  const float kEpsilon = 1e-9f;
  const int64_t B = probs.shape[1], C = probs.shape[2];
  std::vector<std::string> dims;
  std::vector<int64_t> shape;
  for (int d = 0; d < 3; ++d) {
    if (d == axis) continue;
    dims.push_back(probs.dims[static_cast<size_t>(d)]);
    shape.push_back(probs.shape[static_cast<size_t>(d)]);
  }
  Tensor out = Tensor::float32(dims, shape);
  const int64_t n = probs.shape[static_cast<size_t>(axis)];
  for (size_t r = 0; r < out.f32.size(); ++r) {
    const int64_t i = static_cast<int64_t>(r) / shape[1], j = static_cast<int64_t>(r) % shape[1];
    double sum = 0.0;
    for (int64_t x = 0; x < n; ++x) {
      const int64_t a = axis == 0 ? x : i;
      const int64_t b = axis == 0 ? i : (axis == 1 ? x : j);
      const int64_t c = axis == 2 ? x : j;
      const float p = probs.f32[static_cast<size_t>((a * B + b) * C + c)];
      const float log_term = static_cast<float>(std::log(static_cast<double>(p + kEpsilon)));
      sum += static_cast<double>(-p * log_term);
    }
    out.f32[r] = static_cast<float>(sum);
  }
  return out;
}

float mtf_reduce_sum_all(const Tensor& values) {
  double sum = 0.0;
  for (size_t k = 0; k < static_cast<size_t>(values.num_elements()); ++k) sum += value_at(values, k);
  return static_cast<float>(sum);
}

float mtf_reduce_mean_all(const Tensor& values) {
  return mtf_reduce_sum_all(values) * static_cast<float>(1.0 / static_cast<double>(values.num_elements()));
}

float mtf_divide(float a, float b) { return a * (1.0f / b); }

}  // namespace moeref::ops
