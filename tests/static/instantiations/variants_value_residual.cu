// The value-residual policies' kernels (ResFormer / SVFormer, strata/variants/value_residual.cuh):
// ValueResidual forms the forward's V tiles (a register stage at d = 64 and 128, a second tile at
// d = 96); ValueResidualGrad (the backward on V' from value_residual_mix_kernel), SharedValue and
// FirstValue change only the dK/dV store, so their dQ kernels are vanilla attention's and are not
// instantiated again here. bf16 and fp16, head dims 64, 96, 128.
#include <strata/attention/flash_bwd.cuh>
#include <strata/attention/flash_fwd.cuh>
#include <strata/variants/value_residual.cuh>

namespace sa = strata::attention;
namespace sv = strata::variants;

#define STRATA_VR(T, D)                                                                            \
  template __global__ void sa::flash_fwd_kernel<T, D, sv::ValueResidual>(const sa::FlashFwdParams, \
                                                                         const sv::ValueResidual); \
  template __global__ void sa::flash_bwd_dkdv_kernel<T, D, sv::ValueResidualGrad>(                 \
      const sa::FlashBwdParams, const sv::ValueResidualGrad);                                      \
  template __global__ void sa::flash_bwd_dkdv_kernel<T, D, sv::SharedValue>(                       \
      const sa::FlashBwdParams, const sv::SharedValue);                                            \
  template __global__ void sa::flash_bwd_dkdv_kernel<T, D, sv::FirstValue>(                        \
      const sa::FlashBwdParams, const sv::FirstValue);
STRATA_VR(__nv_bfloat16, 64)
STRATA_VR(__nv_bfloat16, 96)
STRATA_VR(__nv_bfloat16, 128)
STRATA_VR(__half, 64)
STRATA_VR(__half, 96)
STRATA_VR(__half, 128)

template __global__ void sv::value_residual_mix_kernel<__nv_bfloat16, 256>(const sv::ValueResidual,
                                                                           const __nv_bfloat16*,
                                                                           int64_t, int64_t,
                                                                           int64_t, int, int,
                                                                           __nv_bfloat16*);
template __global__ void sv::value_residual_mix_kernel<__half, 256>(const sv::ValueResidual,
                                                                    const __half*, int64_t, int64_t,
                                                                    int64_t, int, int, __half*);
template __global__ void sv::value_residual_dlambda_kernel<256>(const float*, int, int, bool,
                                                                float*, float*);
template __global__ void sv::fill_zero_kernel<256>(float*, int64_t);
