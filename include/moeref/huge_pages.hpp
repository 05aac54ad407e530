// Large tensors on transparent huge pages, where the kernel offers them.
//
// A fresh tensor's pages are faulted in one 4 KiB page at a time as it is zeroed;
// on a 40 MB tensor that costs several times the zeroing itself. Linux maps a range
// advised MADV_HUGEPAGE in 2 MiB pages instead (transparent_hugepage "madvise" or
// "always"). Values never change: this only decides how memory is mapped.
#pragma once

#include <cstddef>
#include <vector>

namespace moeref {

// Advises the whole 2 MiB pages inside [data, data + bytes); nothing elsewhere than
// Linux, below a few MiB, or when the kernel refuses.
void advise_huge_pages(void* data, size_t bytes);

// `values` holds `count` copies of `fill`, its storage advised before it is touched.
template <typename T>
void assign_on_huge_pages(std::vector<T>& values, size_t count, T fill) {
  std::vector<T>().swap(values);
  values.reserve(count);
  advise_huge_pages(values.data(), count * sizeof(T));
  values.assign(count, fill);
}

}  // namespace moeref
