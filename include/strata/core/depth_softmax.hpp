/// \file
/// Depth softmax of Depth-Attention (SPEC §1a steps 5-7, §1e; decisions §7.2): at one token and
/// KV head, the group-mean query q^ attends over the layer axis — the stored keys k^_j / mixed
/// values v^_j of the source layers j in ascending order, then the layer's own (k^_l, raw v_l):
///   z_c = q^ . kappa_c / sqrt(d),   alpha = softmax(z),   v^_l = sum_c alpha_c nu_c.
/// The forward streams candidates through an fp32 online softmax (the official "stream" mix), so
/// registers do not grow with the number of sources. The backward takes two passes over the
/// candidates: scores and delta_c = g . nu_c first, then per candidate
///   dz_c = alpha_c (delta_c - sum_c' alpha_c' delta_c'),
///   dq^ += dz_c kappa_c / sqrt(d),   dkappa_c = dz_c q^ / sqrt(d),   dnu_c = alpha_c g,
/// and the caller scatters dq^ / G to each query head of the group.
/// DepthQueryGrad accumulates dq^ online in the first pass instead, so a kernel need not read the
/// keys twice (strata/variants/depth_attention.cuh uses it).
#pragma once

#include "strata/core/numeric.hpp"
#include "strata/core/online_softmax.hpp"

namespace strata::core {

/// Default bound on the number of source layers of one layer (SPEC §7.2): a compile-time register
/// budget. The public API rejects longer source lists before any kernel runs.
inline constexpr int kMaxSources = 8;

/// The depth softmax's scale: 1/sqrt(d), no temperature (SPEC §1a step 7).
STRATA_HOST_DEVICE float depth_scale(int head_dim) {
  return 1.f / sqrtf(float(head_dim));
}

/// Adds q_h / G of one query head of the group to the group-mean depth query q^.
template <int N>
STRATA_HOST_DEVICE void depth_query_add(const float (&q)[N], float inv_group, float (&qbar)[N]) {
  STRATA_UNROLL
  for (int i = 0; i < N; ++i) qbar[i] += q[i] * inv_group;
}

/// Forward state of one (token, KV head): candidates are added one at a time in order.
template <int N>
struct DepthMix {
  OnlineSoftmax softmax;  ///< over base-2 logits z_c log2(e)
  float acc[N];           ///< sum_c 2^(z_c - m) nu_c

  STRATA_HOST_DEVICE DepthMix() {
    STRATA_UNROLL
    for (int i = 0; i < N; ++i) acc[i] = 0.f;
  }

  /// Adds candidate (kappa, nu); returns its base-2 logit. `scale` is depth_scale(d).
  template <class Sum = LocalSum>
  STRATA_HOST_DEVICE float add(const float (&qbar)[N], const float (&kappa)[N],
                               const float (&nu)[N], float scale, Sum sum = {}) {
    float dot = 0.f;
    STRATA_UNROLL
    for (int i = 0; i < N; ++i) dot += qbar[i] * kappa[i];
    const float z = sum(dot) * (scale * kLog2e);
    float p;
    const float rescale = softmax.update(z, p);
    STRATA_UNROLL
    for (int i = 0; i < N; ++i) acc[i] = acc[i] * rescale + p * nu[i];
    return z;
  }

  /// The mixed value v^ (zero if no candidate was added).
  STRATA_HOST_DEVICE void finalize(float (&vhat)[N]) const {
    const float inv = softmax.inv_sum();
    STRATA_UNROLL
    for (int i = 0; i < N; ++i) vhat[i] = acc[i] * inv;
  }
  /// alpha of a candidate from its base-2 logit, after all candidates were added.
  STRATA_HOST_DEVICE float alpha(float z) const { return softmax.weight(z) * softmax.inv_sum(); }
};

/// Backward state of one (token, KV head) for at most kMaxCandidates candidates (sources + self);
/// candidates past that bound are ignored, so callers validate the count first.
/// The per-candidate arrays are only indexed through unrolled loops with constant indices
/// (select/put), so they stay in registers: a runtime index would put them in local memory.
template <int kMaxCandidates = kMaxSources + 1>
struct DepthMixGrad {
  float z[kMaxCandidates] = {};      ///< base-2 logits
  float delta[kMaxCandidates] = {};  ///< g . nu_c
  float a[kMaxCandidates] = {};      ///< alpha_c, after finish()
  float delta_bar = 0.f;             ///< sum_c alpha_c delta_c = g . v^
  int n = 0;

  /// Pass 1: candidate c = n (in forward order). `g` is dL/dv^.
  template <int N, class Sum = LocalSum>
  STRATA_HOST_DEVICE void add(const float (&qbar)[N], const float (&kappa)[N], const float (&nu)[N],
                              const float (&g)[N], float scale, Sum sum = {}) {
    float dot = 0.f, dg = 0.f;
    STRATA_UNROLL
    for (int i = 0; i < N; ++i) {
      dot += qbar[i] * kappa[i];
      dg += g[i] * nu[i];
    }
    put(z, n, sum(dot) * (scale * kLog2e));
    put(delta, n, sum(dg));
    ++n;
  }

  /// Softmax of the stored logits and delta_bar; call once after the last add().
  STRATA_HOST_DEVICE void finish() {
    float m = -INFINITY;
    STRATA_UNROLL
    for (int c = 0; c < kMaxCandidates; ++c)
      if (c < n) m = m > z[c] ? m : z[c];
    float l = 0.f;
    STRATA_UNROLL
    for (int c = 0; c < kMaxCandidates; ++c) {
      a[c] = c < n && m != -INFINITY ? arch::ex2_ftz(z[c] - m) : 0.f;  // a -inf score weighs 0
      l += a[c];
    }
    const float inv = l > 0.f ? 1.f / l : 0.f;
    delta_bar = 0.f;
    STRATA_UNROLL
    for (int c = 0; c < kMaxCandidates; ++c) {
      a[c] *= inv;
      if (c < n) delta_bar += a[c] * delta[c];
    }
  }

  /// Base-2 logit of candidate c (after its add()).
  STRATA_HOST_DEVICE float logit(int c) const { return select(z, c); }
  /// g . nu_c of candidate c (after its add()).
  STRATA_HOST_DEVICE float g_dot_nu(int c) const { return select(delta, c); }
  /// alpha_c, after finish().
  STRATA_HOST_DEVICE float alpha(int c) const { return select(a, c); }
  /// dL/dz_c (natural-unit logit).
  STRATA_HOST_DEVICE float dz(int c) const { return select(a, c) * (select(delta, c) - delta_bar); }

  /// Pass 2 for candidate c: adds to dq^, writes dkappa_c and dnu_c.
  template <int N>
  STRATA_HOST_DEVICE void candidate_grads(int c, const float (&qbar)[N], const float (&kappa)[N],
                                          const float (&g)[N], float scale, float (&dqbar)[N],
                                          float (&dkappa)[N], float (&dnu)[N]) const {
    const float dzs = dz(c) * scale, ac = alpha(c);
    STRATA_UNROLL
    for (int i = 0; i < N; ++i) {
      dqbar[i] += dzs * kappa[i];
      dkappa[i] = dzs * qbar[i];
      dnu[i] = ac * g[i];
    }
  }

 private:
  STRATA_HOST_DEVICE static float select(const float (&v)[kMaxCandidates], int c) {
    float r = 0.f;
    STRATA_UNROLL
    for (int k = 0; k < kMaxCandidates; ++k) r = k == c ? v[k] : r;
    return r;
  }
  STRATA_HOST_DEVICE static void put(float (&v)[kMaxCandidates], int c, float x) {
    STRATA_UNROLL
    for (int k = 0; k < kMaxCandidates; ++k) v[k] = k == c ? x : v[k];
  }
};

/// dq^ of the depth softmax in the same pass that first reads the candidates, so the keys need not
/// be read again: with w_c = 2^(z_c - m) (online, rescaled as m grows),
///   dq^ = scale sum_c alpha_c (delta_c - delta_bar) kappa_c = scale (A - delta_bar B) / l,
///   A = sum_c w_c delta_c kappa_c,  B = sum_c w_c kappa_c,  l = sum_c w_c.
template <int N>
struct DepthQueryGrad {
  OnlineSoftmax softmax;
  float a[N], b[N];

  STRATA_HOST_DEVICE DepthQueryGrad() {
    STRATA_UNROLL
    for (int i = 0; i < N; ++i) a[i] = b[i] = 0.f;
  }
  /// Candidate with base-2 logit z (as DepthMixGrad::add stores it) and delta = g . nu.
  STRATA_HOST_DEVICE void add(float z, float delta, const float (&kappa)[N]) {
    float w;
    const float rescale = softmax.update(z, w);
    STRATA_UNROLL
    for (int i = 0; i < N; ++i) {
      a[i] = a[i] * rescale + w * delta * kappa[i];
      b[i] = b[i] * rescale + w * kappa[i];
    }
  }
  /// Adds dq^ to `dqbar`; delta_bar from DepthMixGrad::finish().
  STRATA_HOST_DEVICE void finish(float delta_bar, float scale, float (&dqbar)[N]) const {
    const float f = scale * softmax.inv_sum();
    STRATA_UNROLL
    for (int i = 0; i < N; ++i) dqbar[i] += f * (a[i] - delta_bar * b[i]);
  }
};

}  // namespace strata::core
