// The matmul tile for AVX-512F (compiled with -mavx512f, called only where the CPU and
// the OS have it): 4 rows x 6 vectors of 16 floats, and 4 rows x 2 vectors for the
// last columns. -ffp-contract=off keeps the products and sums rounded apart although
// the instruction set has FMA.
#define MOEREF_TILE_FN matmul_tile_avx512
#define MOEREF_TILE_TAIL_FN matmul_tile_avx512_tail
#define MOEREF_VEC_FLOATS 16
#define MOEREF_TILE_MR 4
#define MOEREF_TILE_NV 6
#define MOEREF_TILE_TAIL_NV 2
#include "matmul_tile.inc"

static_assert(moeref::ops::kernels::kAvx512MR == MOEREF_TILE_MR &&
                  moeref::ops::kernels::kAvx512NR == MOEREF_TILE_NV * MOEREF_VEC_FLOATS &&
                  moeref::ops::kernels::kAvx512TailNR == MOEREF_TILE_TAIL_NV * MOEREF_VEC_FLOATS,
              "the tile's shape as matmul_tiles.hpp declares it");
