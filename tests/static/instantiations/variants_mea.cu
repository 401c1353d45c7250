// MEA (strata/variants/mea.cuh): the fused token-local pass (forward, backward, the
// parameter-gradient reduction) of both GroupNorm sites, and the Output site's composition of
// K', V', its attention policy (GroupNorm in the epilogue and in the backward's preprocess) and
// its dgamma_o, dbeta_o column pass; bf16 and fp16, head dims 64, 96, 128.
#include <strata/attention/flash_bwd.cuh>
#include <strata/attention/flash_fwd.cuh>
#include <strata/variants/mea.cuh>

namespace sa = strata::attention;
namespace sv = strata::variants;

#define STRATA_MEA(T, D)                                                                  \
  template __global__ void sv::mea_forward_kernel<T, D>(const sv::MeaLayer);              \
  template __global__ void sv::mea_backward_kernel<T, D>(const sv::MeaLayer);             \
  template __global__ void sv::mea_compose_kernel<T, D>(const sv::MeaCompose);            \
  template __global__ void sa::flash_fwd_kernel<T, D, sv::MeaOutputAttention>(            \
      const sa::FlashFwdParams, const sv::MeaOutputAttention);                            \
  template __global__ void sa::flash_bwd_preprocess_kernel<T, D, sv::MeaOutputAttention>( \
      const sa::FlashBwdParams, const sv::MeaOutputAttention);                            \
  template __global__ void sa::flash_bwd_dq_kernel<T, D, sv::MeaOutputAttention>(         \
      const sa::FlashBwdParams, const sv::MeaOutputAttention);                            \
  template __global__ void sa::flash_bwd_dkdv_kernel<T, D, sv::MeaOutputAttention>(       \
      const sa::FlashBwdParams, const sv::MeaOutputAttention);
STRATA_MEA(__nv_bfloat16, 64)
STRATA_MEA(__nv_bfloat16, 96)
STRATA_MEA(__nv_bfloat16, 128)
STRATA_MEA(__half, 64)
STRATA_MEA(__half, 96)
STRATA_MEA(__half, 128)
template __global__ void sv::mea_reduce_kernel<sv::kMeaReduceThreads>(const sv::MeaReduce);
template __global__ void sv::mea_output_gn_partial_kernel<__nv_bfloat16, sv::kMeaColumnThreads>(
    const sv::MeaOutputGnGrad);
template __global__ void sv::mea_output_gn_partial_kernel<__half, sv::kMeaColumnThreads>(
    const sv::MeaOutputGnGrad);
template __global__ void sv::mea_sum_kernel<sv::kMeaColumnThreads>(const float*, int64_t, int,
                                                                   int64_t, float*);
