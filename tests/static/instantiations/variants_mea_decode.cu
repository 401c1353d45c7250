// MEA decode (strata/variants/mea_decode.cuh): attention over a component-head cache with the
// composite heads composed in the tile (both GroupNorm sites are one kernel: the site is a
// runtime argument), and its split-KV merge with the Output site's GroupNorm; bf16 and fp16,
// head dims 64, 96, 128.
#include <strata/variants/mea_decode.cuh>

namespace sa = strata::attention;
namespace sv = strata::variants;

#define STRATA_MEA_DECODE(T, D)                                                                 \
  template __global__ void sv::mea_paged_attention_kernel<T, D>(const sa::PagedAttentionParams, \
                                                                const sv::MeaPagedArgs);        \
  template __global__ void sv::mea_paged_merge_kernel<T, D>(const sa::PagedAttentionParams,     \
                                                            const sv::MeaPagedArgs);
STRATA_MEA_DECODE(__nv_bfloat16, 64)
STRATA_MEA_DECODE(__nv_bfloat16, 96)
STRATA_MEA_DECODE(__nv_bfloat16, 128)
STRATA_MEA_DECODE(__half, 64)
STRATA_MEA_DECODE(__half, 96)
STRATA_MEA_DECODE(__half, 128)
