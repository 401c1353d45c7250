// An MEA stack run through api::MeaStack at either GroupNorm site and checked against the fp64
// reference (strata/reference/mea.hpp) with FlashAttention's rule on every output and gradient.
// The naive same-dtype stack rounds every tensor a framework would materialise: the composed K',
// V' (and at the Output site RoPE(K_c)), the GroupNorm and RoPE outputs, the attention's
// gradients and every gradient of the token-local backward (the parameter gradients are fp32
// sums of rounded operands). A second, tighter check isolates the pass: its outputs against the
// fp64 pass applied to the attention's outputs exactly as the kernels stored them.
#pragma once

#include <strata/api/mea.hpp>
#include <strata/reference/mea.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <string>
#include <type_traits>
#include <vector>

#include "variant_check.hpp"

namespace kernel_test {

struct MeaCase {
  Case attn;  // self-attention: lens_k empty; attn.h_k = H_kv (composite heads)
  int layers = 4;
  int h_c = 1;  // component heads (H_c < H_kv: virtual heads)
  bool rope = true;
  bool output_site = false;  // GroupNorm on the attention output instead of K', V'
  std::string describe() const {
    return std::string("mea ") + (output_site ? "output" : "kv") + " L " + std::to_string(layers) +
           " H_c " + std::to_string(h_c) + (rope ? " rope " : " ") + attn.describe();
  }
};

/// The naive same-dtype stack: the reference's steps with every materialised tensor rounded.
template <class T>
struct NaiveMea {
  std::vector<ref::Tensor> out, lse, attn_out, dq, dkc, dvc, dak, dav, dg1, db1, dg2, db2;
  NaiveMea(const ref::MeaConfig& c, const ref::MeaInputs& in,
           const std::vector<ref::Tensor>& dout) {
    const auto& a = c.attn;
    const size_t nL = static_cast<size_t>(c.num_layers);
    const std::vector<double> pos = ref::token_positions(a.cu_seqlens_q);
    const double eps = c.gn_eps, theta = c.rope_theta;
    const bool kv = c.site == ref::MeaSite::KeyValue;
    auto rnd = [](ref::Tensor t) {
      for (double& x : t.data) x = round_to<T>(x);
      return t;
    };
    auto rope = [&](const ref::Tensor& x) {
      return c.rope ? rnd(ref::rope_rows(x, pos, theta)) : x;
    };
    auto rope_back = [&](const ref::Tensor& x) {
      return c.rope ? rnd(ref::rope_rows_backward(x, pos, theta)) : x;
    };
    for (auto* v : {&out, &lse, &attn_out, &dq, &dkc, &dvc, &dak, &dav, &dg1, &db1, &dg2, &db2})
      v->resize(nL);
    for (size_t l = 0; l < nL; ++l) {
      const ref::Tensor q = rope(in.q[l]);
      if (kv) {
        const ref::Tensor kmix = rnd(ref::hlc_forward(in.kc[l], in.a_k[l]));
        const ref::Tensor vmix = rnd(ref::hlc_forward(in.vc[l], in.a_v[l]));
        const ref::Tensor k =
            rope(rnd(ref::group_norm_rows(kmix, in.gn_gamma_k[l], in.gn_beta_k[l], eps)));
        const ref::Tensor v =
            rnd(ref::group_norm_rows(vmix, in.gn_gamma_v[l], in.gn_beta_v[l], eps));
        naive_attention<T>(a, q, k, v, out[l], lse[l]);
        attn_out[l] = out[l];
        ref::Tensor dqr, dk, dv;
        naive_backward<T>(a, q, k, v, dout[l], dqr, dk, dv);
        dq[l] = rope_back(dqr), dk = rope_back(dk);
        dg1[l] = ref::zeros_like(in.gn_gamma_k[l]), db1[l] = ref::zeros_like(in.gn_beta_k[l]);
        dg2[l] = ref::zeros_like(in.gn_gamma_v[l]), db2[l] = ref::zeros_like(in.gn_beta_v[l]);
        dk = rnd(ref::group_norm_rows_backward(kmix, in.gn_gamma_k[l], dk, eps, dg1[l], db1[l]));
        dv = rnd(ref::group_norm_rows_backward(vmix, in.gn_gamma_v[l], dv, eps, dg2[l], db2[l]));
        ref::hlc_backward(in.kc[l], in.a_k[l], dk, dkc[l], dak[l]);
        ref::hlc_backward(in.vc[l], in.a_v[l], dv, dvc[l], dav[l]);
        dkc[l] = rnd(dkc[l]), dvc[l] = rnd(dvc[l]);
      } else {  // RoPE on the cached component heads, HLC, attention, GroupNorm on O
        const ref::Tensor kc_rot = rope(in.kc[l]);
        const ref::Tensor k = rnd(ref::hlc_forward(kc_rot, in.a_k[l]));
        const ref::Tensor v = rnd(ref::hlc_forward(in.vc[l], in.a_v[l]));
        naive_attention<T>(a, q, k, v, attn_out[l], lse[l]);
        out[l] = rnd(ref::group_norm_rows(attn_out[l], in.gn_gamma_o[l], in.gn_beta_o[l], eps));
        dg1[l] = ref::zeros_like(in.gn_gamma_o[l]), db1[l] = ref::zeros_like(in.gn_beta_o[l]);
        const ref::Tensor dO = rnd(ref::group_norm_rows_backward(attn_out[l], in.gn_gamma_o[l],
                                                                 dout[l], eps, dg1[l], db1[l]));
        ref::Tensor dqr, dk, dv, dkc_rot;
        naive_backward<T>(a, q, k, v, dO, dqr, dk, dv);
        dq[l] = rope_back(dqr);
        ref::hlc_backward(kc_rot, in.a_k[l], dk, dkc_rot, dak[l]);
        dkc[l] = rope_back(rnd(dkc_rot));
        ref::hlc_backward(in.vc[l], in.a_v[l], dv, dvc[l], dav[l]);
        dvc[l] = rnd(dvc[l]);
      }
    }
  }
};

template <class V>
std::vector<double> doubles(const V& x) {
  return std::vector<double>(x.begin(), x.end());
}

/// A [n, heads, d] tensor of the values stored in a kernel buffer.
template <class T>
ref::Tensor tensor_of(const Vec<T>& x, int64_t n, int heads, int d) {
  ref::Tensor t({n, heads, d});
  for (size_t i = 0; i < t.data.size(); ++i) t.data[i] = double(core::to_float(x[i]));
  return t;
}

// The pass alone in fp64, and the scale of each parameter gradient: the root-sum-square over
// tokens of its per-token terms (max over elements). These gradients are sums over tokens that
// cancel (without RoPE, dbeta_k is exactly 0: the keys' gradients of a softmax row sum to zero),
// so max|ref| is not their scale; the rounding noise of the per-token terms adds up to about u
// times this. A token's term of dA is itself a dot product over d that cancels
// (sum_c A[c,h] dA[c,h] = 0: K'[h] . dK'[h] = 0 for a GroupNorm input), so its magnitude is the
// sum of |products|.

/// GroupNorm backward of every row of x with dL/dy = dy: dx, dgamma, dbeta and their scales.
struct GnRef {
  ref::Tensor dx, dgamma, dbeta;
  double s_dgamma = 0, s_dbeta = 0;
};
inline GnRef gn_backward_ref(const ref::Tensor& x, const ref::Tensor& gamma, const ref::Tensor& dy,
                             double eps) {
  const int64_t N = x.dim(0), H = x.dim(1), d = x.dim(2);
  GnRef r;
  r.dgamma = ref::zeros_like(gamma), r.dbeta = ref::zeros_like(gamma), r.dx = ref::zeros_like(x);
  const size_t ud = static_cast<size_t>(d), uhd = static_cast<size_t>(H * d);
  std::vector<double> dg_row(ud), db_row(ud), ss_g(uhd, 0.0), ss_b(uhd, 0.0);
  for (int64_t t = 0; t < N; ++t)
    for (int64_t h = 0; h < H; ++h) {
      std::fill(dg_row.begin(), dg_row.end(), 0.0);
      std::fill(db_row.begin(), db_row.end(), 0.0);
      const size_t o = static_cast<size_t>(h * d);
      ref::group_norm_backward(x.row(t, h), &gamma.data[o], dy.row(t, h), int(d), eps,
                               r.dx.row(t, h), dg_row.data(), db_row.data());
      for (size_t i = 0; i < ud; ++i) {
        r.dgamma.data[o + i] += dg_row[i], r.dbeta.data[o + i] += db_row[i];
        ss_g[o + i] += dg_row[i] * dg_row[i], ss_b[o + i] += db_row[i] * db_row[i];
      }
    }
  for (double v : ss_g) r.s_dgamma = std::max(r.s_dgamma, std::sqrt(v));
  for (double v : ss_b) r.s_dbeta = std::max(r.s_dbeta, std::sqrt(v));
  return r;
}

/// HLC backward with the scale of dA.
struct HlcRef {
  ref::Tensor dxc, dA;
  double s_dA = 0;
};
inline HlcRef hlc_backward_ref(const ref::Tensor& xc, const ref::Tensor& A, const ref::Tensor& dx) {
  const int64_t N = dx.dim(0), H = dx.dim(1), d = dx.dim(2), Hc = xc.dim(1);
  HlcRef r;
  ref::hlc_backward(xc, A, dx, r.dxc, r.dA);
  std::vector<double> ss(static_cast<size_t>(Hc * H), 0.0);
  for (int64_t t = 0; t < N; ++t)
    for (int64_t c = 0; c < Hc; ++c)
      for (int64_t h = 0; h < H; ++h) {
        double dot = 0;
        for (int64_t i = 0; i < d; ++i) dot += std::fabs(xc.row(t, c)[i] * dx.row(t, h)[i]);
        ss[static_cast<size_t>(c * H + h)] += dot * dot;
      }
  for (double v : ss) r.s_dA = std::max(r.s_dA, std::sqrt(v));
  return r;
}

/// Worst ratio per tensor family over every run of the process (printed by the tests at exit).
inline std::map<std::string, double>& mea_family_worst() {
  static std::map<std::string, double> m;
  return m;
}

/// Everything a run returns besides the verdict (for the determinism check).
struct MeaRun {
  Verdict verdict;
  std::vector<float> param_grads;  // every layer's dA^K, dA^V, dgamma, dbeta, concatenated
};

/// With `forward`, the stack is run by it (the decode tests) in place of MeaStack's forward and
/// backward, and only the layers' outputs and LSE are checked: O at the KeyValue site, `out` =
/// GN_o(O) at the Output site.
template <class T, int D>
MeaRun run_mea_full(const MeaCase& mc, const ForwardRun<strata::api::MeaStack>& forward = {}) {
  const int L = mc.layers, Hc = mc.h_c;
  const bool kv = !mc.output_site;
  const size_t nL = static_cast<size_t>(L);
  std::vector<std::unique_ptr<Problem<T>>> pr;
  for (int l = 0; l < L; ++l) {
    Case c = mc.attn;
    c.seed = mc.attn.seed * 41 + uint64_t(l);
    pr.push_back(std::make_unique<Problem<T>>(c, D));
  }
  const ref::AttentionConfig& ac = pr[0]->c;
  const int H = ac.num_heads, Hk = ac.num_kv_heads;
  const int64_t nq = pr[0]->nq;
  const size_t nel = size_t(nq * H * D), nkv = size_t(nq * Hk * D), nc = size_t(nq * Hc * D);
  const size_t na = size_t(Hc * Hk), ng = size_t((kv ? Hk : H) * D);

  ref::MeaConfig rc;
  rc.attn = ac, rc.num_layers = L, rc.num_component_heads = Hc, rc.rope = mc.rope;
  rc.site = kv ? ref::MeaSite::KeyValue : ref::MeaSite::Output;
  ref::MeaInputs in = ref::allocate_inputs(rc);
  Rng rng(mc.attn.seed + 11);
  // component heads in T, parameters in fp32 (their exact values are what the reference sees)
  std::vector<Vec<T>> kcs(nL), vcs(nL);
  std::vector<Vec<float>> ak(nL), av(nL), g1(nL), b1(nL), g2(nL), b2(nL);
  for (size_t l = 0; l < nL; ++l) {
    in.q[l] = pr[l]->q;
    random_tensor(rng, nq, Hc, D, 1.0, in.kc[l], kcs[l]);
    random_tensor(rng, nq, Hc, D, 1.0, in.vc[l], vcs[l]);
    auto param = [&](ref::Tensor& t, Vec<float>& f, auto init) {
      f.resize(t.data.size());
      for (size_t i = 0; i < f.size(); ++i) t.data[i] = f[i] = init(i);
    };
    // A: the documented tiled-identity init plus a perturbation, so every head mixes
    auto mix = [&](size_t i) {
      const int c = int(i) / Hk, h = int(i) % Hk;
      return float(strata::core::head_compose_init(Hc, c, h) + 0.3 * rng.normal());
    };
    auto gain = [&](size_t) { return float(1.0 + 0.2 * rng.normal()); };
    auto bias = [&](size_t) { return float(0.2 * rng.normal()); };
    param(in.a_k[l], ak[l], mix);
    param(in.a_v[l], av[l], mix);
    if (kv) {
      param(in.gn_gamma_k[l], g1[l], gain), param(in.gn_beta_k[l], b1[l], bias);
      param(in.gn_gamma_v[l], g2[l], gain), param(in.gn_beta_v[l], b2[l], bias);
    } else {
      param(in.gn_gamma_o[l], g1[l], gain), param(in.gn_beta_o[l], b1[l], bias);
    }
  }
  std::vector<ref::Tensor> douts;
  for (size_t l = 0; l < nL; ++l) douts.push_back(pr[l]->dout);
  const ref::MeaForward f = ref::forward(rc, in);
  const ref::MeaInputs g64 = ref::backward(rc, in, f, douts);
  const NaiveMea<T> nv(rc, in, douts);

  const T nan = core::from_float<T>(NAN);
  std::vector<Vec<T>> q_rot(nL), k_attn(nL), v_attn(nL), dq_rot(nL), dk_attn(nL), dv_attn(nL),
      dq(nL), dkc(nL), dvc(nL), kc_rot(nL), out(nL);
  std::vector<Vec<float>> dak(nL), dav(nL), dg1(nL), db1(nL), dg2(nL), db2(nL);
  strata::api::MeaStack st;
  st.options.site = kv ? strata::core::NormSite::kKeyValue : strata::core::NormSite::kOutput;
  st.options.gn_eps = float(rc.gn_eps), st.options.rope = mc.rope;
  st.options.rope_theta = float(rc.rope_theta);
  Vec<float> work;
  for (size_t l = 0; l < nL; ++l) {
    for (auto* b : {&q_rot[l], &dq_rot[l], &dq[l], &out[l]}) b->assign(nel + 8, nan);
    for (auto* b : {&k_attn[l], &v_attn[l], &dk_attn[l], &dv_attn[l]}) b->assign(nkv + 8, nan);
    for (auto* b : {&dkc[l], &dvc[l], &kc_rot[l]}) b->assign(nc + 8, nan);
    dak[l].assign(na, NAN), dav[l].assign(na, NAN);
    for (auto* b : {&dg1[l], &db1[l], &dg2[l], &db2[l]}) b->assign(ng, NAN);
    strata::api::MeaLayerParams y;
    y.attn = pr[l]->p;  // attn.o, lse, dout (dL/dout) and dsum are the Problem's
    y.attn.q = y.attn.k = y.attn.v = nullptr;  // the stack's to set: q_rot, k_attn, v_attn
    y.q_rot = q_rot[l].data(), y.k_attn = k_attn[l].data(), y.v_attn = v_attn[l].data();
    y.attn.dq = dq_rot[l].data();
    y.attn.dk = dk_attn[l].data(), y.attn.dv = dv_attn[l].data();
    y.h_c = Hc;
    y.q = pr[l]->qs.data(), y.kc = kcs[l].data(), y.vc = vcs[l].data();
    y.a_k = ak[l].data(), y.a_v = av[l].data();
    y.dq = dq[l].data(), y.dkc = dkc[l].data(), y.dvc = dvc[l].data();
    y.da_k = dak[l].data(), y.da_v = dav[l].data();
    if (kv) {
      y.gamma_k = g1[l].data(), y.beta_k = b1[l].data();
      y.gamma_v = g2[l].data(), y.beta_v = b2[l].data();
      y.dgamma_k = dg1[l].data(), y.dbeta_k = db1[l].data();
      y.dgamma_v = dg2[l].data(), y.dbeta_v = db2[l].data();
    } else {
      y.kc_rot = kc_rot[l].data(), y.out = out[l].data();
      y.gamma_o = g1[l].data(), y.beta_o = b1[l].data();
      y.dgamma_o = dg1[l].data(), y.dbeta_o = db1[l].data();
    }
    st.layers.push_back(y);
  }
  st.workspace_bytes = strata::api::workspace_bytes(st);
  work.assign(st.workspace_bytes / 4 + 1, NAN);
  st.workspace = work.data();
  MeaRun run;
  Verdict& v = run.verdict;
  v.status = forward_or_train(forward, st);
  if (!v.status.empty()) return run;

  const double u = double(core::kUnitRoundoff<T>);
  const double min_subnormal = std::ldexp(1.0, std::is_same_v<T, __half> ? -24 : -133);
  const std::string site = kv ? "kv " : "out ";
  const std::vector<double> pos = ref::token_positions(ac.cu_seqlens_q);
  for (size_t l = 0; l < nL; ++l) {
    const std::string tag = "layer " + std::to_string(l) + " ";
    auto chk = [&](const std::string& family, const std::vector<double>& got,
                   const std::vector<double>& want, const std::vector<double>& naive, double atol) {
      Verdict one;
      one.check(family, got, want, naive, atol);
      double& w = mea_family_worst()[site + family];
      w = std::max(w, one.worst);
      v.check(tag + family, got, want, naive, atol);
      if (std::getenv("STRATA_MEA_DEBUG") && one.worst > 0.7) {
        double ek = 0, en = 0, mx = 0;
        for (size_t i = 0; i < want.size(); ++i)
          if (std::isfinite(want[i]))
            ek = std::max(ek, std::fabs(got[i] - want[i])),
            en = std::max(en, std::fabs(naive[i] - want[i])), mx = std::max(mx, std::fabs(want[i]));
        std::printf("  %s%s: kernel %.3g naive %.3g atol %.3g max|ref| %.3g\n", tag.c_str(),
                    family.c_str(), ek, en, atol, mx);
      }
    };
    // The pass alone: |kernel - fp64 pass| <= rel |ref| + 1e-5 scale (T outputs: rel = u, one
    // rounding; fp32 parameter gradients: rel = 0, scale = 10 x their root-sum-square scale).
    auto exact = [&](const std::string& family, const std::vector<double>& got,
                     const std::vector<double>& want, double rel, double scale) {
      double mx = 0, worst = 0;
      for (double x : want) mx = std::max(mx, std::fabs(x));
      // + half the smallest subnormal of T: rounding to T is within u |x| only above fp16's
      // subnormal range (tiny gradients, e.g. a key that only its own query sees)
      const double floor =
          (scale > 0 ? scale : mx) * 1e-5 + (rel > 0 ? 0.5 * min_subnormal : 0) + 1e-30;
      for (size_t i = 0; i < want.size(); ++i) {
        const double r = std::fabs(got[i] - want[i]) / (rel * std::fabs(want[i]) + floor);
        if (!(r <= worst)) worst = r;  // NaN too
      }
      double& w = mea_family_worst()["pass " + site + family];
      w = std::max(w, worst);
      if (!(worst <= 1.0) && v.status.empty())
        v.status = "pass-only check " + tag + family + ": ratio " + std::to_string(worst);
    };
    // the composition alone: K' from RoPE(K_c) as stored, V' from V_c; one rounding (the stack's
    // own forward only: a decode runner composes inside its tiles and writes no K', V')
    if (!kv && !forward) {
      exact("K'", values(k_attn[l], nkv),
            ref::hlc_forward(tensor_of(kc_rot[l], nq, Hc, D), in.a_k[l]).data, u, 0);
      exact("V'", values(v_attn[l], nkv), ref::hlc_forward(in.vc[l], in.a_v[l]).data, u, 0);
    }
    if (forward) {
      chk("LSE", lse_rows(pr[l]->lse, nq, H), f.lse[l].data, nv.lse[l].data, 1e-5);
      if (kv)
        chk("O", values(pr[l]->o, nel), f.out[l].data, nv.out[l].data, 1e-5);
      else
        chk("out", values(out[l], nel), f.out[l].data, nv.out[l].data, 1e-5);
      continue;
    }
    const ref::Tensor dk_st = tensor_of(dk_attn[l], nq, Hk, D);
    const ref::Tensor dv_st = tensor_of(dv_attn[l], nq, Hk, D);
    ref::Tensor dq_pass = tensor_of(dq_rot[l], nq, H, D);
    if (mc.rope) dq_pass = ref::rope_rows_backward(dq_pass, pos, rc.rope_theta);
    exact("dQ", values(dq[l], nel), dq_pass.data, u, 0);

    chk("LSE", lse_rows(pr[l]->lse, nq, H), f.lse[l].data, nv.lse[l].data, 1e-5);
    chk("dQ", values(dq[l], nel), g64.q[l].data, nv.dq[l].data, grad_atol(u, g64.q[l].data));
    // The parameter gradients: FlashAttention's rule with atol = u x their scale (see above).
    auto params = [&](const std::string& name, const Vec<float>& got, const ref::Tensor& want,
                      const ref::Tensor& naive, const ref::Tensor& pass, double scale) {
      exact(name, doubles(got), pass.data, 0, 10 * scale);
      chk(name, doubles(got), want.data, naive.data, u * scale + 1e-5);
    };
    if (kv) {
      chk("O", values(pr[l]->o, nel), f.out[l].data, nv.out[l].data, 1e-5);
      // the pass from the attention's dk_attn, dv_attn as stored
      const ref::Tensor dyk = mc.rope ? ref::rope_rows_backward(dk_st, pos, rc.rope_theta) : dk_st;
      const GnRef gk = gn_backward_ref(f.k_mix[l], in.gn_gamma_k[l], dyk, rc.gn_eps);
      const GnRef gv = gn_backward_ref(f.v_mix[l], in.gn_gamma_v[l], dv_st, rc.gn_eps);
      const HlcRef hk = hlc_backward_ref(in.kc[l], in.a_k[l], gk.dx);
      const HlcRef hv = hlc_backward_ref(in.vc[l], in.a_v[l], gv.dx);
      exact("dK_c", values(dkc[l], nc), hk.dxc.data, u, 0);
      exact("dV_c", values(dvc[l], nc), hv.dxc.data, u, 0);
      params("dA^K", dak[l], g64.a_k[l], nv.dak[l], hk.dA, hk.s_dA);
      params("dA^V", dav[l], g64.a_v[l], nv.dav[l], hv.dA, hv.s_dA);
      params("dgamma_k", dg1[l], g64.gn_gamma_k[l], nv.dg1[l], gk.dgamma, gk.s_dgamma);
      params("dbeta_k", db1[l], g64.gn_beta_k[l], nv.db1[l], gk.dbeta, gk.s_dbeta);
      params("dgamma_v", dg2[l], g64.gn_gamma_v[l], nv.dg2[l], gv.dgamma, gv.s_dgamma);
      params("dbeta_v", db2[l], g64.gn_beta_v[l], nv.db2[l], gv.dbeta, gv.s_dbeta);
    } else {
      chk("out", values(out[l], nel), f.out[l].data, nv.out[l].data, 1e-5);
      chk("O", values(pr[l]->o, nel), f.attn_out[l].data, nv.attn_out[l].data, 1e-5);
      // the pass from RoPE(K_c) and the attention's dK', dV' as stored; the GroupNorm's
      // parameter gradients from O and dL/dout as stored
      const HlcRef hk = hlc_backward_ref(tensor_of(kc_rot[l], nq, Hc, D), in.a_k[l], dk_st);
      const HlcRef hv = hlc_backward_ref(in.vc[l], in.a_v[l], dv_st);
      const ref::Tensor dkc_pass =
          mc.rope ? ref::rope_rows_backward(hk.dxc, pos, rc.rope_theta) : hk.dxc;
      const GnRef go =
          gn_backward_ref(tensor_of(pr[l]->o, nq, H, D), in.gn_gamma_o[l], pr[l]->dout, rc.gn_eps);
      exact("dK_c", values(dkc[l], nc), dkc_pass.data, u, 0);
      exact("dV_c", values(dvc[l], nc), hv.dxc.data, u, 0);
      params("dA^K", dak[l], g64.a_k[l], nv.dak[l], hk.dA, hk.s_dA);
      params("dA^V", dav[l], g64.a_v[l], nv.dav[l], hv.dA, hv.s_dA);
      params("dgamma_o", dg1[l], g64.gn_gamma_o[l], nv.dg1[l], go.dgamma, go.s_dgamma);
      params("dbeta_o", db1[l], g64.gn_beta_o[l], nv.db1[l], go.dbeta, go.s_dbeta);
    }
    // through the token-local backward: a second unit roundoff for the intermediate gradients
    // rounded to T (as for Depth-Attention's and Gated Attention's norms)
    chk("dK_c", values(dkc[l], nc), g64.kc[l].data, nv.dkc[l].data,
        grad_atol(2 * u, g64.kc[l].data));
    chk("dV_c", values(dvc[l], nc), g64.vc[l].data, nv.dvc[l].data,
        grad_atol(2 * u, g64.vc[l].data));
    for (const auto* b : {&dak[l], &dav[l], &dg1[l], &db1[l], &dg2[l], &db2[l]})
      if (kv || (b != &dg2[l] && b != &db2[l]))
        run.param_grads.insert(run.param_grads.end(), b->begin(), b->end());
  }
  return run;
}

template <class T, int D>
Verdict run_mea(const MeaCase& mc, const ForwardRun<strata::api::MeaStack>& forward = {}) {
  return run_mea_full<T, D>(mc, forward).verdict;
}

}  // namespace kernel_test
