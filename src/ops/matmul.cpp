#include "moeref/ops/matmul.hpp"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <utility>
#include <vector>

#include "kernels/matmul_tiles.hpp"
#include "moeref/error.hpp"

namespace moeref::ops {

namespace {

struct Kernel {
  const char* name;
  int mr;  // rows of a tile
  int nr;  // columns of a tile
  kernels::MatmulTileFn tile;
  int tail_nr;  // columns of the tile for the last columns (fewer than nr)
  kernels::MatmulTileFn tail;
  bool (*runs_here)();
  // The same shapes with one fused multiply-add a step (Products::kFused); null where
  // the instruction set has none.
  kernels::MatmulTileFn fused_tile;
  kernels::MatmulTileFn fused_tail;
  bool (*fused_runs_here)();
};

bool always() { return true; }
#if defined(__x86_64__)
// __builtin_cpu_supports checks the CPU and that the OS saves the wider registers.
bool has_avx2() { return __builtin_cpu_supports("avx2"); }
bool has_avx512() { return __builtin_cpu_supports("avx512f"); }
bool has_avx2_fma() { return has_avx2() && __builtin_cpu_supports("fma"); }
#endif

// Widest first: the default is the first that runs here. Elsewhere than x86-64
// the generic tile is plain vector code for the compiler's own target.
const Kernel kKernels[] = {
#if defined(__x86_64__)
    {"avx512", kernels::kAvx512MR, kernels::kAvx512NR, kernels::matmul_tile_avx512, kernels::kAvx512TailNR,
     kernels::matmul_tile_avx512_tail, has_avx512, kernels::matmul_tile_avx512_fma,
     kernels::matmul_tile_avx512_fma_tail, has_avx512},
    {"avx2", kernels::kAvx2MR, kernels::kAvx2NR, kernels::matmul_tile_avx2, kernels::kAvx2NR, kernels::matmul_tile_avx2,
     has_avx2, kernels::matmul_tile_avx2_fma, kernels::matmul_tile_avx2_fma, has_avx2_fma},
#endif
    {"generic", kernels::kGenericMR, kernels::kGenericNR, kernels::matmul_tile_generic, kernels::kGenericNR,
     kernels::matmul_tile_generic, always, nullptr, nullptr, nullptr},
};

bool fuses(const Kernel& kernel) { return kernel.fused_tile != nullptr && kernel.fused_runs_here(); }

std::string kernel_names() {
  std::string names;
  for (const Kernel& kernel : kKernels) names += (names.empty() ? "" : ", ") + std::string(kernel.name);
  return names;
}

const Kernel* find_kernel(const std::string& name) {
  for (const Kernel& kernel : kKernels) {
    if (name == kernel.name) return &kernel;
  }
  return nullptr;
}

// The widest kernel this CPU runs, or the one MOEREF_MATMUL_KERNEL names.
const Kernel* initial_kernel() {
  const char* requested = std::getenv("MOEREF_MATMUL_KERNEL");
  if (requested != nullptr && *requested != '\0') {
    const Kernel* kernel = find_kernel(requested);
    if (kernel == nullptr) fail_input("MOEREF_MATMUL_KERNEL", requested, kernel_names());
    if (!kernel->runs_here()) {
      std::string available;
      for (const std::string& name : matmul_kernels_available()) available += (available.empty() ? "" : ", ") + name;
      fail_input("MOEREF_MATMUL_KERNEL", requested, "a kernel this CPU runs: " + available);
    }
    return kernel;
  }
  for (const Kernel& kernel : kKernels) {
    if (kernel.runs_here()) return &kernel;
  }
  return &kKernels[sizeof(kKernels) / sizeof(kKernels[0]) - 1];
}

std::atomic<const Kernel*> selected_kernel{nullptr};

const Kernel& kernel_in_use() {
  const Kernel* kernel = selected_kernel.load(std::memory_order_acquire);
  if (kernel == nullptr) {
    kernel = initial_kernel();
    selected_kernel.store(kernel, std::memory_order_release);
  }
  return *kernel;
}

// Per-thread buffers, grown as needed and kept: the expert loops call matmul once
// per group or expert with the same sizes.
struct Workspace {
  std::vector<float> a_packed;                   // [row tiles][depth block][MR]
  std::vector<float> b_packed;                   // [depth block][NR], one column panel
  std::vector<float> tile_out;                   // [MR][NR], for the tiles at the edges of C
  std::vector<float*> scratch_rows;              // [MR] rows of tile_out
  std::vector<int64_t> nonzeros;                 // [rows] nonzero count of each row of A
  std::vector<int64_t> dense_rows;               // rows of A summed by the tiles, ascending
  std::vector<int64_t> sparse_rows;              // rows of A summed from their nonzeros, ascending
  std::vector<float*> dense_c_rows;              // [dense rows] their rows of C
  std::vector<int64_t> first_term;               // [rows] where a sparse row's terms start in terms
  std::vector<std::pair<int64_t, float>> terms;  // (k, a[i, k]) of the sparse rows' nonzeros
};

// The first 64-byte aligned float of `buffer`, which holds `count` floats from there on:
// a vector load of a packed panel then never straddles two cache lines. (Left to the
// heap, the panels of the medium layer's expert products were misaligned, and those
// products took 15-20 ms more each at one thread.)
float* aligned_floats(std::vector<float>& buffer, size_t count) {
  constexpr size_t kAlignFloats = 64 / sizeof(float);
  buffer.resize(count + kAlignFloats);
  const uintptr_t address = reinterpret_cast<uintptr_t>(buffer.data());
  const size_t skip = ((64 - address % 64) % 64) / sizeof(float);
  return buffer.data() + skip;
}

Workspace& workspace() {
  thread_local Workspace space;
  return space;
}

float lhs_value(const MatmulLhs& a, int64_t i, int64_t k) {
  const int64_t at = i * a.row_stride + k * a.col_stride;
  return a.f32 != nullptr ? a.f32[at] : static_cast<float>(a.i32[at]);
}

// visit(i, k, a[i, k]) for every element of A, in the order A lies in memory.
template <typename Element, typename Visit>
void for_each_element(const Element* data, int64_t rows, int64_t depth, int64_t row_stride, int64_t col_stride,
                      Visit visit) {
  if (std::abs(row_stride) >= std::abs(col_stride)) {
    for (int64_t i = 0; i < rows; ++i) {
      const Element* row = data + i * row_stride;
      for (int64_t k = 0; k < depth; ++k) visit(i, k, static_cast<float>(row[k * col_stride]));
    }
  } else {
    for (int64_t k = 0; k < depth; ++k) {
      const Element* column = data + k * col_stride;
      for (int64_t i = 0; i < rows; ++i) visit(i, k, static_cast<float>(column[i * row_stride]));
    }
  }
}

template <typename Visit>
void for_each_lhs_value(int64_t rows, int64_t depth, const MatmulLhs& a, Visit visit) {
  if (a.f32 != nullptr) {
    for_each_element(a.f32, rows, depth, a.row_stride, a.col_stride, visit);
  } else {
    for_each_element(a.i32, rows, depth, a.row_stride, a.col_stride, visit);
  }
}

// A row whose nonzeros are at most this fraction of depth is summed from them alone
// (a dispatch or combine row, an empty expert slot); a busier one goes to the tiles,
// which reuse each panel of B across MR rows.
constexpr int64_t kSparseRowDivisor = 8;

// Sorts the rows of A into dense_rows and sparse_rows by their count of nonzeros.
// NaN counts as nonzero; -0 as zero (-0 * finite b is a zero too).
void split_rows(int64_t rows, int64_t depth, const MatmulLhs& a, Workspace& space) {
  space.nonzeros.assign(static_cast<size_t>(rows), 0);
  for_each_lhs_value(rows, depth, a,
                     [&](int64_t i, int64_t, float value) { space.nonzeros[static_cast<size_t>(i)] += value != 0.0f; });
  for (int64_t i = 0; i < rows; ++i) {
    const bool sparse = space.nonzeros[static_cast<size_t>(i)] * kSparseRowDivisor <= depth;
    (sparse ? space.sparse_rows : space.dense_rows).push_back(i);
  }
}

bool all_finite(int64_t depth, int64_t cols, const float* const* b_rows) {
  bool finite = true;
  for (int64_t k = 0; k < depth; ++k) {
    const float* row = b_rows[k];
    for (int64_t j = 0; j < cols; ++j) finite &= std::isfinite(row[j]);
  }
  return finite;
}

// The sparse rows of C from the nonzeros of their rows of A. With every b finite, a
// term 0 * b is a zero, and adding a zero leaves acc as it is: acc starts at +0 and
// is never -0 (x + y is -0 only when both are), and acc + (+-0) == acc for any other
// acc, +0 included. So the nonzero terms alone, in the same order, give the dense
// sum's bits.
// Fused, acc = fma(value, b, acc) is acc + (+-0) for a zero term just the same.
void sum_sparse_rows(int64_t depth, int64_t cols, const MatmulLhs& a, const float* const* b_rows, float* const* c_rows,
                     bool fused, Workspace& space) {
  space.first_term.assign(space.nonzeros.size(), 0);
  int64_t term_count = 0;
  for (int64_t i : space.sparse_rows) {
    space.first_term[static_cast<size_t>(i)] = term_count;
    term_count += space.nonzeros[static_cast<size_t>(i)];
  }
  space.terms.resize(static_cast<size_t>(term_count));
  // Filled in memory order: each row's terms still come in ascending k.
  std::vector<int64_t>& next_term = space.first_term;
  for_each_lhs_value(static_cast<int64_t>(space.nonzeros.size()), depth, a, [&](int64_t i, int64_t k, float value) {
    const size_t row = static_cast<size_t>(i);
    if (value != 0.0f && space.nonzeros[row] * kSparseRowDivisor <= depth) {
      space.terms[static_cast<size_t>(next_term[row]++)] = {k, value};
    }
  });
  // next_term[i] now ends row i's terms, which start nonzeros[i] before it.
  for (int64_t i : space.sparse_rows) {
    float* c = c_rows[i];
    std::fill(c, c + cols, 0.0f);
    const int64_t end = next_term[static_cast<size_t>(i)];
    for (int64_t t = end - space.nonzeros[static_cast<size_t>(i)]; t < end; ++t) {
      const auto [k, value] = space.terms[static_cast<size_t>(t)];
      const float* b = b_rows[k];
      if (fused) {
        for (int64_t j = 0; j < cols; ++j) c[j] = std::fma(value, b[j], c[j]);
      } else {
        for (int64_t j = 0; j < cols; ++j) c[j] = c[j] + value * b[j];
      }
    }
  }
}

// Depth is summed in blocks of this many k, and the tiles carry their float32 sums from
// one block to the next in C itself (storing and reloading a float32 sum changes no bit,
// so the order over k and every rounding stay those of one long sum). One block of A,
// [rows][256], and one panel of B, [256][NR], then stay in the L2 cache while the panels
// pass; a whole-depth A of 320 x 2048 floats (the medium size's second expert product)
// did not. README's Speed section has the GFLOPS before and after; blocks of 128 did no
// better, of 96 worse.
constexpr int64_t kDepthBlock = 256;

// A's dense rows, k in [k0, k0 + kc), in tiles of MR rows, each [kc][MR]; rows past the
// end are zero. Returns where the tiles start.
const float* pack_lhs_block(const MatmulLhs& a, int64_t k0, int64_t kc, int64_t MR, Workspace& space) {
  const int64_t rows = static_cast<int64_t>(space.dense_rows.size());
  const int64_t row_tiles = (rows + MR - 1) / MR;
  float* packed = aligned_floats(space.a_packed, static_cast<size_t>(row_tiles * kc * MR));
  for (int64_t t = 0; t < row_tiles; ++t) {
    float* tile = packed + t * kc * MR;
    const int64_t valid = std::min<int64_t>(MR, rows - t * MR);
    if (valid == MR && a.f32 != nullptr && a.col_stride == 1) {
      // Whole tiles of contiguous float rows: one k at a time across the tile's rows.
      const float* tile_rows[kernels::kMaxMR];
      for (int64_t r = 0; r < MR; ++r)
        tile_rows[r] = a.f32 + space.dense_rows[static_cast<size_t>(t * MR + r)] * a.row_stride + k0;
      for (int64_t k = 0; k < kc; ++k) {
        for (int64_t r = 0; r < MR; ++r) tile[k * MR + r] = tile_rows[r][k];
      }
      continue;
    }
    for (int64_t r = 0; r < MR; ++r) {
      if (r >= valid) {
        for (int64_t k = 0; k < kc; ++k) tile[k * MR + r] = 0.0f;
        continue;
      }
      const int64_t i = space.dense_rows[static_cast<size_t>(t * MR + r)];
      for (int64_t k = 0; k < kc; ++k) tile[k * MR + r] = lhs_value(a, i, k0 + k);
    }
  }
  return packed;
}

// The dense rows of C with the kernel's tiles: depth in blocks of kDepthBlock; within a
// block, A's rows packed MR at a time, B one panel of NR columns at a time.
void sum_dense_rows(int64_t depth, int64_t cols, const MatmulLhs& a, const float* const* b_rows, float* const* c_rows,
                    bool fused, Workspace& space) {
  const Kernel& kernel = kernel_in_use();
  const kernels::MatmulTileFn main_fn = fused ? kernel.fused_tile : kernel.tile;
  const kernels::MatmulTileFn tail_fn = fused ? kernel.fused_tail : kernel.tail;
  const int64_t MR = kernel.mr, NR = kernel.nr;
  const int64_t rows = static_cast<int64_t>(space.dense_rows.size());
  const int64_t row_tiles = (rows + MR - 1) / MR;
  space.dense_c_rows.resize(static_cast<size_t>(rows));
  for (int64_t r = 0; r < rows; ++r)
    space.dense_c_rows[static_cast<size_t>(r)] = c_rows[space.dense_rows[static_cast<size_t>(r)]];
  float* const* out_rows = space.dense_c_rows.data();

  float* panel = aligned_floats(space.b_packed, static_cast<size_t>(std::min(depth, kDepthBlock) * NR));
  float* tile_out = aligned_floats(space.tile_out, static_cast<size_t>(MR * NR));
  space.scratch_rows.resize(static_cast<size_t>(MR));
  for (int64_t r = 0; r < MR; ++r) space.scratch_rows[static_cast<size_t>(r)] = tile_out + r * NR;
  // depth 0 still runs one (empty) block, so that C is written: every sum is +0.
  for (int64_t k0 = 0; k0 == 0 || k0 < depth; k0 += kDepthBlock) {
    const int64_t kc = std::min(kDepthBlock, depth - k0);
    const bool accumulate = k0 > 0;
    const float* a_packed = pack_lhs_block(a, k0, kc, MR, space);
    for (int64_t j0 = 0; j0 < cols;) {
      // One panel of B, [kc][panel_nr]; columns past the end are zero. Whole panels of
      // the main tile, then the narrower tail tile for the columns left.
      const bool main_tile = cols - j0 >= NR || kernel.tail_nr == NR;
      const int64_t panel_nr = main_tile ? NR : kernel.tail_nr;
      const kernels::MatmulTileFn tile = main_tile ? main_fn : tail_fn;
      const int64_t width = std::min<int64_t>(panel_nr, cols - j0);
      for (int64_t k = 0; k < kc; ++k) {
        std::memcpy(panel + k * panel_nr, b_rows[k0 + k] + j0, static_cast<size_t>(width) * sizeof(float));
        std::fill(panel + k * panel_nr + width, panel + (k + 1) * panel_nr, 0.0f);
      }
      for (int64_t t = 0; t < row_tiles; ++t) {
        const int64_t valid = std::min<int64_t>(MR, rows - t * MR);
        const float* tile_a = a_packed + t * kc * MR;
        if (valid == MR && width == panel_nr) {
          tile(kc, tile_a, panel, out_rows + t * MR, j0, accumulate);  // a whole tile: straight into C
          continue;
        }
        // An edge tile goes through the scratch tile, which takes C's sums so far first
        // (in the first block the tile starts from +0 and reads nothing there).
        if (accumulate) {
          for (int64_t r = 0; r < MR; ++r) {
            float* scratch = space.scratch_rows[static_cast<size_t>(r)];
            const int64_t kept = r < valid ? width : 0;
            if (kept > 0) std::memcpy(scratch, out_rows[t * MR + r] + j0, static_cast<size_t>(kept) * sizeof(float));
            std::fill(scratch + kept, scratch + NR, 0.0f);
          }
        }
        tile(kc, tile_a, panel, space.scratch_rows.data(), 0, accumulate);
        for (int64_t r = 0; r < valid; ++r) {
          std::memcpy(out_rows[t * MR + r] + j0, space.scratch_rows[static_cast<size_t>(r)],
                      static_cast<size_t>(width) * sizeof(float));
        }
      }
      j0 += panel_nr;
    }
  }
}

}  // namespace

std::string matmul_kernel() { return kernel_in_use().name; }

std::string fused_matmul_kernel() {
  const Kernel& kernel = kernel_in_use();
  return fuses(kernel) ? std::string(kernel.name) + "-fma" : std::string();
}

std::vector<std::string> matmul_kernels_available() {
  std::vector<std::string> names;
  for (const Kernel& kernel : kKernels) {
    if (kernel.runs_here()) names.push_back(kernel.name);
  }
  return names;
}

bool select_matmul_kernel(const std::string& name) {
  const Kernel* kernel = find_kernel(name);
  if (kernel == nullptr || !kernel->runs_here()) return false;
  selected_kernel.store(kernel, std::memory_order_release);
  return true;
}

void matmul(int64_t rows, int64_t depth, int64_t cols, const MatmulLhs& a, const float* const* b_rows,
            float* const* c_rows, Products products) {
  if (rows <= 0 || cols <= 0) return;
  const bool fused = products == Products::kFused && fuses(kernel_in_use());
  Workspace& space = workspace();
  space.dense_rows.clear();
  space.sparse_rows.clear();
  split_rows(rows, depth, a, space);
  if (!space.sparse_rows.empty() && !all_finite(depth, cols, b_rows)) {
    // 0 * inf is NaN: with a non-finite B every term counts, so every row is summed densely.
    for (int64_t i : space.sparse_rows) space.dense_rows.push_back(i);
    std::sort(space.dense_rows.begin(), space.dense_rows.end());
    space.sparse_rows.clear();
  }
  if (!space.sparse_rows.empty()) sum_sparse_rows(depth, cols, a, b_rows, c_rows, fused, space);
  if (!space.dense_rows.empty()) sum_dense_rows(depth, cols, a, b_rows, c_rows, fused, space);
}

void matmul(const float* a, const float* b, float* c, int64_t rows, int64_t depth, int64_t cols, Products products) {
  std::vector<const float*> b_rows(static_cast<size_t>(depth));
  for (int64_t k = 0; k < depth; ++k) b_rows[static_cast<size_t>(k)] = b + k * cols;
  std::vector<float*> c_rows(static_cast<size_t>(rows));
  for (int64_t i = 0; i < rows; ++i) c_rows[static_cast<size_t>(i)] = c + i * cols;
  matmul(rows, depth, cols, MatmulLhs{a, nullptr, depth, 1}, b_rows.data(), c_rows.data(), products);
}

}  // namespace moeref::ops
