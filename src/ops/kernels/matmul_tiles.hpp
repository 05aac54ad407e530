// The matmul tiles of each instruction set (matmul_tile.inc) and their shapes.
// Only src/ops/matmul.cpp calls them, after checking that the CPU runs them.
#pragma once

#include <cstdint>

namespace moeref::ops::kernels {

// out [MR][NR] = Ap [depth][MR] · Bp [depth][NR], summed in order k = 0 .. depth-1.
using MatmulTileFn = void (*)(int64_t depth, const float* ap, const float* bp, float* out);

inline constexpr int kGenericMR = 6, kGenericNR = 8;  // SSE2: 4 floats x 2 vectors
inline constexpr int kAvx2MR = 6, kAvx2NR = 16;       // AVX2: 8 floats x 2 vectors
inline constexpr int kAvx512MR = 8, kAvx512NR = 48;   // AVX-512: 16 floats x 3 vectors

void matmul_tile_generic(int64_t depth, const float* ap, const float* bp, float* out);
void matmul_tile_avx2(int64_t depth, const float* ap, const float* bp, float* out);
void matmul_tile_avx512(int64_t depth, const float* ap, const float* bp, float* out);

}  // namespace moeref::ops::kernels
