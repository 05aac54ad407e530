// The fused matmul tile for AVX-512F (moeref run --fast's expert products): the shape
// of matmul_tile_avx512.cpp, each step one fused multiply-add.
#include <immintrin.h>

#define MOEREF_TILE_FN matmul_tile_avx512_fma
#define MOEREF_TILE_TAIL_FN matmul_tile_avx512_fma_tail
#define MOEREF_VEC_FLOATS 16
#define MOEREF_TILE_MR 4
#define MOEREF_TILE_NV 6
#define MOEREF_TILE_TAIL_NV 2
#define MOEREF_TILE_FMA _mm512_fmadd_ps
#include "matmul_tile.inc"

static_assert(moeref::ops::kernels::kAvx512MR == MOEREF_TILE_MR &&
                  moeref::ops::kernels::kAvx512NR == MOEREF_TILE_NV * MOEREF_VEC_FLOATS &&
                  moeref::ops::kernels::kAvx512TailNR == MOEREF_TILE_TAIL_NV * MOEREF_VEC_FLOATS,
              "the tile's shape as matmul_tiles.hpp declares it");
