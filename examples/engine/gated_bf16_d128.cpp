// The one TU of the engine that compiles Strata's kernel (gated_bf16_d128.hpp): the host
// compiler with strata::sim for the simulator (this example), or nvcc as a .cu for the GPU
// (`nvcc -x cu -std=c++20 -arch=sm_80 -c gated_bf16_d128.cpp`).
#include "gated_bf16_d128.hpp"

#include <strata/api/output_gate.hpp>

#include <string>

namespace engine {

strata::Status gated_attention_bf16_d128(const strata::attention::FlashFwdParams& attn,
                                         const void* gate, int64_t gate_row_stride,
                                         int64_t gate_head_stride, cudaStream_t stream) {
  using strata::Status;
  if (attn.dtype != strata::attention::Dtype::kBf16 || attn.d != 128)
    return Status::Unsupported(
        "this engine instantiates bf16, d = 128 only (d = " + std::to_string(attn.d) + ")");
  strata::api::GateArgs g;
  g.gate = gate, g.gate_row_stride = gate_row_stride, g.gate_head_stride = gate_head_stride;
  if (Status s = strata::api::validate(attn); !s.ok()) return s;
  if (attn.total_q == 0) return Status::Ok();
  if (Status s = strata::api::validate(g, attn, false); !s.ok()) return s;
  // the one instantiation: d and dtype are fixed, so no dispatch over the others
  return strata::api::detail::launch_fwd<__nv_bfloat16, 128, strata::variants::OutputGate>(
      attn, strata::api::detail::gate_policy(g), stream);
}

}  // namespace engine
