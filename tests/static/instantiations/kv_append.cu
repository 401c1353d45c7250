// The shipped KV-cache append instantiations: head dims 64, 96, 128 (a byte copy: one kernel
// serves bf16 and fp16).
#include <strata/attention/kv_append.cuh>

template __global__ void strata::attention::kv_append_kernel<64>(
    const strata::attention::KvAppendParams);
template __global__ void strata::attention::kv_append_kernel<96>(
    const strata::attention::KvAppendParams);
template __global__ void strata::attention::kv_append_kernel<128>(
    const strata::attention::KvAppendParams);
