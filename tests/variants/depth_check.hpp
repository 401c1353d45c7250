// A Depth-Attention stack run through api::DepthStack and checked against the fp64 reference
// (strata/reference/depth.hpp) with FlashAttention's rule (shared by the tests and
// examples/layer_stack). The naive same-dtype stack rounds every tensor a framework would
// materialise (the norm and RoPE outputs, k^, v^, the attention's and the depth mix's gradients).
#pragma once

#include <strata/api/depth_attention.hpp>
#include <strata/reference/depth.hpp>

#include <memory>
#include <string>
#include <vector>

#include "variant_check.hpp"

namespace kernel_test {

struct DepthCase {
  Case attn;  // self-attention: lens_k empty
  int layers = 4, stride = 2, recent_window = 1;
  bool qk_norm_rope = true;
  std::string describe() const {
    return "depth L " + std::to_string(layers) + " stride " + std::to_string(stride) + " recent " +
           std::to_string(recent_window) + (qk_norm_rope ? " qk-norm+rope " : " ") +
           attn.describe();
  }
};

/// The naive same-dtype stack: the reference's steps with every materialised tensor rounded.
template <class T>
struct NaiveDepth {
  std::vector<ref::Tensor> out, lse, dq, dk, dv, dgq, dgk;
  NaiveDepth(const ref::DepthConfig& c, const ref::DepthInputs& in,
             const std::vector<ref::Tensor>& dout) {
    const auto& a = c.attn;
    const int L = c.num_layers, d = a.head_dim, Hkv = a.num_kv_heads, G = a.group_size();
    const int64_t N = a.num_tokens_q();
    const std::vector<double> pos = ref::token_positions(a.cu_seqlens_q);
    const double eps = c.local.norm_eps, theta = c.local.rope_theta;
    auto rnd = [](ref::Tensor t) {
      for (double& x : t.data) x = round_to<T>(x);
      return t;
    };
    const size_t nL = static_cast<size_t>(L);
    std::vector<ref::Tensor> q_rot(nL), k_rot(nL), khat(nL), vhat(nL), alpha(nL);
    out.resize(nL), lse.resize(nL), dq.resize(nL), dk.resize(nL), dv.resize(nL);
    dgq.resize(nL), dgk.resize(nL);
    for (int l = 0; l < L; ++l) {
      const size_t ul = size_t(l);
      ref::Tensor q =
          c.local.qk_norm ? rnd(ref::rmsnorm_rows(in.q[ul], in.gamma_q[ul], eps)) : in.q[ul];
      ref::Tensor k = in.k[ul];
      if (c.local.rope)
        q = rnd(ref::rope_rows(q, pos, theta)), k = rnd(ref::rope_rows(k, pos, theta));
      khat[ul] = c.local.qk_norm ? rnd(ref::rmsnorm_rows(k, in.gamma_k[ul], eps)) : k;
      const auto& src = c.sources[ul];
      const int nc = int(src.size()) + 1;
      const ref::Tensor qbar = ref::depth_group_mean_query(q, Hkv);
      vhat[ul] = ref::Tensor({N, Hkv, d});
      alpha[ul] = ref::Tensor({N, Hkv, nc});
      const size_t unc = static_cast<size_t>(nc);
      std::vector<const double*> kappa(unc), nu(unc);
      for (int64_t t = 0; t < N; ++t)
        for (int g = 0; g < Hkv; ++g) {
          for (int s = 0; s + 1 < nc; ++s)
            kappa[size_t(s)] = khat[size_t(src[size_t(s)])].row(t, g),
            nu[size_t(s)] = vhat[size_t(src[size_t(s)])].row(t, g);
          kappa[size_t(nc - 1)] = khat[ul].row(t, g), nu[size_t(nc - 1)] = in.v[ul].row(t, g);
          ref::depth_softmax_forward(qbar.row(t, g), d, nc, kappa.data(), nu.data(),
                                     alpha[ul].row(t, g), vhat[ul].row(t, g));
        }
      vhat[ul] = rnd(vhat[ul]);
      naive_attention<T>(a, q, khat[ul], vhat[ul], out[ul], lse[ul]);
      q_rot[ul] = q, k_rot[ul] = k;
    }
    std::vector<ref::Tensor> dk_acc, dv_acc;
    for (int l = 0; l < L; ++l)
      dk_acc.push_back(ref::zeros_like(khat[size_t(l)])),
          dv_acc.push_back(ref::zeros_like(khat[size_t(l)]));
    for (int l = L - 1; l >= 0; --l) {
      const size_t ul = size_t(l);
      ref::Tensor dqr, dkh, dvh;
      naive_backward<T>(a, q_rot[ul], khat[ul], vhat[ul], dout[ul], dqr, dkh, dvh);
      ref::add_to(dkh, dk_acc[ul]);
      ref::add_to(dvh, dv_acc[ul]);
      const auto& src = c.sources[ul];
      const int nc = int(src.size()) + 1;
      const ref::Tensor qbar = ref::depth_group_mean_query(q_rot[ul], Hkv);
      dv[ul] = ref::zeros_like(in.v[ul]);
      const size_t unc = static_cast<size_t>(nc), ud = static_cast<size_t>(d);
      std::vector<const double*> kappa(unc), nu(unc);
      std::vector<double*> dkappa(unc), dnu(unc);
      std::vector<double> dqbar(ud);
      for (int64_t t = 0; t < N; ++t)
        for (int g = 0; g < Hkv; ++g) {
          for (int s = 0; s + 1 < nc; ++s) {
            const size_t j = size_t(src[size_t(s)]);
            kappa[size_t(s)] = khat[j].row(t, g), nu[size_t(s)] = vhat[j].row(t, g);
            dkappa[size_t(s)] = dk_acc[j].row(t, g), dnu[size_t(s)] = dv_acc[j].row(t, g);
          }
          kappa[size_t(nc - 1)] = khat[ul].row(t, g), nu[size_t(nc - 1)] = in.v[ul].row(t, g);
          dkappa[size_t(nc - 1)] = dkh.row(t, g), dnu[size_t(nc - 1)] = dv[ul].row(t, g);
          std::fill(dqbar.begin(), dqbar.end(), 0.0);
          ref::depth_softmax_backward(qbar.row(t, g), d, nc, kappa.data(), nu.data(),
                                      alpha[ul].row(t, g), dvh.row(t, g), dqbar.data(),
                                      dkappa.data(), dnu.data());
          for (int i = 0; i < G; ++i)
            for (int e = 0; e < d; ++e) dqr.row(t, g * G + i)[e] += dqbar[size_t(e)] / G;
        }
      dv[ul] = rnd(dv[ul]);
      ref::Tensor dkk = rnd(dkh), dqq = rnd(dqr);
      dgq[ul] = ref::Tensor({d}), dgk[ul] = ref::Tensor({d});
      if (c.local.qk_norm)
        dkk = rnd(ref::rmsnorm_rows_backward(k_rot[ul], in.gamma_k[ul], dkk, eps, dgk[ul]));
      if (c.local.rope)
        dkk = rnd(ref::rope_rows_backward(dkk, pos, theta)),
        dqq = rnd(ref::rope_rows_backward(dqq, pos, theta));
      if (c.local.qk_norm)
        dqq = rnd(ref::rmsnorm_rows_backward(in.q[ul], in.gamma_q[ul], dqq, eps, dgq[ul]));
      dq[ul] = dqq, dk[ul] = dkk;
    }
  }
};

template <class T, int D>
Verdict run_depth(const DepthCase& dc, const ForwardRun<strata::api::DepthStack>& forward = {}) {
  const int L = dc.layers;
  const size_t nL = static_cast<size_t>(L);
  std::vector<std::unique_ptr<Problem<T>>> pr;
  for (int l = 0; l < L; ++l) {
    Case c = dc.attn;
    c.seed = dc.attn.seed * 37 + uint64_t(l);
    pr.push_back(std::make_unique<Problem<T>>(c, D));
  }
  const ref::AttentionConfig& ac = pr[0]->c;
  const int H = ac.num_heads, Hk = ac.num_kv_heads;
  const int64_t nq = pr[0]->nq;
  const size_t nel = size_t(nq * H * D), nkv = size_t(nq * Hk * D);

  ref::DepthConfig rc;
  rc.attn = ac, rc.num_layers = L, rc.stride = dc.stride, rc.recent_window = dc.recent_window;
  rc.sources = ref::depth_sources(L, dc.stride, dc.recent_window);
  rc.local.qk_norm = rc.local.rope = dc.qk_norm_rope;
  ref::DepthInputs in = ref::allocate_inputs(rc);
  Rng rng(dc.attn.seed + 5);
  std::vector<Vec<float>> gq(nL), gk(nL);
  for (int l = 0; l < L; ++l) {
    const size_t ul = size_t(l);
    in.q[ul] = pr[ul]->q, in.k[ul] = pr[ul]->k, in.v[ul] = pr[ul]->v;
    for (int i = 0; dc.qk_norm_rope && i < D; ++i) {
      gq[ul].push_back(float(1.0 + 0.2 * rng.normal()));
      gk[ul].push_back(float(1.0 + 0.2 * rng.normal()));
      in.gamma_q[ul].data[size_t(i)] = gq[ul].back();
      in.gamma_k[ul].data[size_t(i)] = gk[ul].back();
    }
    if (!dc.qk_norm_rope) gq[ul].assign(D, 1.f), gk[ul].assign(D, 1.f);
  }
  std::vector<ref::Tensor> douts;
  for (int l = 0; l < L; ++l) douts.push_back(pr[size_t(l)]->dout);
  const ref::DepthForward f = ref::forward(rc, in);
  const ref::DepthInputs g64 = ref::backward(rc, in, f, douts);
  const NaiveDepth<T> nv(rc, in, douts);

  // kernel buffers: the attention runs on (q_rot, k^, v^) and returns their gradients
  const T nan = core::from_float<T>(NAN);
  std::vector<Vec<T>> q_rot(nL), khat(nL), vhat(nL), dq_rot(nL), dkhat(nL), dvhat(nL), dq(nL),
      dk(nL), dv(nL);
  std::vector<Vec<float>> dkacc(nL), dvacc(nL), dgq(nL), dgk(nL);
  strata::api::DepthStack st;
  st.local.qk_norm = st.local.rope = dc.qk_norm_rope;
  st.local.eps = float(rc.local.norm_eps), st.local.rope_theta = float(rc.local.rope_theta);
  for (int l = 0; l < L; ++l) {
    const size_t ul = size_t(l);
    for (auto* b : {&q_rot[ul], &dq_rot[ul], &dq[ul]}) b->assign(nel + 8, nan);
    for (auto* b : {&khat[ul], &vhat[ul], &dkhat[ul], &dvhat[ul], &dk[ul], &dv[ul]})
      b->assign(nkv + 8, nan);
    dkacc[ul].assign(nkv, NAN), dvacc[ul].assign(nkv, NAN);
    dgq[ul].assign(D, NAN), dgk[ul].assign(D, NAN);
    strata::api::DepthStackLayer y;
    y.attn = pr[ul]->p;
    y.attn.q = y.attn.k = y.attn.v = nullptr;  // the stack's to set: q_rot, khat, vhat
    y.q_rot = q_rot[ul].data(), y.khat = khat[ul].data(), y.vhat = vhat[ul].data();
    y.attn.dq = dq_rot[ul].data(), y.attn.dk = dkhat[ul].data(), y.attn.dv = dvhat[ul].data();
    y.q = pr[ul]->qs.data(), y.k = pr[ul]->ks.data(), y.v = pr[ul]->vs.data();
    y.dq = dq[ul].data(), y.dk = dk[ul].data(), y.dv = dv[ul].data();
    y.gamma_q = gq[ul].data(), y.gamma_k = gk[ul].data();
    y.dgamma_q = dgq[ul].data(), y.dgamma_k = dgk[ul].data();
    y.dkhat_acc = dkacc[ul].data(), y.dvhat_acc = dvacc[ul].data();
    y.sources = rc.sources[ul];
    st.layers.push_back(y);
  }
  st.workspace_bytes = strata::api::workspace_bytes(st);  // 0 without QK-norm
  Vec<float> work(st.workspace_bytes / 4 + 1, NAN);
  st.workspace = work.data();
  Verdict v;
  v.status = forward_or_train(forward, st);
  if (!v.status.empty()) return v;

  const double u = double(core::kUnitRoundoff<T>);
  for (int l = 0; l < L; ++l) {
    const size_t ul = size_t(l);
    const std::string tag = "layer " + std::to_string(l) + " ";
    v.check(tag + "O", values(pr[ul]->o, nel), f.out[ul].data, nv.out[ul].data, 1e-5);
    v.check(tag + "LSE", lse_rows(pr[ul]->lse, nq, H), f.lse[ul].data, nv.lse[ul].data, 1e-5);
    if (forward) continue;
    // through the token-local backward: a second unit roundoff for the intermediate gradients
    // rounded to T (as for Gated Attention's QK-norm)
    const double ug = dc.qk_norm_rope ? 2 * u : u;
    v.check(tag + "dQ", values(dq[ul], nel), g64.q[ul].data, nv.dq[ul].data,
            grad_atol(ug, g64.q[ul].data));
    v.check(tag + "dK", values(dk[ul], nkv), g64.k[ul].data, nv.dk[ul].data,
            grad_atol(ug, g64.k[ul].data));
    v.check(tag + "dV", values(dv[ul], nkv), g64.v[ul].data, nv.dv[ul].data,
            grad_atol(ug, g64.v[ul].data));
    if (dc.qk_norm_rope) {
      v.check(tag + "dgamma_q", std::vector<double>(dgq[ul].begin(), dgq[ul].end()),
              g64.gamma_q[ul].data, nv.dgq[ul].data, grad_atol(u, g64.gamma_q[ul].data));
      v.check(tag + "dgamma_k", std::vector<double>(dgk[ul].begin(), dgk[ul].end()),
              g64.gamma_k[ul].data, nv.dgk[ul].data, grad_atol(u, g64.gamma_k[ul].data));
    }
  }
  return v;
}

}  // namespace kernel_test
