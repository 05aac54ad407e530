// The fused matmul tile for AVX2 with FMA (moeref run --fast's expert products): the
// shape of matmul_tile_avx2.cpp, each step one fused multiply-add.
#include <immintrin.h>

#define MOEREF_TILE_FN matmul_tile_avx2_fma
#define MOEREF_VEC_FLOATS 8
#define MOEREF_TILE_MR 6
#define MOEREF_TILE_NV 2
#define MOEREF_TILE_FMA _mm256_fmadd_ps
#include "matmul_tile.inc"

static_assert(moeref::ops::kernels::kAvx2MR == MOEREF_TILE_MR &&
                  moeref::ops::kernels::kAvx2NR == MOEREF_TILE_NV * MOEREF_VEC_FLOATS,
              "the tile's shape as matmul_tiles.hpp declares it");
