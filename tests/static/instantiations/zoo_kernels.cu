// Every production (Bug = 0) kernel of the zoo, instantiated once; tests/static/ptxas_gate.py
// compiles this file for sm_80 and sm_90a and holds each kernel to tests/static/budget.json.
// zoo::histogram is a template over the bin type.
#include "zoo/zoo.cuh"

template __global__ void zoo::block_sum<256>(const float*, float*, int);
template __global__ void zoo::sgemm_tiled<16, 0>(const float*, const float*, float*, int, int, int);
template __global__ void zoo::mma_gemm_tn<__nv_bfloat16, 0>(const __nv_bfloat16*,
                                                            const __nv_bfloat16*, float*, int, int,
                                                            int);
template __global__ void zoo::mma_gemm_tn<__half, 0>(const __half*, const __half*, float*, int, int,
                                                     int);
template __global__ void zoo::mma_tile_nn<__nv_bfloat16>(const __nv_bfloat16*, const __nv_bfloat16*,
                                                         float*);
template __global__ void zoo::mma_tile_nn<__half>(const __half*, const __half*, float*);
template __global__ void zoo::flash_fwd_simt<64, false, 0>(const float*, const float*, const float*,
                                                           float*, float*, int, float);
template __global__ void zoo::flash_fwd_simt<64, true, 0>(const float*, const float*, const float*,
                                                          float*, float*, int, float);
template __global__ void zoo::histogram<int>(const int*, int, int*, int, float*);
