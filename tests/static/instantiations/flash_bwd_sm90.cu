// The shipped Hopper flash backward instantiations: bf16 and fp16, head dims 64, 96, 128, and the
// accumulator's zeroing (dQ from the slices is flash_bwd_dq_convert_kernel, flash_bwd.cu's).
// strata-archs: sm_90a
#include <strata/attention/flash_bwd_sm90.cuh>

#define STRATA_FLASH_BWD_SM90(T, D)                                                               \
  template __global__ void                                                                        \
  strata::attention::flash_bwd_sm90_kernel<T, D, strata::attention::VanillaAttention>(            \
      const __grid_constant__ strata::attention::FlashBwdSm90Params,                              \
      const strata::attention::VanillaAttention);
STRATA_FLASH_BWD_SM90(__nv_bfloat16, 64)
STRATA_FLASH_BWD_SM90(__nv_bfloat16, 96)
STRATA_FLASH_BWD_SM90(__nv_bfloat16, 128)
STRATA_FLASH_BWD_SM90(__half, 64)
STRATA_FLASH_BWD_SM90(__half, 96)
STRATA_FLASH_BWD_SM90(__half, 128)
template __global__ void strata::attention::flash_bwd_sm90_zero_kernel<256>(float*, int64_t);
