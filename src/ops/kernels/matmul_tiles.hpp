// The matmul tiles of each instruction set (matmul_tile.inc) and their shapes.
// Only src/ops/matmul.cpp calls them, after checking that the CPU runs them.
#pragma once

#include <cstdint>

namespace moeref::ops::kernels {

// Row r of Ap [depth][MR] · Bp [depth][NR], summed in order k = 0 .. depth-1, is stored
// at out_rows[r] + col (NR floats): straight into C's rows, or into a scratch tile. With
// `accumulate` the sums go on from the values already there (the previous block of depth).
// Every tile below has this type (each .cpp defines its own with this signature).
using MatmulTile = void(int64_t depth, const float* ap, const float* bp, float* const* out_rows, int64_t col,
                        bool accumulate);
using MatmulTileFn = MatmulTile*;

inline constexpr int kGenericMR = 6, kGenericNR = 8;  // SSE2: 4 floats x 2 vectors
inline constexpr int kAvx2MR = 6, kAvx2NR = 16;       // AVX2: 8 floats x 2 vectors
// AVX-512: 4 rows x 6 vectors of 16 floats: 4 broadcasts per 24 products (6 x 64 took 6,
// and 88 against 83 GFLOPS on a 312 x 512 x 1536 product here; 3 x 8 and 2 x 8 run out of
// registers). 96 divides few widths, so the last columns take a 4 x 32 tile.
inline constexpr int kAvx512MR = 4, kAvx512NR = 96, kAvx512TailNR = 32;
// The most rows any tile has.
inline constexpr int kMaxMR = 6;
static_assert(kGenericMR <= kMaxMR && kAvx2MR <= kMaxMR && kAvx512MR <= kMaxMR, "kMaxMR bounds every tile's rows");

MatmulTile matmul_tile_generic, matmul_tile_avx2, matmul_tile_avx512, matmul_tile_avx512_tail;
// The same with one fused multiply-add a step (ops::Products::kFused).
MatmulTile matmul_tile_avx2_fma, matmul_tile_avx512_fma, matmul_tile_avx512_fma_tail;

}  // namespace moeref::ops::kernels
