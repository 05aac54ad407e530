#include "moeref/ops/matmul.hpp"

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>

#include "kernels/matmul_tiles.hpp"
#include "moeref/error.hpp"

namespace moeref::ops {

namespace {

struct Kernel {
  const char* name;
  int mr;  // rows of a tile
  int nr;  // columns of a tile
  kernels::MatmulTileFn tile;
  bool (*runs_here)();
};

bool always() { return true; }
#if defined(__x86_64__)
// __builtin_cpu_supports checks the CPU and that the OS saves the wider registers.
bool has_avx2() { return __builtin_cpu_supports("avx2"); }
bool has_avx512() { return __builtin_cpu_supports("avx512f"); }
#endif

// Widest first: the default is the first that runs here. Elsewhere than x86-64
// the generic tile is plain vector code for the compiler's own target.
const Kernel kKernels[] = {
#if defined(__x86_64__)
    {"avx512", kernels::kAvx512MR, kernels::kAvx512NR, kernels::matmul_tile_avx512, has_avx512},
    {"avx2", kernels::kAvx2MR, kernels::kAvx2NR, kernels::matmul_tile_avx2, has_avx2},
#endif
    {"generic", kernels::kGenericMR, kernels::kGenericNR, kernels::matmul_tile_generic, always},
};

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

// Per-thread packing buffers, grown as needed and kept: the expert loops call
// matmul once per group or expert with the same sizes.
struct Workspace {
  std::vector<float> a_packed;       // [row tiles][depth][MR]
  std::vector<float> b_packed;       // [depth][NR], one column panel
  std::vector<float> tile_out;       // [MR][NR], for the tiles at the edges of C
  std::vector<float*> scratch_rows;  // [MR] rows of tile_out
};

Workspace& workspace() {
  thread_local Workspace space;
  return space;
}

float lhs_value(const MatmulLhs& a, int64_t i, int64_t k) {
  const int64_t at = i * a.row_stride + k * a.col_stride;
  return a.f32 != nullptr ? a.f32[at] : static_cast<float>(a.i32[at]);
}

}  // namespace

std::string matmul_kernel() { return kernel_in_use().name; }

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
            float* const* c_rows) {
  if (rows <= 0 || cols <= 0) return;
  const Kernel& kernel = kernel_in_use();
  const int64_t MR = kernel.mr, NR = kernel.nr;
  const int64_t row_tiles = (rows + MR - 1) / MR;
  Workspace& space = workspace();

  // A in tiles of MR rows, each [depth][MR]; rows past the end are zero.
  space.a_packed.resize(static_cast<size_t>(row_tiles * depth * MR));
  for (int64_t t = 0; t < row_tiles; ++t) {
    float* tile = space.a_packed.data() + t * depth * MR;
    const int64_t valid = std::min<int64_t>(MR, rows - t * MR);
    for (int64_t k = 0; k < depth; ++k) {
      for (int64_t r = 0; r < MR; ++r) tile[k * MR + r] = r < valid ? lhs_value(a, t * MR + r, k) : 0.0f;
    }
  }

  space.b_packed.resize(static_cast<size_t>(depth * NR));
  space.tile_out.resize(static_cast<size_t>(MR * NR));
  space.scratch_rows.resize(static_cast<size_t>(MR));
  for (int64_t r = 0; r < MR; ++r) space.scratch_rows[static_cast<size_t>(r)] = space.tile_out.data() + r * NR;
  for (int64_t j0 = 0; j0 < cols; j0 += NR) {
    // One panel of B, [depth][NR]; columns past the end are zero.
    const int64_t width = std::min<int64_t>(NR, cols - j0);
    float* panel = space.b_packed.data();
    for (int64_t k = 0; k < depth; ++k) {
      std::memcpy(panel + k * NR, b_rows[k] + j0, static_cast<size_t>(width) * sizeof(float));
      std::fill(panel + k * NR + width, panel + (k + 1) * NR, 0.0f);
    }
    for (int64_t t = 0; t < row_tiles; ++t) {
      const int64_t valid = std::min<int64_t>(MR, rows - t * MR);
      const float* tile_a = space.a_packed.data() + t * depth * MR;
      if (valid == MR && width == NR) {
        kernel.tile(depth, tile_a, panel, c_rows + t * MR, j0);  // a whole tile: straight into C
        continue;
      }
      kernel.tile(depth, tile_a, panel, space.scratch_rows.data(), 0);
      for (int64_t r = 0; r < valid; ++r) {
        std::memcpy(c_rows[t * MR + r] + j0, space.scratch_rows[static_cast<size_t>(r)],
                    static_cast<size_t>(width) * sizeof(float));
      }
    }
  }
}

void matmul(const float* a, const float* b, float* c, int64_t rows, int64_t depth, int64_t cols) {
  std::vector<const float*> b_rows(static_cast<size_t>(depth));
  for (int64_t k = 0; k < depth; ++k) b_rows[static_cast<size_t>(k)] = b + k * cols;
  std::vector<float*> c_rows(static_cast<size_t>(rows));
  for (int64_t i = 0; i < rows; ++i) c_rows[static_cast<size_t>(i)] = c + i * cols;
  matmul(rows, depth, cols, MatmulLhs{a, nullptr, depth, 1}, b_rows.data(), c_rows.data());
}

}  // namespace moeref::ops
