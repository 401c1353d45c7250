// The shipped KV-cache append instantiations: bf16 and fp16 (the dtype matters only to
// ResFormer's V' mix), head dims 64, 96, 128.
#include <strata/attention/kv_append.cuh>

#define STRATA_KV_APPEND(T, D)                                        \
  template __global__ void strata::attention::kv_append_kernel<T, D>( \
      const strata::attention::KvAppendParams);
STRATA_KV_APPEND(__nv_bfloat16, 64)
STRATA_KV_APPEND(__nv_bfloat16, 96)
STRATA_KV_APPEND(__nv_bfloat16, 128)
STRATA_KV_APPEND(__half, 64)
STRATA_KV_APPEND(__half, 96)
STRATA_KV_APPEND(__half, 128)
