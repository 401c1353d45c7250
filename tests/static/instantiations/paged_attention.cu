// The shipped attention-over-cache instantiations: bf16 and fp16, head dims 64, 96, 128, the
// split-KV merge of each and the standalone merge of attention states (cascade).
#include <strata/attention/merge_states.cuh>
#include <strata/attention/paged_attention.cuh>

#define STRATA_PAGED(T, D)                                                        \
  template __global__ void strata::attention::paged_attention_kernel<T, D>(       \
      const strata::attention::PagedAttentionParams);                             \
  template __global__ void strata::attention::paged_attention_merge_kernel<T, D>( \
      const strata::attention::PagedAttentionParams);                             \
  template __global__ void strata::attention::merge_states_kernel<T, D>(          \
      const strata::attention::MergeStatesParams);
STRATA_PAGED(__nv_bfloat16, 64)
STRATA_PAGED(__nv_bfloat16, 96)
STRATA_PAGED(__nv_bfloat16, 128)
STRATA_PAGED(__half, 64)
STRATA_PAGED(__half, 96)
STRATA_PAGED(__half, 128)
