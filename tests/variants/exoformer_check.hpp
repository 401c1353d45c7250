// An ExoFormer stack (anchor mix of q, k, v, g + QK-norm + RoPE + elementwise output gate) run
// through api::ExoStack and checked against the fp64 reference (strata/reference/exoformer.hpp)
// with FlashAttention's rule on every output and every gradient (shared by the tests and
// examples/layer_stack). The naive same-dtype stack rounds every tensor a framework would
// materialise (A^, P~, the norm and RoPE outputs, O and y', every activation gradient); its
// cross-layer accumulator dA^ and its parameter gradients stay in fp64, as ours are fp32.
#pragma once

#include <strata/api/exoformer.hpp>
#include <strata/reference/exoformer.hpp>

#include <array>
#include <memory>
#include <string>
#include <vector>

#include "variant_check.hpp"

namespace kernel_test {

using strata::core::MixGranularity;

struct ExoCase {
  Case attn;  // self-attention: lens_k empty
  int layers = 4;
  bool dynamic = true;
  MixGranularity granularity = MixGranularity::kElementwise;
  bool rope = true;
  std::string describe() const {
    const char* g = granularity == MixGranularity::kElementwise ? "elementwise"
                    : granularity == MixGranularity::kHeadwise  ? "headwise"
                                                                : "scalar";
    return std::string("exoformer ") + (dynamic ? "dynamic " : "static ") + g +
           (rope ? " rope" : " no-rope") + " L " + std::to_string(layers) + " " + attn.describe();
  }
};

inline ref::LambdaGranularity ref_granularity(MixGranularity g) {
  return g == MixGranularity::kElementwise ? ref::LambdaGranularity::Elementwise
         : g == MixGranularity::kHeadwise  ? ref::LambdaGranularity::Head
                                           : ref::LambdaGranularity::Scalar;
}

/// The naive same-dtype stack.
template <class T>
struct NaiveExo {
  std::vector<ref::Tensor> out, lse, dgq, dgk, ds;
  std::array<std::vector<ref::Tensor>, 4> dp, dl1, dl2;
  std::array<ref::Tensor, 4> danchor, dganchor;
  // sqrt(sum of squared terms) of every reduced gradient: the scale of the random walk that the
  // terms' rounding errors add up to (the atol of a reduction, see run_exoformer)
  std::array<std::vector<double>, 4> dl1_rss, dl2_rss;
  std::vector<double> ds_rss;

  NaiveExo(const ref::ExoFormerConfig& c, const ref::ExoFormerInputs& in,
           const std::vector<ref::Tensor>& dout) {
    const auto& a = c.attn;
    const int L = c.num_layers, d = a.head_dim;
    const int64_t N = a.num_tokens_q();
    const std::vector<double> pos = ref::token_positions(a.cu_seqlens_q);
    auto rnd = [](ref::Tensor t) {
      for (double& x : t.data) x = round_to<T>(x);
      return t;
    };
    const size_t nL = static_cast<size_t>(L);
    std::array<ref::Tensor, 4> ahat;
    for (int p = 0; p < 4; ++p)
      ahat[size_t(p)] =
          rnd(ref::rmsnorm_rows(in.anchor[size_t(p)], in.gamma_anchor[size_t(p)], c.anchor_eps));
    std::array<std::vector<ref::Tensor>, 4> mixed;
    std::vector<ref::Tensor> q(nL), k(nL), o(nL);
    out.resize(nL), lse.resize(nL);
    auto scale = [&](int l, int p, int which, int64_t t) {
      return c.dynamic ? in.s[size_t(l)].at(t, 2 * p + which) : 1.0;
    };
    for (int l = 0; l < L; ++l) {
      const size_t ul = size_t(l);
      for (int p = 0; p < 4; ++p) {
        const ref::Tensor& P = in.p[size_t(p)][ul];
        ref::Tensor m = ref::zeros_like(P);
        for (int64_t t = 0; t < N; ++t)
          for (int h = 0; h < c.stream_heads(p); ++h)
            for (int i = 0; i < d; ++i) {
              const int64_t li = ref::lambda_index(c.granularity, h, i, d);
              m.row(t, h)[i] =
                  in.lambda1[size_t(p)][ul][li] * scale(l, p, 0, t) * ahat[size_t(p)].row(t, h)[i] +
                  in.lambda2[size_t(p)][ul][li] * scale(l, p, 1, t) * P.row(t, h)[i];
            }
        mixed[size_t(p)].push_back(rnd(m));
      }
      q[ul] = rnd(ref::rmsnorm_rows(mixed[0][ul], in.gamma_q[ul], c.norm_eps));
      k[ul] = rnd(ref::rmsnorm_rows(mixed[1][ul], in.gamma_k[ul], c.norm_eps));
      if (c.rope)
        q[ul] = rnd(ref::rope_rows(q[ul], pos, c.rope_theta)),
        k[ul] = rnd(ref::rope_rows(k[ul], pos, c.rope_theta));
      naive_attention<T>(a, q[ul], k[ul], mixed[2][ul], o[ul], lse[ul]);
      out[ul] = o[ul];
      for (int64_t e = 0; e < o[ul].numel(); ++e)
        out[ul][e] = round_to<T>(o[ul][e] * ref::sigmoid(mixed[3][ul][e]));
    }
    std::array<ref::Tensor, 4> acc;
    for (int p = 0; p < 4; ++p) {
      acc[size_t(p)] = ref::zeros_like(ahat[size_t(p)]);
      dp[size_t(p)].resize(nL), dl1[size_t(p)].resize(nL), dl2[size_t(p)].resize(nL);
      dl1_rss[size_t(p)].assign(nL, 0.0), dl2_rss[size_t(p)].assign(nL, 0.0);
    }
    ds_rss.assign(nL, 0.0);
    dgq.resize(nL), dgk.resize(nL), ds.resize(nL);
    for (int l = L - 1; l >= 0; --l) {
      const size_t ul = size_t(l);
      std::array<ref::Tensor, 4> dm;
      ref::Tensor dO = ref::zeros_like(o[ul]);
      dm[3] = ref::zeros_like(o[ul]);
      for (int64_t e = 0; e < dO.numel(); ++e) {
        const double sg = ref::sigmoid(mixed[3][ul][e]);
        dO[e] = round_to<T>(dout[ul][e] * sg);
        dm[3][e] = round_to<T>(dout[ul][e] * o[ul][e] * sg * (1 - sg));
      }
      ref::Tensor dq, dk;
      naive_backward<T>(a, q[ul], k[ul], mixed[2][ul], dO, dq, dk, dm[2]);
      if (c.rope)
        dq = rnd(ref::rope_rows_backward(dq, pos, c.rope_theta)),
        dk = rnd(ref::rope_rows_backward(dk, pos, c.rope_theta));
      dgq[ul] = ref::Tensor({d}), dgk[ul] = ref::Tensor({d});
      dm[0] =
          rnd(ref::rmsnorm_rows_backward(mixed[0][ul], in.gamma_q[ul], dq, c.norm_eps, dgq[ul]));
      dm[1] =
          rnd(ref::rmsnorm_rows_backward(mixed[1][ul], in.gamma_k[ul], dk, c.norm_eps, dgk[ul]));
      ds[ul] = ref::Tensor({N, 8});
      std::vector<double> ds_sq(static_cast<size_t>(N), 0.0);
      for (int p = 0; p < 4; ++p) {
        const size_t up = size_t(p);
        const ref::Tensor& P = in.p[up][ul];
        const ref::Tensor &l1 = in.lambda1[up][ul], &l2 = in.lambda2[up][ul];
        dp[up][ul] = ref::zeros_like(P);
        dl1[up][ul] = ref::zeros_like(l1), dl2[up][ul] = ref::zeros_like(l2);
        ref::Tensor q1 = ref::zeros_like(l1), q2 = ref::zeros_like(l2);  // sums of squared terms
        for (int64_t t = 0; t < N; ++t) {
          const double s1 = scale(l, p, 0, t), s2 = scale(l, p, 1, t);
          for (int h = 0; h < c.stream_heads(p); ++h)
            for (int i = 0; i < d; ++i) {
              const int64_t li = ref::lambda_index(c.granularity, h, i, d);
              const double dy = dm[up].row(t, h)[i];
              const double ah = ahat[up].row(t, h)[i], pv = P.row(t, h)[i];
              dp[up][ul].row(t, h)[i] = round_to<T>(l2[li] * s2 * dy);
              acc[up].row(t, h)[i] += l1[li] * s1 * dy;
              dl1[up][ul][li] += s1 * ah * dy;
              dl2[up][ul][li] += s2 * pv * dy;
              q1[li] += (s1 * ah * dy) * (s1 * ah * dy), q2[li] += (s2 * pv * dy) * (s2 * pv * dy);
              ds[ul].at(t, 2 * p) += l1[li] * ah * dy;
              ds[ul].at(t, 2 * p + 1) += l2[li] * pv * dy;
              ds_sq[size_t(t)] +=
                  (l1[li] * ah * dy) * (l1[li] * ah * dy) + (l2[li] * pv * dy) * (l2[li] * pv * dy);
            }
        }
        for (double x : q1.data) dl1_rss[up][ul] = std::max(dl1_rss[up][ul], std::sqrt(x));
        for (double x : q2.data) dl2_rss[up][ul] = std::max(dl2_rss[up][ul], std::sqrt(x));
      }
      for (double x : ds_sq) ds_rss[ul] = std::max(ds_rss[ul], std::sqrt(x));
    }
    for (int p = 0; p < 4; ++p) {
      dganchor[size_t(p)] = ref::Tensor({d});
      danchor[size_t(p)] =
          rnd(ref::rmsnorm_rows_backward(in.anchor[size_t(p)], in.gamma_anchor[size_t(p)],
                                         acc[size_t(p)], c.anchor_eps, dganchor[size_t(p)]));
    }
  }
};

template <class V>
std::vector<double> as_double(const V& x, size_t n) {
  return std::vector<double>(x.begin(), x.begin() + static_cast<std::ptrdiff_t>(n));
}

/// Device-side (simulated) buffers of one stack and the api::ExoStack over them.
template <class T, int D>
struct ExoRun {
  std::vector<std::unique_ptr<Problem<T>>> pr;
  ref::ExoFormerConfig rc;
  ref::ExoFormerInputs in;
  std::array<Vec<T>, 4> anchor, danchor;
  std::array<Vec<float>, 4> ganchor, acc, dganchor;
  // per layer
  std::vector<std::array<Vec<T>, 4>> p, out, dp;
  std::vector<std::array<Vec<float>, 4>> l1, l2, dl1, dl2;
  std::vector<Vec<T>> dgate, gate_work;
  std::vector<Vec<float>> gq, gk, dgq, dgk, s, ds;
  Vec<float> work;
  strata::api::ExoStack st;

  explicit ExoRun(const ExoCase& ec) {
    const int L = ec.layers;
    const size_t nL = static_cast<size_t>(L);
    for (int l = 0; l < L; ++l) {
      Case c = ec.attn;
      c.seed = ec.attn.seed * 53 + uint64_t(l);
      pr.push_back(std::make_unique<Problem<T>>(c, D));
    }
    const ref::AttentionConfig& ac = pr[0]->c;
    const int H = ac.num_heads, Hk = ac.num_kv_heads;
    const int64_t nq = pr[0]->nq;
    rc.attn = ac, rc.num_layers = L, rc.dynamic = ec.dynamic;
    rc.granularity = ref_granularity(ec.granularity), rc.rope = ec.rope;
    in = ref::allocate_inputs(rc);
    Rng rng(ec.attn.seed * 7 + 3);
    const T nan = core::from_float<T>(NAN);
    auto heads = [&](int q) { return q == 1 || q == 2 ? Hk : H; };
    auto rows = [&](int q) { return static_cast<size_t>(nq * heads(q) * D); };
    auto exo_rows = [&](const Vec<T>& v, int q) {
      return strata::api::ExoRows{v.data(), int64_t(heads(q)) * D, D};
    };
    auto exo_out = [&](Vec<T>& v, int q) {
      return strata::api::ExoRowsOut{v.data(), int64_t(heads(q)) * D, D};
    };
    auto gains = [&](ref::Tensor& t, Vec<float>& g) {
      g.resize(size_t(D));
      for (int i = 0; i < D; ++i) g[size_t(i)] = float(1.0 + 0.2 * rng.normal());
      for (int i = 0; i < D; ++i) t.data[size_t(i)] = g[size_t(i)];
    };
    for (int q = 0; q < 4; ++q) {
      const size_t uq = size_t(q);
      ref::Tensor x;
      random_tensor(rng, nq, heads(q), D, 1.0 + 0.5 * q, x, anchor[uq]);  // unequal scales
      in.anchor[uq] = x;
      gains(in.gamma_anchor[uq], ganchor[uq]);
      acc[uq].assign(rows(q) + 8, NAN);
      danchor[uq].assign(rows(q) + 8, nan);
      dganchor[uq].assign(size_t(D), NAN);
      st.anchors.anchor[uq] = exo_rows(anchor[uq], q);
      st.anchors.gamma[uq] = ganchor[uq].data();
      st.anchors.acc[uq] = acc[uq].data();
      st.anchors.danchor[uq] = exo_out(danchor[uq], q);
      st.anchors.dgamma[uq] = dganchor[uq].data();
    }
    p.resize(nL), out.resize(nL), dp.resize(nL), l1.resize(nL), l2.resize(nL), dl1.resize(nL),
        dl2.resize(nL), dgate.resize(nL), gate_work.resize(nL), gq.resize(nL), gk.resize(nL),
        dgq.resize(nL), dgk.resize(nL), s.resize(nL), ds.resize(nL);
    st.options.granularity = ec.granularity, st.options.dynamic = ec.dynamic;
    st.options.rope = ec.rope, st.options.rope_theta = float(rc.rope_theta);
    st.options.norm_eps = float(rc.norm_eps), st.options.anchor_eps = float(rc.anchor_eps);
    for (int l = 0; l < L; ++l) {
      const size_t ul = size_t(l);
      Problem<T>& P = *pr[ul];
      // the layer's own projections: q, k, v of the attention problem and a gate stream
      p[ul][0] = P.qs, p[ul][1] = P.ks, p[ul][2] = P.vs;
      in.p[0][ul] = P.q, in.p[1][ul] = P.k, in.p[2][ul] = P.v;
      random_tensor(rng, nq, H, D, 1.5, in.p[3][ul], p[ul][3]);
      strata::api::ExoStackLayer y;
      for (int q = 0; q < 4; ++q) {
        const size_t uq = size_t(q);
        out[ul][uq].assign(rows(q) + 8, nan);
        dp[ul][uq].assign(rows(q) + 8, nan);
        const int64_t nlam = strata::api::exo_lambda_count(ec.granularity, heads(q), D);
        for (auto* lam : {&l1[ul][uq], &l2[ul][uq]}) {
          lam->resize(size_t(nlam));
          for (float& x : *lam) x = float(0.5 + 0.3 * rng.normal());  // unconstrained, any sign
        }
        for (int64_t i = 0; i < nlam; ++i)
          in.lambda1[uq][ul][i] = l1[ul][uq][size_t(i)],
          in.lambda2[uq][ul][i] = l2[ul][uq][size_t(i)];
        dl1[ul][uq].assign(size_t(nlam), NAN), dl2[ul][uq].assign(size_t(nlam), NAN);
        y.mix.p[uq] = exo_rows(p[ul][uq], q);
        y.mix.lambda1[uq] = l1[ul][uq].data(), y.mix.lambda2[uq] = l2[ul][uq].data();
        y.mix.dp[uq] = exo_out(dp[ul][uq], q);
        y.mix.dlambda1[uq] = dl1[ul][uq].data(), y.mix.dlambda2[uq] = dl2[ul][uq].data();
      }
      gains(in.gamma_q[ul], gq[ul]);
      gains(in.gamma_k[ul], gk[ul]);
      dgq[ul].assign(size_t(D), NAN), dgk[ul].assign(size_t(D), NAN);
      const size_t ns = static_cast<size_t>(nq * 8);
      s[ul].resize(ns), ds[ul].assign(ns + 1, NAN);
      for (size_t i = 0; i < ns; ++i) {
        s[ul][i] = float(1.0 / (1.0 + std::exp(-rng.normal())));  // sigmoid outputs
        if (ec.dynamic) in.s[ul].data[i] = s[ul][i];
      }
      y.mix.gamma_q = gq[ul].data(), y.mix.gamma_k = gk[ul].data();
      y.mix.dgamma_q = dgq[ul].data(), y.mix.dgamma_k = dgk[ul].data();
      y.mix.s = s[ul].data(), y.mix.ds = ds[ul].data();
      y.attn = P.p;  // q~, k~, v~ into the out buffers, their gradients into P's dq, dk, dv
      y.attn.q = y.attn.k = y.attn.v = nullptr;  // the stack's to set: mix.out
      for (int p = 0; p < 4; ++p) y.mix.out[size_t(p)] = out[ul][size_t(p)].data();
      dgate[ul].assign(rows(3) + 8, nan), gate_work[ul].assign(rows(3) + 8, nan);
      y.gate.kind = strata::core::GateKind::kElementwise;
      y.gate.gate_row_stride = int64_t(H) * D, y.gate.gate_head_stride = D;
      y.gate.dgate = dgate[ul].data(), y.gate.workspace = gate_work[ul].data();
      y.gate.workspace_bytes = gate_work[ul].size() * sizeof(T);
      st.layers.push_back(y);
    }
    work.assign(strata::api::workspace_bytes(st) / 4 + 1, NAN);
    st.workspace = work.data(), st.workspace_bytes = work.size() * sizeof(float);
  }
};

template <class T, int D>
Verdict run_exoformer(const ExoCase& ec, const ForwardRun<strata::api::ExoStack>& forward = {}) {
  ExoRun<T, D> r(ec);
  Verdict v;
  if (forward) {
    v.status = forward(r.st);
  } else {
    if (const auto s = r.st.forward(); !s.ok()) v.status = std::string("forward: ") + s.message();
    if (const auto s = r.st.backward(); v.status.empty() && !s.ok())
      v.status = std::string("backward: ") + s.message();
  }
  if (v.status.empty()) v.status = sync_device();
  if (!v.status.empty()) return v;

  std::vector<ref::Tensor> douts;
  for (const auto& P : r.pr) douts.push_back(P->dout);
  const ref::ExoFormerForward f = ref::forward(r.rc, r.in);
  const ref::ExoFormerInputs g64 = ref::backward(r.rc, r.in, f, douts);
  const NaiveExo<T> nv(r.rc, r.in, douts);

  const int H = r.rc.attn.num_heads;
  const int64_t nq = r.pr[0]->nq;
  const double u = double(core::kUnitRoundoff<T>);
  const size_t ud = static_cast<size_t>(D);
  // A reduced gradient (dlambda, ds) sums n terms that each carry a rounding error of about u
  // times the term (dy is rounded to T once, and the attention's own error is of that order):
  // they add up as a random walk of scale u * sqrt(sum of squared terms), whose realisation in the
  // naive stack is one sample (measured: the naive's error of a scalar dlambda over 38k terms was
  // 0.2 sigma in one case, ours 1.8 sigma). Two such scales join the atol; a missing or wrong
  // term moves the sum by far more.
  const double kRss = 2.0;
  for (int l = 0; l < ec.layers; ++l) {
    const size_t ul = size_t(l);
    const std::string tag = "layer " + std::to_string(l) + " ";
    v.check(tag + "y'", values(r.pr[ul]->o, size_t(nq * H * D)), f.out[ul].data, nv.out[ul].data,
            1e-5);
    v.check(tag + "LSE", lse_rows(r.pr[ul]->lse, nq, H), f.lse[ul].data, nv.lse[ul].data, 1e-5);
    if (forward) continue;
    for (int q = 0; q < 4; ++q) {
      const size_t uq = size_t(q);
      const std::string n = tag + ref::exo_stream_name(q);
      const auto& ref_dp = g64.p[uq][ul].data;
      // q and k pass the QK-norm's backward after a rounding to T: a second unit roundoff
      const double ug = q < 2 ? 2 * u : u;
      v.check(n + " dP", values(r.dp[ul][uq], ref_dp.size()), ref_dp, nv.dp[uq][ul].data,
              grad_atol(ug, ref_dp));
      const auto& rl1 = g64.lambda1[uq][ul].data;
      const auto& rl2 = g64.lambda2[uq][ul].data;
      v.check(n + " dlambda1", as_double(r.dl1[ul][uq], rl1.size()), rl1, nv.dl1[uq][ul].data,
              grad_atol(ug, rl1) + kRss * u * nv.dl1_rss[uq][ul]);
      v.check(n + " dlambda2", as_double(r.dl2[ul][uq], rl2.size()), rl2, nv.dl2[uq][ul].data,
              grad_atol(ug, rl2) + kRss * u * nv.dl2_rss[uq][ul]);
    }
    v.check(tag + "dgamma_q", as_double(r.dgq[ul], ud), g64.gamma_q[ul].data, nv.dgq[ul].data,
            grad_atol(u, g64.gamma_q[ul].data));
    v.check(tag + "dgamma_k", as_double(r.dgk[ul], ud), g64.gamma_k[ul].data, nv.dgk[ul].data,
            grad_atol(u, g64.gamma_k[ul].data));
    if (ec.dynamic) {
      const auto& rds = g64.s[ul].data;
      v.check(tag + "ds", as_double(r.ds[ul], rds.size()), rds, nv.ds[ul].data,
              grad_atol(2 * u, rds) + kRss * u * nv.ds_rss[ul]);
    }
  }
  for (int q = 0; !forward && q < 4; ++q) {
    const size_t uq = size_t(q);
    const std::string n = std::string("anchor ") + ref::exo_stream_name(q);
    const auto& rda = g64.anchor[uq].data;
    v.check(n + " danchor", values(r.danchor[uq], rda.size()), rda, nv.danchor[uq].data,
            grad_atol(2 * u, rda));
    v.check(n + " dgamma", as_double(r.dganchor[uq], ud), g64.gamma_anchor[uq].data,
            nv.dganchor[uq].data, grad_atol(u, g64.gamma_anchor[uq].data));
  }
  return v;
}

}  // namespace kernel_test
