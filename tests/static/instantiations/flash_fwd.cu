// The shipped flash forward instantiations: bf16 and fp16, head dims 64, 96, 128.
#include <strata/attention/flash_fwd.cuh>

#define STRATA_FLASH_FWD(T, D)                                                    \
  template __global__ void                                                        \
  strata::attention::flash_fwd_kernel<T, D, strata::attention::VanillaAttention>( \
      const strata::attention::FlashFwdParams, const strata::attention::VanillaAttention);
STRATA_FLASH_FWD(__nv_bfloat16, 64)
STRATA_FLASH_FWD(__nv_bfloat16, 96)
STRATA_FLASH_FWD(__nv_bfloat16, 128)
STRATA_FLASH_FWD(__half, 64)
STRATA_FLASH_FWD(__half, 96)
STRATA_FLASH_FWD(__half, 128)
