#include "moeref/tensor.hpp"

#include <cctype>
#include <limits>

#include "moeref/error.hpp"

namespace moeref {

const char* dtype_name(DType dtype) { return dtype == DType::kFloat32 ? "float32" : "int32"; }

int64_t checked_num_elements(const std::vector<int64_t>& shape, const std::string& field) {
  int64_t total = 1;
  for (int64_t extent : shape) {
    if (extent < 0) fail_input(field, std::to_string(extent), "a non-negative extent");
    if (extent != 0 && total > std::numeric_limits<int64_t>::max() / extent) {
      fail_input(field, "a shape whose element count overflows 64 bits", "a smaller shape");
    }
    total *= extent;
  }
  return total;
}

Tensor Tensor::with_unset_values(std::vector<std::string> dims, std::vector<int64_t> shape, DType dtype) {
  Tensor t;
  t.dims = std::move(dims);
  t.shape = std::move(shape);
  t.dtype = dtype;
  const size_t count = static_cast<size_t>(checked_num_elements(t.shape, "tensor shape"));
  dtype == DType::kFloat32 ? t.f32.resize(count) : t.i32.resize(count);
  return t;
}

Tensor Tensor::float32(std::vector<std::string> dims, std::vector<int64_t> shape) {
  Tensor t = with_unset_values(std::move(dims), std::move(shape), DType::kFloat32);
  fill_zeros(t.f32.data(), t.f32.size());
  return t;
}

Tensor Tensor::int32(std::vector<std::string> dims, std::vector<int64_t> shape) {
  Tensor t = with_unset_values(std::move(dims), std::move(shape), DType::kInt32);
  fill_zeros(t.i32.data(), t.i32.size());
  return t;
}

Tensor Tensor::scalar(float value) {
  Tensor t = float32({}, {});
  t.f32[0] = value;
  return t;
}

int64_t Tensor::num_elements() const {
  int64_t total = 1;
  for (int64_t extent : shape) total *= extent;
  return total;
}

int64_t Tensor::dim_size(const std::string& dim) const {
  for (size_t i = 0; i < dims.size(); ++i) {
    if (dims[i] == dim) return shape[i];
  }
  return -1;
}

std::string Tensor::shape_string() const {
  std::string out = "[";
  for (size_t i = 0; i < dims.size(); ++i) {
    if (i > 0) out += ", ";
    out += dims[i] + "=" + std::to_string(shape[i]);
  }
  return out + "]";
}

std::vector<int64_t> Tensor::unravel(int64_t flat) const {
  std::vector<int64_t> index(shape.size(), 0);
  for (size_t i = shape.size(); i-- > 0;) {
    if (shape[i] > 0) {
      index[i] = flat % shape[i];
      flat /= shape[i];
    }
  }
  return index;
}

std::string Tensor::named_index(int64_t flat) const {
  std::vector<int64_t> index = unravel(flat);
  std::string out = "[";
  for (size_t i = 0; i < index.size(); ++i) {
    if (i > 0) out += ", ";
    std::string letter = dims[i];
    for (char& ch : letter) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    out += letter + "=" + std::to_string(index[i]);
  }
  return out + "]";
}

}  // namespace moeref
