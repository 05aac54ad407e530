// The router's block of 16 experts for AVX-512F (compiled with -mavx512f, called only
// where the CPU and the OS have it): 8 tokens x 2 vectors of 8 doubles (4 tokens took
// 2.8 ms, 8 took 2.4 ms on the medium size's router here).
#define MOEREF_ROUTER_FN router_block_avx512
#define MOEREF_VEC_DOUBLES 8
#define MOEREF_ROUTER_TOKENS 8
#include "router_block.inc"
