// The shipped Hopper flash forward instantiations: bf16 and fp16, head dims 64, 96, 128; the
// vanilla policy and ResFormer's (V' formed by the producer's mixer warps from two TMA tiles).
// strata-archs: sm_90a
#include <strata/attention/flash_fwd_sm90.cuh>
#include <strata/variants/value_residual.cuh>

#define STRATA_FLASH_FWD_SM90(T, D)                                                    \
  template __global__ void                                                             \
  strata::attention::flash_fwd_sm90_kernel<T, D, strata::attention::VanillaAttention>( \
      const __grid_constant__ strata::attention::FlashFwdSm90Params,                   \
      const strata::attention::VanillaAttention);
STRATA_FLASH_FWD_SM90(__nv_bfloat16, 64)
STRATA_FLASH_FWD_SM90(__nv_bfloat16, 96)
STRATA_FLASH_FWD_SM90(__nv_bfloat16, 128)
STRATA_FLASH_FWD_SM90(__half, 64)
STRATA_FLASH_FWD_SM90(__half, 96)
STRATA_FLASH_FWD_SM90(__half, 128)

#define STRATA_FLASH_FWD_SM90_RESFORMER(T, D)                                               \
  template __global__ void                                                                  \
  strata::attention::flash_fwd_sm90_kernel<T, D, strata::variants::ValueResidual>(          \
      const __grid_constant__ strata::attention::FlashFwdSm90Params,                        \
      const strata::variants::ValueResidual);
STRATA_FLASH_FWD_SM90_RESFORMER(__nv_bfloat16, 64)
STRATA_FLASH_FWD_SM90_RESFORMER(__nv_bfloat16, 96)
STRATA_FLASH_FWD_SM90_RESFORMER(__nv_bfloat16, 128)
STRATA_FLASH_FWD_SM90_RESFORMER(__half, 64)
STRATA_FLASH_FWD_SM90_RESFORMER(__half, 96)
STRATA_FLASH_FWD_SM90_RESFORMER(__half, 128)
