// The matmul tile for any x86-64 CPU (SSE2): 6 rows x 2 vectors of 4 floats.
#define MOEREF_TILE_FN matmul_tile_generic
#define MOEREF_VEC_FLOATS 4
#define MOEREF_TILE_MR 6
#define MOEREF_TILE_NV 2
#include "matmul_tile.inc"

static_assert(moeref::ops::kernels::kGenericMR == MOEREF_TILE_MR &&
                  moeref::ops::kernels::kGenericNR == MOEREF_TILE_NV * MOEREF_VEC_FLOATS,
              "the tile's shape as matmul_tiles.hpp declares it");
