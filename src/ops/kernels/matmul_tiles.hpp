// The matmul tiles of each instruction set (matmul_tile.inc) and their shapes.
// Only src/ops/matmul.cpp calls them, after checking that the CPU runs them.
#pragma once

#include <cstdint>

namespace moeref::ops::kernels {

// Row r of Ap [depth][MR] · Bp [depth][NR], summed in order k = 0 .. depth-1, is stored
// at out_rows[r] + col (NR floats): straight into C's rows, or into a scratch tile.
using MatmulTileFn = void (*)(int64_t depth, const float* ap, const float* bp, float* const* out_rows, int64_t col);

inline constexpr int kGenericMR = 6, kGenericNR = 8;  // SSE2: 4 floats x 2 vectors
inline constexpr int kAvx2MR = 6, kAvx2NR = 16;       // AVX2: 8 floats x 2 vectors
// AVX-512: 16 floats x 4 vectors. 6 x 64 beat 8 x 48 (fewer broadcasts per product: 92
// against 88 GFLOPS on a 320 x 512 x 2048 product here) and divides the usual widths.
inline constexpr int kAvx512MR = 6, kAvx512NR = 64;

void matmul_tile_generic(int64_t depth, const float* ap, const float* bp, float* const* out_rows, int64_t col);
void matmul_tile_avx2(int64_t depth, const float* ap, const float* bp, float* const* out_rows, int64_t col);
void matmul_tile_avx512(int64_t depth, const float* ap, const float* bp, float* const* out_rows, int64_t col);

}  // namespace moeref::ops::kernels
