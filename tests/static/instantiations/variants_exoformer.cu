// ExoFormer's fused token-local mix pass (strata/variants/exoformer.cuh): forward, backward and
// the parameter-gradient reduction, bf16 and fp16, head dims 64, 96, 128.
#include <strata/variants/exoformer.cuh>

namespace sv = strata::variants;

#define STRATA_EXO(T, D)                                                       \
  template __global__ void sv::exo_mix_forward_kernel<T, D>(const sv::ExoMix); \
  template __global__ void sv::exo_mix_backward_kernel<T, D>(const sv::ExoMix);
STRATA_EXO(__nv_bfloat16, 64)
STRATA_EXO(__nv_bfloat16, 96)
STRATA_EXO(__nv_bfloat16, 128)
STRATA_EXO(__half, 64)
STRATA_EXO(__half, 96)
STRATA_EXO(__half, 128)
template __global__ void sv::exo_reduce_kernel<64>(const sv::ExoMix, int);
template __global__ void sv::exo_reduce_kernel<96>(const sv::ExoMix, int);
template __global__ void sv::exo_reduce_kernel<128>(const sv::ExoMix, int);
template __global__ void sv::exo_chunk_sum_kernel<64>(const float*, float*, int, int);
template __global__ void sv::exo_chunk_sum_kernel<96>(const float*, float*, int, int);
template __global__ void sv::exo_chunk_sum_kernel<128>(const float*, float*, int, int);
