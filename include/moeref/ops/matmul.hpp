// The expert layers' matrix products, with the order of every sum fixed.
//
// C = A · B for A [rows, depth] and B [depth, cols], every element summed in
// float32 in index order, with no fused multiply-add (spec/notation.md §4.6):
//
//   acc = +0;  for k = 0 .. depth-1:  acc = f32(acc + f32(a[i,k] * b[k,j]));  c[i,j] = acc
//
// SIMD kernels (generic SSE2, AVX2, AVX-512; the widest this CPU runs is chosen at
// run time) only decide how many elements are computed side by side, never the
// order inside one, so every kernel, every CPU and every thread count gives the
// same bits. Packing buffers are per thread and reused from call to call.
//
// A row of A with at most depth / 8 nonzeros (a row of the dispatch or combine
// tensor, an empty expert slot) is summed from its nonzeros alone, in the same order.
// When every b is finite that is the same bits: each left-out term is a zero, acc is
// never -0, and acc + (+-0) == acc. When some b is inf or NaN every term counts.
// C must not share memory with A or B.
//
// Products::kFused (moeref run --fast's expert products only) rounds each step once
// instead, acc = fma(a[i,k], b[k,j], acc), in the same order, where the kernel in use
// has a fused tile (AVX-512, AVX2 with FMA); elsewhere it is the separate sum above.
// Its bits are the same for every thread count, but not on every CPU.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace moeref::ops {

// A read as a(i, k) = data[i * row_stride + k * col_stride]; exactly one of f32 and
// i32 is set (i32: exact integers, such as a dispatch tensor, read as float32).
struct MatmulLhs {
  const float* f32 = nullptr;
  const int32_t* i32 = nullptr;
  int64_t row_stride = 0;
  int64_t col_stride = 0;
};

// How each step of a sum is rounded (see above).
enum class Products { kSeparate, kFused };

// C = A · B with B's row k at b_rows[k] (cols floats) and C's row i at c_rows[i]
// (cols floats, overwritten): rows gathered from and scattered to anywhere.
void matmul(int64_t rows, int64_t depth, int64_t cols, const MatmulLhs& a, const float* const* b_rows,
            float* const* c_rows, Products products = Products::kSeparate);

// C [rows, cols] = A [rows, depth] · B [depth, cols], all row-major and contiguous.
void matmul(const float* a, const float* b, float* c, int64_t rows, int64_t depth, int64_t cols,
            Products products = Products::kSeparate);

// The kernel in use: "avx512", "avx2" or "generic". The environment variable
// MOEREF_MATMUL_KERNEL may name a narrower one than the CPU allows.
std::string matmul_kernel();
// What Products::kFused runs with the kernel in use: "avx512-fma" or "avx2-fma"; empty
// when that kernel has no fused tile here (kFused then sums as kSeparate does).
std::string fused_matmul_kernel();
// The kernels this CPU can run, widest first.
std::vector<std::string> matmul_kernels_available();
// Selects a kernel by name for the whole process (tests compare them); false when
// this CPU cannot run it.
bool select_matmul_kernel(const std::string& name);

}  // namespace moeref::ops
