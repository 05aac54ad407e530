// A named-dimension tensor, the unit of every trace.
//
// Dims are single capitals declared once in spec/notation.md:
//   B batch, L length, G groups, S group size, E experts, C expert capacity,
//   M model dim, H expert hidden dim, N expert output dim, K choices.
// Data is flat and row-major; float32 and int32 are the only dtypes.
#pragma once

#include <Eigen/Core>
#include <cstdint>
#include <string>
#include <vector>

#include "moeref/tensor_buffer.hpp"

namespace moeref {

enum class DType { kFloat32, kInt32 };

const char* dtype_name(DType dtype);

// Row-major Eigen views used wherever a step is a matrix product.
using MatrixRM = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using MapRM = Eigen::Map<MatrixRM>;
using ConstMapRM = Eigen::Map<const MatrixRM>;

struct Tensor {
  std::vector<std::string> dims;  // e.g. {"G", "S", "E"}
  std::vector<int64_t> shape;     // same length as dims
  DType dtype = DType::kFloat32;
  FloatBuffer f32;  // used when dtype == kFloat32
  Int32Buffer i32;  // used when dtype == kInt32

  static Tensor float32(std::vector<std::string> dims, std::vector<int64_t> shape);
  static Tensor int32(std::vector<std::string> dims, std::vector<int64_t> shape);
  static Tensor scalar(float value);
  // A tensor whose values are left unset (tensor_buffer.hpp), for a caller that writes
  // every element next: float32 / int32 are this plus zeros.
  static Tensor with_unset_values(std::vector<std::string> dims, std::vector<int64_t> shape, DType dtype);

  int64_t num_elements() const;
  int64_t rank() const { return static_cast<int64_t>(shape.size()); }
  // Size of the dim named `dim`; -1 when the tensor has no such dim.
  int64_t dim_size(const std::string& dim) const;

  // "[G=2, S=4, E=3]"
  std::string shape_string() const;
  // The multi-dimensional index of a flat offset, named: "[g=0, s=5, e=2]".
  std::string named_index(int64_t flat) const;
  std::vector<int64_t> unravel(int64_t flat) const;
};

struct NamedTensor {
  std::string name;
  Tensor tensor;
};

// Product of a shape's entries, with overflow checked (throws InputError).
int64_t checked_num_elements(const std::vector<int64_t>& shape, const std::string& field);

}  // namespace moeref
