// Gated Attention layers run through api::gated_forward / gated_backward and checked against the
// fp64 reference with FlashAttention's rule (shared by the tests and examples/layer_stack).
#pragma once

#include <strata/api/output_gate.hpp>
#include <strata/api/qk_norm_rope.hpp>
#include <strata/reference/gated.hpp>

#include <string>
#include <vector>

#include "variant_check.hpp"

namespace kernel_test {

using strata::core::GateKind;

struct GateCase {
  Case attn;  // self-attention: lens_k empty
  int layers = 4;
  GateKind kind = GateKind::kElementwise;
  double gate_spread = 2.0;   // gate logits ~ N(0, spread): some gates nearly closed
  bool qk_norm_rope = false;  // Qwen3's QK-norm and RoPE before attention (the token-local pass)
  std::string describe() const {
    return std::string(kind == GateKind::kHeadwise ? "headwise" : "elementwise") +
           (qk_norm_rope ? " qk-norm+rope" : "") + " L " + std::to_string(layers) + " " +
           attn.describe();
  }
};

template <class T, int D>
Verdict run_gated(const GateCase& gc,
                  const ForwardRun<att::FlashFwdParams, strata::api::GateArgs>& forward = {}) {
  const int L = gc.layers;
  const bool headwise = gc.kind == GateKind::kHeadwise;
  Verdict v;
  for (int l = 0; l < L; ++l) {
    Case c = gc.attn;
    c.seed = gc.attn.seed * 71 + uint64_t(l);
    Problem<T> pr(c, D);
    const ref::AttentionConfig& ac = pr.c;
    const int H = ac.num_heads;
    const int64_t nq = pr.nq;
    const size_t nrow = size_t(nq * H), nel = nrow * D, ng = headwise ? nrow : nel;

    // gate logits as stored in T
    Rng rng(c.seed + 99);
    Vec<T> gs(ng), dgs(ng + 8, core::from_float<T>(NAN));
    Vec<T> work(nel + 8, core::from_float<T>(NAN));
    ref::GatedConfig rc;
    rc.attn = ac, rc.num_layers = 1;
    rc.gate = headwise ? ref::GateKind::Headwise : ref::GateKind::Elementwise;
    const bool qk = gc.qk_norm_rope;
    rc.local.qk_norm = rc.local.rope = qk;
    ref::GatedInputs in = ref::allocate_inputs(rc);
    in.q[0] = pr.q, in.k[0] = pr.k, in.v[0] = pr.v;
    Vec<float> gamma_q(D), gamma_k(D);
    for (int i = 0; qk && i < D; ++i) {
      gamma_q[size_t(i)] = float(1.0 + 0.2 * rng.normal());
      gamma_k[size_t(i)] = float(1.0 + 0.2 * rng.normal());
      in.gamma_q[0].data[size_t(i)] = gamma_q[size_t(i)];
      in.gamma_k[0].data[size_t(i)] = gamma_k[size_t(i)];
    }
    for (size_t i = 0; i < ng; ++i) {
      gs[i] = core::from_float<T>(float(gc.gate_spread * rng.normal()));
      in.g[0].data[i] = core::to_float(gs[i]);
    }
    const ref::GatedForward f = ref::forward(rc, in);
    const ref::GatedInputs g64 = ref::backward(rc, in, f, {pr.dout});

    // naive same-dtype: RMSNorm and RoPE each rounded, Y and y' rounded, dO = dy' sigma(g)
    // rounded, unfused backward in T
    const std::vector<double> pos = ref::token_positions(ac.cu_seqlens_q);
    const double eps = rc.local.norm_eps, theta = rc.local.rope_theta;
    auto rounded = [](ref::Tensor t) {
      for (double& x : t.data) x = round_to<T>(x);
      return t;
    };
    ref::Tensor qn = pr.q, kn = pr.k;
    if (qk) {
      qn =
          rounded(ref::rope_rows(rounded(ref::rmsnorm_rows(pr.q, in.gamma_q[0], eps)), pos, theta));
      kn =
          rounded(ref::rope_rows(rounded(ref::rmsnorm_rows(pr.k, in.gamma_k[0], eps)), pos, theta));
    }
    ref::Tensor yn, lsen, dqn, dkn, dvn;
    naive_attention<T>(ac, qn, kn, pr.v, yn, lsen);
    ref::Tensor yg = yn, dOn = pr.dout;
    std::vector<double> dgn(ng, 0.0);
    for (size_t e = 0; e < nel; ++e) {
      const size_t gi = headwise ? e / D : e;
      const double sg = 1.0 / (1.0 + std::exp(-in.g[0].data[gi]));
      yg.data[e] = round_to<T>(yn.data[e] * sg);
      dOn.data[e] = round_to<T>(pr.dout.data[e] * sg);
      dgn[gi] += pr.dout.data[e] * yn.data[e] * sg * (1 - sg);
    }
    for (double& x : dgn) x = round_to<T>(x);
    naive_backward<T>(ac, qn, kn, pr.v, dOn, dqn, dkn, dvn);
    ref::Tensor dgqn({D}), dgkn({D});
    if (qk) {
      dqn = rounded(ref::rmsnorm_rows_backward(
          pr.q, in.gamma_q[0], rounded(ref::rope_rows_backward(dqn, pos, theta)), eps, dgqn));
      dkn = rounded(ref::rmsnorm_rows_backward(
          pr.k, in.gamma_k[0], rounded(ref::rope_rows_backward(dkn, pos, theta)), eps, dgkn));
    }

    strata::api::GateArgs ga;
    ga.gate = gs.data(), ga.kind = gc.kind;
    ga.gate_row_stride = headwise ? H : int64_t(H) * D;
    ga.gate_head_stride = headwise ? 1 : D;
    ga.dgate = dgs.data(), ga.workspace = work.data();
    ga.workspace_bytes = work.size() * sizeof(T);

    // with QK-norm + RoPE: the pass writes q_rot / k_rot, which the attention reads; the
    // attention's dq / dk go to dq_rot / dk_rot, which the pass's backward turns into dq / dk
    const size_t nkv = size_t(pr.nk * ac.num_kv_heads * D);
    const T nan = core::from_float<T>(NAN);
    Vec<T> q_rot(nel + 8, nan), k_rot(nkv + 8, nan), dq_rot(nel + 8, nan), dk_rot(nkv + 8, nan);
    Vec<float> dgamma_q(D, NAN), dgamma_k(D, NAN), qk_work;
    strata::api::QkNormRopeParams qp;
    att::FlashBwdParams ap = pr.p;
    if (qk) {
      qp.dtype = pr.p.dtype, qp.d = D;
      qp.options.qk_norm = true;  // Qwen3's QK-norm (off unless asked), and RoPE (on)
      auto side = [&](strata::api::QkRows& s, const void* x, void* y, const void* dy, void* dx,
                      int heads, int total, const Vec<int>& cu, const float* gamma, float* dgamma) {
        s.x = x, s.y = y, s.dy = dy, s.dx = dx;
        s.x_row_stride = s.y_row_stride = s.dy_row_stride = s.dx_row_stride = int64_t(heads) * D;
        s.x_head_stride = s.y_head_stride = s.dy_head_stride = s.dx_head_stride = D;
        s.heads = heads, s.total = total, s.b = int(cu.size()) - 1;
        s.cu_seqlens = cu.data(), s.gamma = gamma, s.dgamma = dgamma;
      };
      side(qp.q, pr.qs.data(), q_rot.data(), dq_rot.data(), pr.dq.data(), H, int(nq), pr.cuq,
           gamma_q.data(), dgamma_q.data());
      side(qp.k, pr.ks.data(), k_rot.data(), dk_rot.data(), pr.dk.data(), ac.num_kv_heads,
           int(pr.nk), pr.cuk, gamma_k.data(), dgamma_k.data());
      qk_work.assign(strata::api::workspace_bytes(qp) / 4 + 1, NAN);
      qp.workspace = qk_work.data(), qp.workspace_bytes = qk_work.size() * sizeof(float);
      ap.q = q_rot.data(), ap.k = k_rot.data(), ap.dq = dq_rot.data(), ap.dk = dk_rot.data();
      if (const auto s = strata::api::qk_norm_rope_forward(qp); !s.ok())
        v.status = std::string("qk forward: ") + s.message();
    }
    if (forward) {  // the caller's forward reads q and k as the attention does
      if (qk) v.status = "a forward run takes the attention's q and k: qk_norm_rope = false";
      if (v.status.empty()) v.status = forward(ap, ga);
    } else {
      if (const auto s = strata::api::gated_forward(ap, ga); v.status.empty() && !s.ok())
        v.status = std::string("forward: ") + s.message();
      if (const auto s = strata::api::gated_backward(ap, ga); v.status.empty() && !s.ok())
        v.status = std::string("backward: ") + s.message();
    }
    if (qk && !forward)
      if (const auto s = strata::api::qk_norm_rope_backward(qp); v.status.empty() && !s.ok())
        v.status = std::string("qk backward: ") + s.message();
    if (v.status.empty()) v.status = sync_device();
    if (!v.status.empty()) return v;

    const double u = double(core::kUnitRoundoff<T>);
    const std::string tag = "layer " + std::to_string(l) + " ";
    v.check(tag + "y'", values(pr.o, nel), f.out[0].data, yg.data, 1e-5);
    v.check(tag + "LSE", lse_rows(pr.lse, nq, H), f.lse[0].data, lsen.data, 1e-5);
    if (forward) continue;
    // dQ and dK through the QK-norm + RoPE backward: the pass reads the attention's dq / dk
    // rounded to T and multiplies that rounding by the norm's Jacobian (r gamma, about 1), so
    // atol gets a second unit roundoff (measured without it: 1.02 of the bound in one case)
    const double uq = qk ? 2 * u : u;
    v.check(tag + "dQ", values(pr.dq, nel), g64.q[0].data, dqn.data, grad_atol(uq, g64.q[0].data));
    v.check(tag + "dK", values(pr.dk, nkv), g64.k[0].data, dkn.data, grad_atol(uq, g64.k[0].data));
    v.check(tag + "dV", values(pr.dv, nkv), g64.v[0].data, dvn.data, grad_atol(u, g64.v[0].data));
    v.check(tag + "dg", values(dgs, ng), g64.g[0].data, dgn, grad_atol(u, g64.g[0].data));
    if (qk) {
      // dgamma sums over every row: atol is one unit roundoff at its scale
      v.check(tag + "dgamma_q", std::vector<double>(dgamma_q.begin(), dgamma_q.end()),
              g64.gamma_q[0].data, dgqn.data, grad_atol(u, g64.gamma_q[0].data));
      v.check(tag + "dgamma_k", std::vector<double>(dgamma_k.begin(), dgamma_k.end()),
              g64.gamma_k[0].data, dgkn.data, grad_atol(u, g64.gamma_k[0].data));
    }
  }
  return v;
}

}  // namespace kernel_test
