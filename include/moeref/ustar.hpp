// POSIX ustar archives, as much as packed traces need (spec/trace-format.md, "One file
// for sharing"): regular-file members written with fixed metadata, and a member
// listing that lets readers read members in place.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace moeref {

inline constexpr uint64_t kUstarBlock = 512;

// The 512-byte header of a regular file: mode 0644, uid/gid 0, mtime 0, no user or
// group names, so that the same members give the same bytes. A name longer than 100
// bytes is split into the prefix field at a '/'; one that cannot be split, or a size of
// 8 GiB or more, is an InputError.
std::string ustar_file_header(const std::string& name, uint64_t size);

// Zero bytes that bring a member of `size` bytes up to a whole block.
uint64_t ustar_padding(uint64_t size);

struct UstarMember {
  std::string name;     // prefix/name, without a leading "./"
  uint64_t offset = 0;  // of the member's first data byte in the archive
  uint64_t size = 0;
};

// True when the 512 bytes at the start of `path` carry the "ustar" magic at offset 257
// and a matching header checksum.
bool is_ustar_file(const std::string& path);

// The regular-file members of an archive, in order (directories and other entries are
// skipped). Throws InputError naming the path on a bad checksum, a truncated archive or
// an entry type it cannot read in place (GNU long names, pax headers).
std::vector<UstarMember> list_ustar_members(const std::string& path);

}  // namespace moeref
