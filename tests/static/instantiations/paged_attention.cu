// The shipped attention-over-cache instantiations: bf16 and fp16, head dims 64, 96, 128, and the
// split-KV merge of each.
#include <strata/attention/paged_attention.cuh>

#define STRATA_PAGED(T, D)                                                        \
  template __global__ void strata::attention::paged_attention_kernel<T, D>(       \
      const strata::attention::PagedAttentionParams);                             \
  template __global__ void strata::attention::paged_attention_merge_kernel<T, D>( \
      const strata::attention::PagedAttentionParams);
STRATA_PAGED(__nv_bfloat16, 64)
STRATA_PAGED(__nv_bfloat16, 96)
STRATA_PAGED(__nv_bfloat16, 128)
STRATA_PAGED(__half, 64)
STRATA_PAGED(__half, 96)
STRATA_PAGED(__half, 128)
