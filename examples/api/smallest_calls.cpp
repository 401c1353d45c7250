// The smallest complete call of every method through strata/api: forward and backward of one
// layer (two for the cross-layer methods), built with the Params builders (api/builders.hpp),
// every workspace sized by api::workspace_bytes, every pass output in a non-const field of its
// layer. Copy one function into a trainer; each is what a newcomer writes, nothing more. The
// lines between "call:" and "end" are the counts of issue 16's closing note.
//
// main() runs each in the CPU SIMT simulator (host buffers; under nvcc they would be device
// buffers), prints its options by api::describe, and checks that every output is finite (the
// methods' numerics are tested against the fp64 reference in tests/variants).
#include <cmath>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include <cuda_bf16.h>
#include <strata/api/builders.hpp>
#include <strata/api/depth_attention.hpp>
#include <strata/api/describe.hpp>
#include <strata/api/exoformer.hpp>
#include <strata/api/flash.hpp>
#include <strata/api/mea.hpp>
#include <strata/api/output_gate.hpp>
#include <strata/api/value_residual.hpp>

namespace {

namespace api = strata::api;
namespace core = strata::core;
using strata::Status;
using bf16 = __nv_bfloat16;

// 2 sequences of 48 tokens, 4 query heads of d = 64, 2 KV heads
constexpr int kB = 2, kT = 48, kH = 4, kHk = 2, kD = 64;
constexpr size_t kQ = size_t(kB) * kT * kH * kD, kK = size_t(kB) * kT * kHk * kD;
constexpr size_t kRows = size_t(kB) * kT * kH;  // lse, dsum

/// Buffers that live as long as the pool: activations (bf16, a smooth pattern; outputs are
/// checked finite afterwards) and fp32 parameters and gradients.
class Pool {
 public:
  bf16* act(size_t n) {
    acts_.emplace_back(n);
    for (size_t i = 0; i < n; ++i)
      acts_.back()[i] = __float2bfloat16(0.5f * std::sin(0.37f * float(i % 1013) + float(n % 7)));
    return acts_.back().data();
  }
  float* f32(size_t n, float value = 0.f) {
    f32s_.emplace_back(n, value);
    return f32s_.back().data();
  }
  void* bytes(size_t n) { return f32((n + 3) / 4); }
  /// Every activation finite (NaN-free) after the calls.
  bool finite() const {
    for (const auto& a : acts_)
      for (bf16 x : a)
        if (!std::isfinite(__bfloat162float(x))) return false;
    return true;
  }

 private:
  std::vector<std::vector<bf16>> acts_;
  std::vector<std::vector<float>> f32s_;
};

/// The attention's Params: its outputs and the backward's buffers; q, k, v given by vanilla,
/// Gated and ResFormer, left null by the stacks whose pass writes them.
api::FlashBwdParams attention(Pool& m, bool qkv) {
  api::FlashBuffers b{.o = m.act(kQ), .lse = m.f32(kRows), .dout = m.act(kQ)};
  b.dq = m.act(kQ), b.dk = m.act(kK), b.dv = m.act(kK), b.dsum = m.f32(kRows);
  if (qkv) b.q = m.act(kQ), b.k = m.act(kK), b.v = m.act(kK);
  return api::contiguous_params(kB, kT, kT, {.h = kH, .h_k = kHk, .d = kD}, b, {.causal = true});
}

Status vanilla(Pool& m, std::string* log) {
  // call:
  const api::FlashBwdParams p = attention(m, true);
  if (Status s = api::flash_fwd(p); !s.ok()) return s;
  if (Status s = api::flash_bwd(p); !s.ok()) return s;
  // end
  *log = api::describe(p);
  return Status::Ok();
}

Status gated(Pool& m, std::string* log) {
  // call:
  const api::FlashBwdParams p = attention(m, true);
  api::GateArgs g{.gate = m.act(kQ), .gate_row_stride = kH * kD, .gate_head_stride = kD};
  g.dgate = m.act(kQ);
  g.workspace_bytes = api::workspace_bytes(p, g);
  g.workspace = m.bytes(g.workspace_bytes);
  if (Status s = api::gated_forward(p, g); !s.ok()) return s;
  if (Status s = api::gated_backward(p, g); !s.ok()) return s;
  // end
  *log = api::describe(g);
  return Status::Ok();
}

/// ResFormer and SVFormer: two layers sharing layer 0's V.
Status value_residual(Pool& m, api::ValueResidualKind kind, std::string* log) {
  // call:
  api::ValueResidualStack st{.kind = kind, .granularity = core::MixGranularity::kHeadwise};
  for (int l = 0; l < 2; ++l) st.layers.push_back({.attn = attention(m, true)});
  st.layers[1].lambda_self = st.layers[1].lambda_first = m.f32(kHk, 0.5f);
  st.layers[1].dlambda_self = m.f32(kHk), st.layers[1].dlambda_first = m.f32(kHk);
  st.dv_first = m.f32(kK);
  st.workspace_bytes = api::workspace_bytes(st);
  st.workspace = static_cast<float*>(m.bytes(st.workspace_bytes));
  if (Status s = st.forward(); !s.ok()) return s;
  if (Status s = st.backward(); !s.ok()) return s;
  // end
  *log = api::describe(st);
  return Status::Ok();
}

/// Depth-Attention: layer 1 reads layer 0's k^, v^ (its source).
Status depth(Pool& m, std::string* log) {
  // call:
  api::DepthStack st;
  for (int l = 0; l < 2; ++l) {
    api::DepthStackLayer y{.attn = attention(m, false)};
    y.q = m.act(kQ), y.k = m.act(kK), y.v = m.act(kK);            // raw projections
    y.q_rot = m.act(kQ), y.khat = m.act(kK), y.vhat = m.act(kK);  // the pass writes them
    y.dq = m.act(kQ), y.dk = m.act(kK), y.dv = m.act(kK);
    y.dkhat_acc = m.f32(kK), y.dvhat_acc = m.f32(kK);  // dk^, dv^ from later layers
    y.sources = api::depth_sources(2, 1, 0)[size_t(l)];
    st.layers.push_back(y);
  }
  if (Status s = st.forward(); !s.ok()) return s;
  if (Status s = st.backward(); !s.ok()) return s;
  // end
  *log = api::describe(st);
  return Status::Ok();
}

/// ExoFormer (static scales), one layer: anchors, the four streams' projections and lambdas.
Status exoformer(Pool& m, std::string* log) {
  // call:
  api::ExoStack st{.options = {.dynamic = false}};
  api::ExoStackLayer y{.attn = attention(m, false)};
  for (size_t p = 0; p < 4; ++p) {  // q, k, v, g
    const int heads = p == 1 || p == 2 ? kHk : kH;
    const size_t n = size_t(kB) * kT * heads * kD;
    st.anchors.anchor[p] = {m.act(n), heads * kD, kD};
    st.anchors.gamma[p] = m.f32(kD, 1.f), st.anchors.dgamma[p] = m.f32(kD);
    st.anchors.danchor[p] = {m.act(n), heads * kD, kD};
    y.mix.p[p] = {m.act(n), heads * kD, kD}, y.mix.dp[p] = {m.act(n), heads * kD, kD};
    y.mix.out[p] = m.act(n);
    y.mix.lambda1[p] = y.mix.lambda2[p] = m.f32(size_t(heads) * kD, 0.5f);
    y.mix.dlambda1[p] = m.f32(size_t(heads) * kD), y.mix.dlambda2[p] = m.f32(size_t(heads) * kD);
  }
  y.mix.gamma_q = y.mix.gamma_k = m.f32(kD, 1.f);
  y.mix.dgamma_q = m.f32(kD), y.mix.dgamma_k = m.f32(kD);
  y.gate = {.gate_row_stride = kH * kD, .gate_head_stride = kD, .dgate = m.act(kQ)};
  y.gate.workspace_bytes = api::workspace_bytes(y.attn, y.gate);
  y.gate.workspace = m.bytes(y.gate.workspace_bytes);
  st.layers.push_back(y);
  st.workspace_bytes = api::workspace_bytes(st);
  st.workspace = static_cast<float*>(m.bytes(st.workspace_bytes));
  if (Status s = st.forward(); !s.ok()) return s;
  if (Status s = st.backward(); !s.ok()) return s;
  // end
  *log = api::describe(st);
  return Status::Ok();
}

/// MEA at the KeyValue site, one layer of 2 component heads composed into the 2 KV heads.
Status mea(Pool& m, std::string* log) {
  // call:
  constexpr int kHc = 2;
  const size_t c = size_t(kB) * kT * kHc * kD, a = size_t(kHc) * kHk, g = size_t(kHk) * kD;
  api::MeaLayerParams y{.attn = attention(m, false), .h_c = kHc};
  y.q_rot = m.act(kQ), y.k_attn = m.act(kK), y.v_attn = m.act(kK);  // the pass writes them
  y.q = m.act(kQ), y.kc = m.act(c), y.vc = m.act(c);
  y.a_k = y.a_v = m.f32(a, 0.5f);
  y.gamma_k = y.gamma_v = m.f32(g, 1.f), y.beta_k = y.beta_v = m.f32(g);
  y.dq = m.act(kQ), y.dkc = m.act(c), y.dvc = m.act(c);
  y.da_k = m.f32(a), y.da_v = m.f32(a);
  y.dgamma_k = m.f32(g), y.dbeta_k = m.f32(g), y.dgamma_v = m.f32(g), y.dbeta_v = m.f32(g);
  api::MeaStack st{.layers = {y}};
  st.workspace_bytes = api::workspace_bytes(st);
  st.workspace = m.bytes(st.workspace_bytes);
  if (Status s = st.forward(); !s.ok()) return s;
  if (Status s = st.backward(); !s.ok()) return s;
  // end
  *log = api::describe(st);
  return Status::Ok();
}

}  // namespace

int main() {
  struct Method {
    const char* name;
    Status (*run)(Pool&, std::string*);
  };
  const Method methods[] = {
      {"vanilla", vanilla},
      {"Gated Attention", gated},
      {"ResFormer",
       [](Pool& m, std::string* log) {
         return value_residual(m, api::ValueResidualKind::kResFormer, log);
       }},
      {"SVFormer",
       [](Pool& m, std::string* log) {
         return value_residual(m, api::ValueResidualKind::kSVFormer, log);
       }},
      {"Depth-Attention", depth},
      {"ExoFormer", exoformer},
      {"MEA", mea},
  };
  int failed = 0;
  for (const Method& x : methods) {
    Pool m;
    std::string log;
    const Status s = x.run(m, &log);
    const bool ok = s.ok() && m.finite();
    failed += !ok;
    std::printf("%-16s %s  %s\n", x.name, ok ? "ok  " : "FAIL",
                s.ok() ? (ok ? log.c_str() : "non-finite output") : s.message());
  }
  std::printf(failed ? "%d method(s) failed\n" : "every method ran\n", failed);
  return failed ? 1 : 0;
}
