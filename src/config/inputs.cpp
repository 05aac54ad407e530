#include "moeref/inputs.hpp"

#include <array>
#include <cmath>

#include "moeref/error.hpp"
#include "moeref/json_number.hpp"
#include "moeref/rng.hpp"

namespace moeref {

namespace {

std::string dims_text(const std::vector<std::string>& dims, const std::vector<int64_t>& shape) {
  Tensor probe;
  probe.dims = dims;
  probe.shape = shape;
  return probe.shape_string();
}

}  // namespace

bool InputSet::supplied(const std::string& name) const { return config_.inputs.count(name) > 0; }

void InputSet::begin(const std::string& name) {
  started_ = std::chrono::steady_clock::now();
  if (observer_ != nullptr) observer_->input_started(name);
}

const Tensor& InputSet::record(const std::string& name, Tensor tensor) {
  used_.insert(name);
  trace_.inputs.push_back({name, std::move(tensor)});
  if (observer_ != nullptr) {
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started_).count();
    observer_->input_taken(name, trace_.inputs.back().tensor, seconds);
  }
  return trace_.inputs.back().tensor;
}

const Tensor& InputSet::check_supplied(const std::string& name, const std::vector<std::string>& dims,
                                       const std::vector<int64_t>& shape) {
  const Tensor& given = config_.inputs.at(name);
  const std::string field = "inputs." + name;
  if (given.dims != dims || given.shape != shape) {
    fail_input(field, given.shape_string(), "a tensor of shape " + dims_text(dims, shape));
  }
  if (given.dtype != DType::kFloat32) fail_input(field + ".dtype", dtype_name(given.dtype), "float32");
  for (size_t i = 0; i < given.f32.size(); ++i) {
    if (!std::isfinite(given.f32[i])) {
      std::string value;
      append_float32(value, given.f32[i]);
      fail_input(field + given.named_index(static_cast<int64_t>(i)), value, "a finite float32");
    }
  }
  return record(name, given);
}

const Tensor& InputSet::float_input(const std::string& name, const std::vector<std::string>& dims,
                                    const std::vector<int64_t>& shape, double lo, double hi) {
  begin(name);
  if (supplied(name)) return check_supplied(name, dims, shape);
  Tensor generated = Tensor::with_unset_values(dims, shape, DType::kFloat32);
  const uint32_t stream = stream_id(name);
  // Each value depends only on (seed, stream, index): any split over threads gives the same tensor.
  const int64_t count = static_cast<int64_t>(generated.f32.size());
  const int64_t blocks = (count + 3) / 4;
#pragma omp parallel for schedule(static)
  for (int64_t block = 0; block < blocks; ++block) {
    const std::array<float, 4> u = uniform_01_block(config_.seed, stream, static_cast<uint64_t>(block));
    for (int64_t word = 0; word < 4 && block * 4 + word < count; ++word) {
      generated.f32[static_cast<size_t>(block * 4 + word)] = scale_uniform(u[static_cast<size_t>(word)], lo, hi);
    }
  }
  return record(name, std::move(generated));
}

const Tensor& InputSet::uniform_draw(const std::string& name, const std::vector<std::string>& dims,
                                     const std::vector<int64_t>& shape) {
  if (supplied(name)) {
    begin(name);
    const Tensor& given = check_supplied(name, dims, shape);
    for (size_t i = 0; i < given.f32.size(); ++i) {
      if (!(given.f32[i] >= 0.0f && given.f32[i] < 1.0f)) {
        std::string value;
        append_float32(value, given.f32[i]);
        fail_input("inputs." + name + given.named_index(static_cast<int64_t>(i)), value, "a uniform draw in [0, 1)");
      }
    }
    return given;
  }
  return float_input(name, dims, shape, 0.0, 1.0);
}

const Tensor& InputSet::normal_draw(const std::string& name, const std::vector<std::string>& dims,
                                    const std::vector<int64_t>& shape) {
  begin(name);
  if (supplied(name)) return check_supplied(name, dims, shape);
  Tensor generated = Tensor::with_unset_values(dims, shape, DType::kFloat32);
  const uint32_t stream = stream_id(name);
  const double two_pi = 6.283185307179586476925286766559;
  const int64_t count = static_cast<int64_t>(generated.f32.size());
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < count; ++i) {
    const double u1 = static_cast<double>(uniform_01(config_.seed, stream, static_cast<uint64_t>(2 * i)));
    const double u2 = static_cast<double>(uniform_01(config_.seed, stream, static_cast<uint64_t>(2 * i + 1)));
    generated.f32[static_cast<size_t>(i)] =
        static_cast<float>(std::sqrt(-2.0 * std::log(1.0 - u1)) * std::cos(two_pi * u2));
  }
  return record(name, std::move(generated));
}

const Tensor& InputSet::int_input(const std::string& name, const std::vector<std::string>& dims,
                                  const std::vector<int64_t>& shape, int32_t lo, int32_t hi) {
  begin(name);
  if (supplied(name)) {
    const Tensor& given = config_.inputs.at(name);
    const std::string field = "inputs." + name;
    if (given.dims != dims || given.shape != shape) {
      fail_input(field, given.shape_string(), "a tensor of shape " + dims_text(dims, shape));
    }
    if (given.dtype != DType::kInt32) fail_input(field + ".dtype", dtype_name(given.dtype), "int32");
    return record(name, given);
  }
  Tensor generated = Tensor::with_unset_values(dims, shape, DType::kInt32);
  const uint32_t stream = stream_id(name);
  const int64_t count = static_cast<int64_t>(generated.i32.size());
  const int64_t blocks = (count + 3) / 4;
  const double span = static_cast<double>(hi) - static_cast<double>(lo);
#pragma omp parallel for schedule(static)
  for (int64_t block = 0; block < blocks; ++block) {
    const std::array<float, 4> u = uniform_01_block(config_.seed, stream, static_cast<uint64_t>(block));
    for (int64_t word = 0; word < 4 && block * 4 + word < count; ++word) {
      const double offset = std::floor(static_cast<double>(u[static_cast<size_t>(word)]) * span);
      generated.i32[static_cast<size_t>(block * 4 + word)] = static_cast<int32_t>(static_cast<double>(lo) + offset);
    }
  }
  return record(name, std::move(generated));
}

const Tensor* InputSet::optional_input(const std::string& name, const std::vector<std::string>& dims,
                                       const std::vector<int64_t>& shape) {
  if (!supplied(name)) return nullptr;
  begin(name);
  return &check_supplied(name, dims, shape);
}

void InputSet::check_all_used() const {
  for (const auto& entry : config_.inputs) {
    if (used_.count(entry.first) == 0) {
      std::string used_names;
      for (const std::string& name : used_) used_names += (used_names.empty() ? "" : ", ") + name;
      fail_input("inputs." + entry.first, "an input this config does not use",
                 used_names.empty() ? "no inputs" : used_names);
    }
  }
}

}  // namespace moeref
