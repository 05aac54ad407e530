// Writing and listing POSIX ustar archives (IEEE Std 1003.1, "pax" utility, ustar format).

#include "moeref/ustar.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cstring>

#include "moeref/error.hpp"

namespace moeref {

namespace {

constexpr size_t kNameField = 100;
constexpr size_t kPrefixField = 155;
constexpr uint64_t kMaxOctalSize = (uint64_t{1} << 33) - 1;  // 11 octal digits

// `value` as `width - 1` octal digits and a NUL, as ustar numeric fields are written.
void put_octal(char* field, size_t width, uint64_t value) {
  for (size_t i = width - 1; i-- > 0;) {
    field[i] = static_cast<char>('0' + (value & 7));
    value >>= 3;
  }
  field[width - 1] = '\0';
}

uint64_t read_octal(const char* field, size_t width, const std::string& what) {
  uint64_t value = 0;
  size_t i = 0;
  while (i < width && field[i] == ' ') ++i;
  for (; i < width && field[i] >= '0' && field[i] <= '7'; ++i)
    value = value * 8 + static_cast<uint64_t>(field[i] - '0');
  if (i < width && field[i] != '\0' && field[i] != ' ') {
    fail_input(what, "a numeric field that is not octal (base-256 sizes are not read)", "octal numbers");
  }
  return value;
}

// read_octal without the error: 0 for a field that is not octal.
uint64_t read_octal_or_zero(const char* field, size_t width) {
  uint64_t value = 0;
  size_t i = 0;
  while (i < width && field[i] == ' ') ++i;
  for (; i < width && field[i] >= '0' && field[i] <= '7'; ++i)
    value = value * 8 + static_cast<uint64_t>(field[i] - '0');
  return value;
}

std::string field_text(const char* field, size_t width) { return std::string(field, strnlen(field, width)); }

uint64_t header_checksum(const char* block) {
  uint64_t sum = 0;
  for (size_t i = 0; i < kUstarBlock; ++i) {
    // The checksum field itself counts as eight spaces.
    sum += (i >= 148 && i < 156) ? uint64_t{' '} : static_cast<unsigned char>(block[i]);
  }
  return sum;
}

bool read_fully(int fd, char* buffer, size_t size, uint64_t offset) {
  while (size > 0) {
    const ssize_t got = ::pread(fd, buffer, size, static_cast<off_t>(offset));
    if (got <= 0) return false;
    buffer += got;
    size -= static_cast<size_t>(got);
    offset += static_cast<uint64_t>(got);
  }
  return true;
}

}  // namespace

std::string ustar_file_header(const std::string& name, uint64_t size) {
  std::string prefix, short_name = name;
  if (name.size() > kNameField) {
    const size_t slash = name.rfind('/', kPrefixField);
    if (slash == std::string::npos || name.size() - slash - 1 > kNameField || slash == 0) {
      fail_input("archive member name", "\"" + name + "\"",
                 "at most 100 bytes after the last '/' and 155 before it (ustar)");
    }
    prefix = name.substr(0, slash);
    short_name = name.substr(slash + 1);
  }
  if (size > kMaxOctalSize) {
    fail_input("archive member " + name, std::to_string(size) + " bytes", "less than 8 GiB per member (ustar)");
  }
  char block[kUstarBlock] = {};
  std::memcpy(block, short_name.data(), short_name.size());
  put_octal(block + 100, 8, 0644);
  put_octal(block + 108, 8, 0);
  put_octal(block + 116, 8, 0);
  put_octal(block + 124, 12, size);
  put_octal(block + 136, 12, 0);
  block[156] = '0';
  std::memcpy(block + 257, "ustar", 6);
  std::memcpy(block + 263, "00", 2);
  std::memcpy(block + 345, prefix.data(), prefix.size());
  // Six octal digits, a NUL and a space, as POSIX tar writes the checksum.
  put_octal(block + 148, 7, header_checksum(block));
  block[155] = ' ';
  return std::string(block, kUstarBlock);
}

uint64_t ustar_padding(uint64_t size) { return (kUstarBlock - size % kUstarBlock) % kUstarBlock; }

bool is_ustar_file(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  char block[kUstarBlock];
  const bool whole = read_fully(fd, block, kUstarBlock, 0);
  ::close(fd);
  // The checksum too: a JSON text could hold "ustar" at byte 257 by chance.
  return whole && std::memcmp(block + 257, "ustar", 5) == 0 &&
         read_octal_or_zero(block + 148, 8) == header_checksum(block);
}

std::vector<UstarMember> list_ustar_members(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw InputError("trace archive " + path + ": cannot open it for reading");
  const off_t end = ::lseek(fd, 0, SEEK_END);
  std::vector<UstarMember> members;
  uint64_t offset = 0;
  char block[kUstarBlock];
  try {
    while (true) {
      if (offset + kUstarBlock > static_cast<uint64_t>(end) || !read_fully(fd, block, kUstarBlock, offset)) {
        fail_input("trace archive " + path, "no end-of-archive block", "a complete ustar archive");
      }
      bool all_zero = true;
      for (const char c : block) all_zero = all_zero && c == '\0';
      if (all_zero) break;
      const std::string where = "trace archive " + path + ": the entry at byte " + std::to_string(offset);
      if (std::memcmp(block + 257, "ustar", 5) != 0) fail_input(where, "no ustar magic", "a ustar header");
      if (read_octal(block + 148, 8, where) != header_checksum(block)) {
        fail_input(where, "a header checksum that does not match", "an intact ustar header");
      }
      const uint64_t size = read_octal(block + 124, 12, where);
      std::string name = field_text(block, kNameField);
      const std::string prefix = field_text(block + 345, kPrefixField);
      if (!prefix.empty()) name = prefix + "/" + name;
      while (name.compare(0, 2, "./") == 0) name.erase(0, 2);
      const char type = block[156];
      const uint64_t data_offset = offset + kUstarBlock;
      if (data_offset + size > static_cast<uint64_t>(end)) {
        fail_input(where, "a member of " + std::to_string(size) + " bytes past the end of the file",
                   "a complete ustar archive");
      }
      if (type == '0' || type == '\0') {
        members.push_back({name, data_offset, size});
      } else if (type == 'L' || type == 'K' || type == 'x' || type == 'g') {
        fail_input(where, std::string("an entry of type '") + type + "' (long names or pax headers)",
                   "plain ustar entries, as moeref pack writes them");
      }
      offset = data_offset + size + ustar_padding(size);
    }
  } catch (...) {
    ::close(fd);
    throw;
  }
  ::close(fd);
  return members;
}

}  // namespace moeref
