// The C ABI of Gated Attention's sigmoid output gate (SPEC §5, §7.6).
#include <strata/api/output_gate.hpp>

#include "capi_common.hpp"

using namespace strata_capi;

namespace {

/// The gate as GateArgs: like q (elementwise) or like q without head_dim (headwise); dgate has
/// gate's shape and strides (the kernels address both with gate's strides).
Status gate_args(const StrataAttention& a, const StrataGate& g, bool backward,
                 strata::api::GateArgs* out) {
  *out = strata::api::GateArgs{};
  const bool varlen = given(a.cu_seqlens_q);
  if (Status s = check_given(g.gate, "gate"); !s.ok()) return s;
  const bool elementwise = g.gate.ndim == a.q.ndim;
  Rows r;
  if (Status s = rows_of(g.gate, "gate", varlen, elementwise, &r); !s.ok()) return s;
  if (Status s = check_dtype(g.gate, "gate", a.q.dtype); !s.ok()) return s;
  bool same = true;
  for (int i = 0; i < g.gate.ndim; ++i) same = same && g.gate.shape[i] == a.q.shape[i];
  if (!same)
    return invalid("gate: shape " + shape_str(g.gate) + " is neither q's " + shape_str(a.q) +
                   " (elementwise) nor q's without head_dim (headwise)");
  out->gate = g.gate.data;
  out->gate_row_stride = r.row_stride, out->gate_head_stride = r.head_stride;
  out->kind =
      elementwise ? strata::core::GateKind::kElementwise : strata::core::GateKind::kHeadwise;
  if (!backward) return Status::Ok();
  if (Status s = check_given(g.dgate, "dgate"); !s.ok()) return s;
  if (Status s = check_dtype(g.dgate, "dgate", a.q.dtype); !s.ok()) return s;
  if (Status s = same_shape(g.dgate, "dgate", g.gate, "gate"); !s.ok()) return s;
  Rows d;
  if (Status s = rows_of(g.dgate, "dgate", varlen, elementwise, &d); !s.ok()) return s;
  if (d.row_stride != r.row_stride || d.head_stride != r.head_stride)
    return invalid("dgate: strides must equal gate's (allocate it with torch.empty_like(gate))");
  out->dgate = g.dgate.data;
  return Status::Ok();
}

}  // namespace

extern "C" {

int strata_gated_fwd(const StrataAttention* a, const StrataGate* g) {
  return guarded([&]() -> Status {
    FlashBwdParams p;
    strata::api::GateArgs args;
    if (Status s = attention_params(*a, false, &p); !s.ok()) return s;
    if (Status s = gate_args(*a, *g, false, &args); !s.ok() || empty_problem(p)) return s;
    return strata::api::gated_forward(p, args, stream_of(*a));
  });
}

int strata_gated_bwd_workspace_bytes(const StrataAttention* a, const StrataGate* g,
                                     int64_t* bytes) {
  return guarded([&]() -> Status {
    FlashBwdParams p;
    int64_t offset = 0;
    strata::api::GateArgs args;
    if (Status s = attention_params(*a, true, &p, &offset, false); !s.ok()) return s;
    if (Status s = gate_args(*a, *g, false, &args); !s.ok()) return s;
    *bytes = empty_problem(p) ? 0 : offset + int64_t(strata::api::workspace_bytes(p, args));
    return Status::Ok();
  });
}

int strata_gated_bwd(const StrataAttention* a, const StrataGate* g) {
  return guarded([&]() -> Status {
    FlashBwdParams p;
    int64_t offset = 0;
    strata::api::GateArgs args;
    if (Status s = attention_params(*a, true, &p, &offset); !s.ok()) return s;
    if (Status s = gate_args(*a, *g, true, &args); !s.ok() || empty_problem(p)) return s;
    void* ws = nullptr;
    const int64_t bytes = int64_t(strata::api::workspace_bytes(p, args));
    if (Status s = variant_workspace(*a, offset, bytes, &ws); !s.ok()) return s;
    args.workspace = ws, args.workspace_bytes = size_t(bytes);
    return strata::api::gated_backward(p, args, stream_of(*a));
  });
}

}  // extern "C"
