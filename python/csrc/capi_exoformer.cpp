// The C ABI of ExoFormer (SPEC §3, §7.4): one layer of api::ExoStack, the token-local mix pass
// and Gated Attention. A one-layer stack finalizes its own anchor gradients (the anchor RMSNorm's
// backward is linear in dA^, so a stack that sums the layers' danchor gets the same result as
// Strata's fp32 accumulator, rounded once per layer).
#include <strata/api/exoformer.hpp>

#include <string>

#include "capi_common.hpp"

using namespace strata_capi;
using strata::api::ExoRows;
using strata::api::ExoRowsOut;

namespace {

const char* const kStream[4] = {"q", "k", "v", "g"};

std::string named(const char* field, int p) {
  return std::string(field) + "_" + kStream[p];
}

Status rows(const StrataTensor& t, const std::string& name, bool varlen, const StrataTensor& like,
            const char* like_name, int32_t dtype, Rows* r) {
  if (Status s = rows_of(t, name.c_str(), varlen, true, r); !s.ok()) return s;
  if (Status s = check_dtype(t, name.c_str(), dtype); !s.ok()) return s;
  return same_shape(t, name.c_str(), like, like_name);
}

/// The one-layer ExoStack of (a, g, x); the attention's and gate's fields are converted by the
/// caller (`attn`, `gate`; `g_out` is g~, the gate logits the mix writes).
Status exo_stack(const StrataAttention& a, const StrataExo& x, const FlashBwdParams& attn,
                 const strata::api::GateArgs& gate, void* g_out, bool backward,
                 strata::api::ExoStack* st) {
  using strata::core::MixGranularity;
  const bool varlen = given(a.cu_seqlens_q);
  st->layers.assign(1, {});
  strata::api::ExoStackLayer& y = st->layers[0];
  y.attn = attn, y.gate = gate;
  y.mix.out = {a.q.data, a.k.data, a.v.data, g_out};  // q~, k~, v~, g~: the mix writes them
  strata::api::ExoOptions& o = st->options;
  o.dynamic = given(x.s), o.rope = x.rope != 0;
  o.rope_theta = x.rope_theta, o.norm_eps = x.norm_eps, o.anchor_eps = x.anchor_eps;
  const int d = attn.d;
  for (int p = 0; p < 4; ++p) {
    const StrataExoStream& S = x.stream[p];
    const bool kv = p == 1 || p == 2;
    const StrataTensor& like = kv ? a.k : a.q;
    const char* like_name = kv ? "k" : "q";
    const int heads = kv ? attn.h_k : attn.h;
    Rows r;
    if (Status s = rows(S.p, named("p", p), varlen, like, like_name, a.q.dtype, &r); !s.ok())
      return s;
    y.mix.p[p] = ExoRows{S.p.data, r.row_stride, r.head_stride};
    if (Status s = rows(S.anchor, named("anchor", p), varlen, like, like_name, a.q.dtype, &r);
        !s.ok())
      return s;
    st->anchors.anchor[p] = ExoRows{S.anchor.data, r.row_stride, r.head_stride};
    if (Status s = check_f32_block(S.gamma_anchor, named("gamma_anchor", p).c_str(), d); !s.ok())
      return s;
    st->anchors.gamma[p] = static_cast<const float*>(S.gamma_anchor.data);
    if (Status s =
            lambda_granularity(S.lambda1, named("lambda1", p), heads, d, p == 0, &o.granularity);
        !s.ok())
      return s;
    if (Status s =
            lambda_granularity(S.lambda2, named("lambda2", p), heads, d, false, &o.granularity);
        !s.ok())
      return s;
    y.mix.lambda1[p] = static_cast<const float*>(S.lambda1.data);
    y.mix.lambda2[p] = static_cast<const float*>(S.lambda2.data);
    if (!backward) continue;
    if (Status s = rows(S.dp, named("dp", p), varlen, like, like_name, a.q.dtype, &r); !s.ok())
      return s;
    y.mix.dp[p] = ExoRowsOut{S.dp.data, r.row_stride, r.head_stride};
    if (Status s = rows(S.danchor, named("danchor", p), varlen, like, like_name, a.q.dtype, &r);
        !s.ok())
      return s;
    st->anchors.danchor[p] = ExoRowsOut{S.danchor.data, r.row_stride, r.head_stride};
    if (Status s = check_f32_block(S.dgamma_anchor, named("dgamma_anchor", p).c_str(), d); !s.ok())
      return s;
    st->anchors.dgamma[p] = static_cast<float*>(S.dgamma_anchor.data);
    const int64_t n = numel(S.lambda1);
    if (Status s = check_f32_block(S.dlambda1, named("dlambda1", p).c_str(), n); !s.ok()) return s;
    if (Status s = check_f32_block(S.dlambda2, named("dlambda2", p).c_str(), n); !s.ok()) return s;
    y.mix.dlambda1[p] = static_cast<float*>(S.dlambda1.data);
    y.mix.dlambda2[p] = static_cast<float*>(S.dlambda2.data);
  }
  if (Status s = check_f32_block(x.gamma_q, "gamma_q", d); !s.ok()) return s;
  if (Status s = check_f32_block(x.gamma_k, "gamma_k", d); !s.ok()) return s;
  y.mix.gamma_q = static_cast<const float*>(x.gamma_q.data);
  y.mix.gamma_k = static_cast<const float*>(x.gamma_k.data);
  if (o.dynamic) {
    if (x.s.ndim < 2 || x.s.shape[x.s.ndim - 1] != 8)
      return invalid(
          "s: expected fp32 [batch, seqlen, 8] or [total_tokens, 8] (q1 q2 k1 k2 v1 "
          "v2 g1 g2), got " +
          shape_str(x.s));
    if (Status s = check_f32_block(x.s, "s", int64_t(attn.total_q) * 8); !s.ok()) return s;
    y.mix.s = static_cast<const float*>(x.s.data);
  }
  if (!backward) return Status::Ok();
  if (Status s = check_f32_block(x.dgamma_q, "dgamma_q", d); !s.ok()) return s;
  if (Status s = check_f32_block(x.dgamma_k, "dgamma_k", d); !s.ok()) return s;
  y.mix.dgamma_q = static_cast<float*>(x.dgamma_q.data);
  y.mix.dgamma_k = static_cast<float*>(x.dgamma_k.data);
  if (o.dynamic) {
    if (Status s = check_f32_block(x.ds, "ds", int64_t(attn.total_q) * 8); !s.ok()) return s;
    y.mix.ds = static_cast<float*>(x.ds.data);
  }
  return Status::Ok();
}

/// The gate of the layer: g~, elementwise like q (written by the forward).
Status exo_gate(const StrataAttention& a, const StrataGate& g, bool backward,
                strata::api::GateArgs* out) {
  *out = strata::api::GateArgs{};
  const bool varlen = given(a.cu_seqlens_q);
  Rows r;
  if (Status s = rows(g.gate, "gate", varlen, a.q, "q", a.q.dtype, &r); !s.ok()) return s;
  out->gate = g.gate.data, out->gate_row_stride = r.row_stride,
  out->gate_head_stride = r.head_stride;
  out->kind = strata::core::GateKind::kElementwise;
  if (!backward) return Status::Ok();
  Rows dr;
  if (Status s = rows(g.dgate, "dgate", varlen, a.q, "q", a.q.dtype, &dr); !s.ok()) return s;
  if (dr.row_stride != r.row_stride || dr.head_stride != r.head_stride)
    return invalid("dgate: strides must equal gate's");
  out->dgate = g.dgate.data;
  return Status::Ok();
}

/// Everything of one call: the attention, the gate, the stack and (backward) the workspace split.
Status exo_problem(const StrataAttention& a, const StrataGate& g, const StrataExo& x, bool backward,
                   bool need_workspace, strata::api::ExoStack* st, int64_t* bytes) {
  FlashBwdParams attn;
  int64_t offset = 0;
  if (Status s = attention_params(a, backward, &attn, &offset, need_workspace); !s.ok()) return s;
  strata::api::GateArgs gate;
  if (Status s = exo_gate(a, g, backward, &gate); !s.ok()) return s;
  if (Status s = exo_stack(a, x, attn, gate, g.gate.data, backward, st); !s.ok()) return s;
  if (!backward) return Status::Ok();
  const int64_t gated = int64_t(strata::api::workspace_bytes(attn, gate));
  const int64_t mix = int64_t(strata::api::workspace_bytes(*st));
  const int64_t mix_offset = round16(offset + gated);
  if (bytes) *bytes = empty_problem(attn) ? 0 : mix_offset + mix;
  if (!need_workspace || empty_problem(attn)) return Status::Ok();
  void* ws = nullptr;
  if (Status s = variant_workspace(a, offset, gated, &ws); !s.ok()) return s;
  st->layers[0].gate.workspace = ws, st->layers[0].gate.workspace_bytes = size_t(gated);
  if (Status s = variant_workspace(a, mix_offset, mix, &ws); !s.ok()) return s;
  st->workspace = static_cast<float*>(ws), st->workspace_bytes = size_t(mix);
  return Status::Ok();
}

}  // namespace

extern "C" {

int strata_exoformer_fwd(const StrataAttention* a, const StrataGate* g, const StrataExo* x) {
  return guarded([&]() -> Status {
    strata::api::ExoStack st;
    if (Status s = exo_problem(*a, *g, *x, false, false, &st, nullptr); !s.ok()) return s;
    if (empty_problem(st.layers[0].attn)) return Status::Ok();
    return st.forward(stream_of(*a));
  });
}

int strata_exoformer_bwd_workspace_bytes(const StrataAttention* a, const StrataGate* g,
                                         const StrataExo* x, int64_t* bytes) {
  return guarded([&]() -> Status {
    strata::api::ExoStack st;
    return exo_problem(*a, *g, *x, true, false, &st, bytes);
  });
}

int strata_exoformer_bwd(const StrataAttention* a, const StrataGate* g, const StrataExo* x) {
  return guarded([&]() -> Status {
    strata::api::ExoStack st;
    if (Status s = exo_problem(*a, *g, *x, true, true, &st, nullptr); !s.ok()) return s;
    return st.backward(stream_of(*a));
  });
}

}  // extern "C"
