// The NumPy .npy file format (format version 1.0) for float32 and int32 tensors: the
// sidecar files of trace format version 2 (spec/trace-format.md, "Version 2: sidecars").
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "moeref/tensor.hpp"

namespace moeref {

// The header numpy itself writes for this tensor: magic, version 1.0, the length, then
// {'descr': '<f4', 'fortran_order': False, 'shape': (4, 1024), } padded with spaces and a
// final '\n' to a multiple of 64 bytes. The tensor's little-endian values follow it.
std::string npy_header(const Tensor& tensor);

// "<f4" or "<i4".
const char* npy_descr(DType dtype);

// The bytes of a tensor's values as they stand in memory (little-endian hosts only).
const char* tensor_bytes(const Tensor& tensor);
size_t tensor_byte_size(const Tensor& tensor);
char* tensor_bytes_mutable(Tensor& tensor);

struct NpyHeader {
  std::string descr;
  bool fortran_order = false;
  std::vector<int64_t> shape;
  size_t data_offset = 0;  // where the values start: the header's whole length
};

// The most header bytes parse_npy_header may need to see (numpy limits its headers too).
inline constexpr size_t kMaxNpyHeaderSize = 65536;

// The whole length of the header at the start of `bytes` (magic, version, length field
// and dict text), where the values start. Reads only the first 10 bytes (version 1.0)
// or 12 (2.0, 3.0); throws InputError as parse_npy_header does on a bad magic or version.
size_t npy_header_size(const char* bytes, size_t size, const std::string& what);

// Parses the header at the start of `bytes` (versions 1.0, 2.0 and 3.0). Throws
// InputError naming `what` and what is wrong (bad magic, version, dict syntax).
NpyHeader parse_npy_header(const char* bytes, size_t size, const std::string& what);

// "(4, 1024)", "(7,)", "()" as numpy writes a shape.
std::string npy_shape_text(const std::vector<int64_t>& shape);

}  // namespace moeref
