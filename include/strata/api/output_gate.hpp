/// \file
/// Gated Attention (SPEC §5, §7.6): attention with the sigmoid output gate fused into the epilogue
/// (forward) and into the backward's preprocess. Layers are independent, so there is no stack
/// state; ExoFormer reuses the same gate.
///
///   gated_forward(attn, gate):   attn.o receives y' = Attention(q, k, v) o sigma(g)
///   gated_backward(attn, gate):  attn.dout is dL/dy'; writes dq, dk, dv and gate.dgate, using
///                                gate.workspace (workspace_bytes(attn, gate)) for the
///                                attention's dO = dL/dy' o sigma(g)
#pragma once

#include <string>

#include "strata/api/flash.hpp"
#include "strata/api/workspace.hpp"
#include "strata/core/options.hpp"
#include "strata/variants/output_gate.cuh"

namespace strata::api {

/// The gate of one layer: logits g as stored (dtype of the attention), elementwise [total_q, h, d]
/// or headwise [total_q, h] (then gate_head_stride is the distance between heads, usually 1).
struct GateArgs {
  const void* gate = nullptr;
  int64_t gate_row_stride = 0, gate_head_stride = 0;
  core::GateKind kind = core::GateKind::kElementwise;
  // backward only
  void* dgate = nullptr;       ///< dL/dg, the layout of gate (written)
  void* workspace = nullptr;   ///< workspace_bytes(attn, gate) bytes: the attention's dO
  size_t workspace_bytes = 0;  ///< its size, checked
};

/// Bytes of the backward workspace: dO in the attention's dtype, [total_q, h, d] contiguous.
inline size_t workspace_bytes(const FlashFwdParams& p, const GateArgs&) {
  return size_t(p.total_q > 0 ? p.total_q : 0) * size_t(p.h > 0 ? p.h : 0) *
         size_t(p.d > 0 ? p.d : 0) * 2;
}

/// Checks the gate fields (the attention's are checked by validate(attn)).
inline Status validate(const GateArgs& g, const FlashFwdParams& attn, bool backward) {
  if (g.kind != core::GateKind::kElementwise && g.kind != core::GateKind::kHeadwise)
    return Status::InvalidArgument("kind: not a GateKind value");
  if (!g.gate) return Status::InvalidArgument("gate is null");
  const bool elementwise = g.kind == core::GateKind::kElementwise;
  // every (token, head) row must be addressable without overlapping the next head or token
  const int64_t head_min = elementwise ? attn.d : 1;
  const int64_t row_min =
      int64_t(attn.h) * (g.gate_head_stride > head_min ? g.gate_head_stride : head_min);
  if (g.gate_head_stride < head_min)
    return Status::InvalidArgument("gate_head_stride = " + std::to_string(g.gate_head_stride) +
                                   ": must be at least " + std::to_string(head_min));
  if (g.gate_row_stride < row_min)
    return Status::InvalidArgument("gate_row_stride = " + std::to_string(g.gate_row_stride) +
                                   ": must be at least " + std::to_string(row_min));
  if (reinterpret_cast<uintptr_t>(g.gate) % 2)
    return Status::InvalidArgument("gate is not 2-byte aligned");
  if (!backward) return Status::Ok();
  if (!g.dgate) return Status::InvalidArgument("dgate is null");
  if (reinterpret_cast<uintptr_t>(g.dgate) % 2)
    return Status::InvalidArgument("dgate is not 2-byte aligned");
  return detail::check_workspace(g.workspace, g.workspace_bytes, workspace_bytes(attn, g));
}

namespace detail {
STRATA_EXECUTOR_BEGIN
inline variants::OutputGate gate_policy(const GateArgs& g) {
  variants::OutputGate v;
  v.gate = g.gate;
  v.gate_row_stride = g.gate_row_stride, v.gate_head_stride = g.gate_head_stride;
  v.headwise = g.kind == core::GateKind::kHeadwise;
  v.dgate = g.dgate;
  return v;
}
STRATA_EXECUTOR_END
}  // namespace detail

STRATA_EXECUTOR_BEGIN

/// Forward: attn.o = Attention(q, k, v) o sigma(g); attn.lse as in flash_fwd.
inline Status gated_forward(const FlashFwdParams& attn, const GateArgs& g,
                            cudaStream_t stream = 0) {
  if (Status s = validate_forward(attn); !s.ok()) return s;
  if (attn.total_q == 0) return Status::Ok();
  if (Status s = validate(g, attn, false); !s.ok()) return s;
  return flash_fwd(attn, detail::gate_policy(g), stream);
}

/// Backward: attn.o is the forward's gated output and attn.dout = dL/dy'; writes dq, dk, dv (as
/// flash_bwd) and g.dgate.
inline Status gated_backward(const FlashBwdParams& attn, const GateArgs& g,
                             cudaStream_t stream = 0) {
  if (Status s = validate_backward(attn); !s.ok()) return s;
  if (attn.total_q > 0)
    if (Status s = validate(g, attn, true); !s.ok()) return s;
  variants::OutputGate v = detail::gate_policy(g);
  v.dy = attn.dout;
  v.dy_row_stride = attn.do_row_stride, v.dy_head_stride = attn.do_head_stride;
  FlashBwdParams p = attn;  // the dQ and dK/dV kernels read the gated dO from the workspace
  if (attn.total_q > 0) {
    v.dout_ws = g.workspace;  // the preprocess writes it
    p.dout = g.workspace;
    p.do_row_stride = int64_t(attn.h) * attn.d, p.do_head_stride = attn.d;
  }
  return flash_bwd(p, v, stream);
}

STRATA_EXECUTOR_END
}  // namespace strata::api
