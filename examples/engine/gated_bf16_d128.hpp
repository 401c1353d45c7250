// The instantiation header of an engine that serves one Strata configuration: Gated Attention's
// forward, bf16, head_dim 128. The engine's TUs include only this light header (Strata's Params
// and Status, no kernel template); gated_bf16_d128.cpp, the one TU that includes Strata's API,
// defines the function and so compiles the kernel (nvcc for the GPU, the host compiler for the
// simulator). FlashAttention organises its instantiations the same way (one .cu per
// (dtype, head_dim) behind run_mha_fwd_<T, D>).
//
// Why not `extern template` in the engine's TUs: Strata's API entry points are inline functions,
// and under nvcc every kernel an inline function's body names is compiled in each TU that
// includes it (nvcc registers a TU's kernels whether or not they are called), so a TU that
// includes strata/api/*.hpp compiles that header's kernels. Keep those includes in the
// instantiation TUs.
//
// For another configuration: one more .cpp/.cu with its definition, one more line here.
#pragma once

#include <cuda_runtime_api.h>  // cudaStream_t
#include <strata/attention/params.hpp>
#include <strata/status.hpp>

#include <cstdint>

namespace engine {

/// out = Attention(q, k, v) * sigmoid(gate) for a bf16, d = 128 problem (others: kUnsupported);
/// `gate`: elementwise logits [total_q, h, 128] in bf16 with its row and head strides. Every
/// field is validated as strata::api::gated_forward does; a refused call writes nothing.
strata::Status gated_attention_bf16_d128(const strata::attention::FlashFwdParams& attn,
                                         const void* gate, int64_t gate_row_stride,
                                         int64_t gate_head_stride, cudaStream_t stream);

}  // namespace engine
