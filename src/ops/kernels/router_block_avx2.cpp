// The router's block of 16 experts for AVX2 (compiled with -mavx2, called only where
// the CPU and the OS have it): 2 tokens x 4 vectors of 4 doubles.
#define MOEREF_ROUTER_FN router_block_avx2
#define MOEREF_VEC_DOUBLES 4
#define MOEREF_ROUTER_TOKENS 2
#include "router_block.inc"
