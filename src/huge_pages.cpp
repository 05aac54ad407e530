#include "moeref/huge_pages.hpp"

#include <cstdint>

#if defined(__linux__)
#include <sys/mman.h>
#endif

namespace moeref {

namespace {
constexpr uintptr_t kHugePage = uintptr_t{1} << 21;  // 2 MiB, x86-64's and arm64's usual size
constexpr size_t kWorthAdvising = size_t{4} << 20;   // smaller buffers come from malloc's heap
}  // namespace

void advise_huge_pages(void* data, size_t bytes) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  if (data == nullptr || bytes < kWorthAdvising) return;
  const uintptr_t begin = (reinterpret_cast<uintptr_t>(data) + kHugePage - 1) & ~(kHugePage - 1);
  const uintptr_t end = (reinterpret_cast<uintptr_t>(data) + bytes) & ~(kHugePage - 1);
  // A refusal (no THP in this kernel, say) leaves ordinary pages: nothing to report.
  if (end > begin) (void)madvise(reinterpret_cast<void*>(begin), end - begin, MADV_HUGEPAGE);
#else
  (void)data;
  (void)bytes;
#endif
}

}  // namespace moeref
