// Writing and reading .npy headers (NumPy's format.py describes the format).

#include "moeref/npy.hpp"

#include <cctype>
#include <cstring>
#include <limits>

#include "moeref/error.hpp"

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "moeref writes .npy sidecars straight from memory: little-endian hosts only"
#endif

namespace moeref {

namespace {

constexpr char kMagic[] = "\x93NUMPY";
constexpr size_t kMagicSize = 6;

// A cursor over the header's dict text, which is a Python literal.
class DictText {
 public:
  DictText(const std::string& text, const std::string& what) : text_(text), what_(what) {}

  void skip_space() {
    while (at_ < text_.size() && std::isspace(static_cast<unsigned char>(text_[at_]))) ++at_;
  }
  bool accept(char c) {
    skip_space();
    if (at_ < text_.size() && text_[at_] == c) {
      ++at_;
      return true;
    }
    return false;
  }
  void expect(char c) {
    if (!accept(c)) fail(std::string("'") + c + "'");
  }
  std::string quoted() {
    skip_space();
    if (at_ >= text_.size() || (text_[at_] != '\'' && text_[at_] != '"')) fail("a quoted string");
    const char quote = text_[at_++];
    const size_t end = text_.find(quote, at_);
    if (end == std::string::npos) fail("a closing quote");
    std::string value = text_.substr(at_, end - at_);
    at_ = end + 1;
    return value;
  }
  bool boolean() {
    skip_space();
    if (text_.compare(at_, 4, "True") == 0) {
      at_ += 4;
      return true;
    }
    if (text_.compare(at_, 5, "False") == 0) {
      at_ += 5;
      return false;
    }
    fail("True or False");
  }
  std::vector<int64_t> shape() {
    expect('(');
    std::vector<int64_t> extents;
    while (!accept(')')) {
      skip_space();
      int64_t extent = 0;
      size_t digits = 0;
      while (at_ < text_.size() && std::isdigit(static_cast<unsigned char>(text_[at_]))) {
        if (extent > (std::numeric_limits<int64_t>::max() - 9) / 10) fail("a shape extent below 2^63");
        extent = extent * 10 + (text_[at_++] - '0');
        ++digits;
      }
      if (digits == 0) fail("a non-negative integer extent");
      extents.push_back(extent);
      if (!accept(',')) {
        expect(')');
        break;
      }
    }
    return extents;
  }
  [[noreturn]] void fail(const std::string& expected) const {
    fail_input(what_ + " .npy header", "\"" + text_.substr(0, 120) + "\" (at character " + std::to_string(at_) + ")",
               "a NumPy header dict; expected " + expected + " there");
  }

 private:
  const std::string& text_;
  std::string what_;
  size_t at_ = 0;
};

}  // namespace

const char* npy_descr(DType dtype) { return dtype == DType::kFloat32 ? "<f4" : "<i4"; }

std::string npy_shape_text(const std::vector<int64_t>& shape) {
  std::string text = "(";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i > 0) text += ", ";
    text += std::to_string(shape[i]);
  }
  if (shape.size() == 1) text += ',';
  return text + ")";
}

std::string npy_header(const Tensor& tensor) {
  std::string dict = "{'descr': '" + std::string(npy_descr(tensor.dtype)) +
                     "', 'fortran_order': False, 'shape': " + npy_shape_text(tensor.shape) + ", }";
  // magic (6) + version (2) + length (2) + dict + padding + '\n' is a multiple of 64.
  const size_t unpadded = kMagicSize + 4 + dict.size() + 1;
  dict.append((64 - unpadded % 64) % 64, ' ');
  dict += '\n';
  std::string header(kMagic, kMagicSize);
  header += '\x01';
  header += '\x00';
  header += static_cast<char>(dict.size() & 0xff);
  header += static_cast<char>(dict.size() >> 8);
  return header + dict;
}

const char* tensor_bytes(const Tensor& tensor) {
  return tensor.dtype == DType::kFloat32 ? reinterpret_cast<const char*>(tensor.f32.data())
                                         : reinterpret_cast<const char*>(tensor.i32.data());
}

char* tensor_bytes_mutable(Tensor& tensor) {
  return tensor.dtype == DType::kFloat32 ? reinterpret_cast<char*>(tensor.f32.data())
                                         : reinterpret_cast<char*>(tensor.i32.data());
}

size_t tensor_byte_size(const Tensor& tensor) {
  return 4 * (tensor.dtype == DType::kFloat32 ? tensor.f32.size() : tensor.i32.size());
}

size_t npy_header_size(const char* bytes, size_t size, const std::string& what) {
  if (size < kMagicSize + 4 || std::memcmp(bytes, kMagic, kMagicSize) != 0) {
    fail_input(what, "no .npy magic at the start", "a NumPy .npy file (it starts with \\x93NUMPY)");
  }
  const auto byte = [bytes](size_t i) { return static_cast<size_t>(static_cast<unsigned char>(bytes[i])); };
  const size_t major = byte(6), minor = byte(7);
  size_t length = 0, prefix = 0;
  if (major == 1 && minor == 0) {
    length = byte(8) | (byte(9) << 8);
    prefix = 10;
  } else if ((major == 2 || major == 3) && minor == 0 && size >= 12) {
    length = byte(8) | (byte(9) << 8) | (byte(10) << 16) | (byte(11) << 24);
    prefix = 12;
  } else {
    fail_input(what, ".npy format version " + std::to_string(major) + "." + std::to_string(minor),
               ".npy format version 1.0 (2.0 and 3.0 are read too)");
  }
  return prefix + length;
}

NpyHeader parse_npy_header(const char* bytes, size_t size, const std::string& what) {
  const size_t whole = npy_header_size(bytes, size, what);
  const size_t prefix = bytes[6] == 1 ? 10 : 12;  // version 1.0 has a 2-byte length field, 2.0 and 3.0 a 4-byte one
  const size_t length = whole - prefix;
  if (whole > size) {
    fail_input(what, "a .npy header of " + std::to_string(length) + " bytes past the end of the file",
               "a complete .npy header");
  }
  const std::string text(bytes + prefix, length);
  DictText dict(text, what);
  NpyHeader header;
  header.data_offset = prefix + length;
  bool has_descr = false, has_order = false, has_shape = false;
  dict.expect('{');
  while (!dict.accept('}')) {
    const std::string key = dict.quoted();
    dict.expect(':');
    if (key == "descr") {
      header.descr = dict.quoted();
      has_descr = true;
    } else if (key == "fortran_order") {
      header.fortran_order = dict.boolean();
      has_order = true;
    } else if (key == "shape") {
      header.shape = dict.shape();
      has_shape = true;
    } else {
      dict.fail("the key 'descr', 'fortran_order' or 'shape', not '" + key + "'");
    }
    if (!dict.accept(',')) {
      dict.expect('}');
      break;
    }
  }
  if (!has_descr || !has_order || !has_shape) dict.fail("all of 'descr', 'fortran_order' and 'shape'");
  return header;
}

}  // namespace moeref
