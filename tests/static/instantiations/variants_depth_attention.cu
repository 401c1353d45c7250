// Depth-Attention's fused token-local pass (strata/variants/depth_attention.cuh): forward,
// backward and the dgamma reduction, bf16 and fp16, head dims 64, 96, 128.
#include <strata/variants/depth_attention.cuh>

namespace sv = strata::variants;

#define STRATA_DEPTH(T, D)                                                              \
  template __global__ void sv::depth_forward_kernel<T, D>(const sv::DepthLayer);        \
  template __global__ void sv::depth_backward_kernel<T, D>(const sv::DepthLayer);
STRATA_DEPTH(__nv_bfloat16, 64)
STRATA_DEPTH(__nv_bfloat16, 96)
STRATA_DEPTH(__nv_bfloat16, 128)
STRATA_DEPTH(__half, 64)
STRATA_DEPTH(__half, 96)
STRATA_DEPTH(__half, 128)
template __global__ void sv::depth_dgamma_reduce_kernel<64>(const float*, int, float*, float*);
template __global__ void sv::depth_dgamma_reduce_kernel<96>(const float*, int, float*, float*);
template __global__ void sv::depth_dgamma_reduce_kernel<128>(const float*, int, float*, float*);
