// The shipped flash backward instantiations for bf16 and fp16, head dims 64, 96, 128: preprocess,
// dQ and dK/dV kernels (deterministic mode), the dK/dV kernel with atomic dQ and the dQ convert
// kernel (fast mode).
#include <strata/attention/flash_bwd.cuh>

#define STRATA_FLASH_BWD(T, D)                                                               \
  template __global__ void                                                                   \
  strata::attention::flash_bwd_preprocess_kernel<T, D, strata::attention::VanillaAttention>( \
      const strata::attention::FlashBwdParams, const strata::attention::VanillaAttention);   \
  template __global__ void                                                                   \
  strata::attention::flash_bwd_dq_kernel<T, D, strata::attention::VanillaAttention>(         \
      const strata::attention::FlashBwdParams, const strata::attention::VanillaAttention);   \
  template __global__ void                                                                   \
  strata::attention::flash_bwd_dkdv_kernel<T, D, strata::attention::VanillaAttention, false>( \
      const strata::attention::FlashBwdParams, const strata::attention::VanillaAttention);     \
  template __global__ void                                                                     \
  strata::attention::flash_bwd_dkdv_kernel<T, D, strata::attention::VanillaAttention, true>(  \
      const strata::attention::FlashBwdParams, const strata::attention::VanillaAttention);     \
  template __global__ void                                                                     \
  strata::attention::flash_bwd_dq_convert_kernel<T, D, strata::attention::VanillaAttention>(  \
      const strata::attention::FlashBwdParams, const strata::attention::VanillaAttention, int,  \
      int64_t);
STRATA_FLASH_BWD(__nv_bfloat16, 64)
STRATA_FLASH_BWD(__nv_bfloat16, 96)
STRATA_FLASH_BWD(__nv_bfloat16, 128)
STRATA_FLASH_BWD(__half, 64)
STRATA_FLASH_BWD(__half, 96)
STRATA_FLASH_BWD(__half, 128)
