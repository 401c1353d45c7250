// The token-local QK-norm + RoPE pass (strata/variants/qk_norm_rope.cuh): forward, backward and
// the dgamma reduction, bf16 and fp16, head dims 64, 96, 128.
#include <strata/variants/qk_norm_rope.cuh>

namespace sv = strata::variants;

#define STRATA_QK(T, D)                                                                        \
  template __global__ void sv::qk_norm_rope_forward_kernel<T, D>(const sv::QkRows,              \
                                                                 const sv::QkNormRopeOptions);  \
  template __global__ void sv::qk_norm_rope_backward_kernel<T, D>(const sv::QkRows,             \
                                                                  const sv::QkNormRopeOptions);
STRATA_QK(__nv_bfloat16, 64)
STRATA_QK(__nv_bfloat16, 96)
STRATA_QK(__nv_bfloat16, 128)
STRATA_QK(__half, 64)
STRATA_QK(__half, 96)
STRATA_QK(__half, 128)
template __global__ void sv::qk_norm_dgamma_reduce_kernel<64>(const float*, int, float*);
template __global__ void sv::qk_norm_dgamma_reduce_kernel<96>(const float*, int, float*);
template __global__ void sv::qk_norm_dgamma_reduce_kernel<128>(const float*, int, float*);
