// The matmul tile for AVX2 (compiled with -mavx2, called only where the CPU has it):
// 6 rows x 2 vectors of 8 floats. No -mfma: products and sums are rounded apart.
#define MOEREF_TILE_FN matmul_tile_avx2
#define MOEREF_VEC_FLOATS 8
#define MOEREF_TILE_MR 6
#define MOEREF_TILE_NV 2
#include "matmul_tile.inc"

static_assert(moeref::ops::kernels::kAvx2MR == MOEREF_TILE_MR &&
                  moeref::ops::kernels::kAvx2NR == MOEREF_TILE_NV * MOEREF_VEC_FLOATS,
              "the tile's shape as matmul_tiles.hpp declares it");
