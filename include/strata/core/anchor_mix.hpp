/// \file
/// ExoFormer's normalized anchor mix (SPEC §3a step 4, §3e; decisions §7.4), per stream
/// P in {q, k, v, g}:
///   P~ = (lambda1 s1) A^ + (lambda2 s2) P,
/// A^ the RMS-normalized exogenous anchor (rmsnorm.hpp), lambda1/lambda2 unconstrained
/// coefficients of elementwise [H,d], headwise [H] or scalar granularity, s1/s2 the per-token
/// dynamic scales (1 in the static variant). Not convex and not softmax-normalized.
/// Backward with dy = dL/dP~:
///   dP = lambda2 s2 dy,  dA^ += lambda1 s1 dy (summed over all layers),
///   dlambda1 += s1 A^ dy,  dlambda2 += s2 P dy  (elementwise; the caller reduces to lambda's
///   shape), ds1 += sum lambda1 A^ dy,  ds2 += sum lambda2 P dy  (over the row; the caller sums
///   heads).
#pragma once

#include "strata/core/numeric.hpp"
#include "strata/core/options.hpp"

namespace strata::core {

/// P~ = (lambda1 s1) anchor + (lambda2 s2) p, lambda expanded to the N elements of the row.
template <int N>
STRATA_HOST_DEVICE void anchor_mix_forward(const float (&anchor)[N], const float (&p)[N],
                                           const float (&lambda1)[N], const float (&lambda2)[N],
                                           float s1, float s2, float (&out)[N]) {
  STRATA_UNROLL
  for (int i = 0; i < N; ++i) out[i] = (lambda1[i] * s1) * anchor[i] + (lambda2[i] * s2) * p[i];
}

/// Backward: writes dp; adds to danchor, dlambda1, dlambda2 (elementwise partials) and to the
/// partial sums ds1, ds2 of this row.
template <int N>
STRATA_HOST_DEVICE void anchor_mix_backward(const float (&anchor)[N], const float (&p)[N],
                                            const float (&lambda1)[N], const float (&lambda2)[N],
                                            float s1, float s2, const float (&dy)[N],
                                            float (&dp)[N], float (&danchor)[N],
                                            float (&dlambda1)[N], float (&dlambda2)[N], float& ds1,
                                            float& ds2) {
  STRATA_UNROLL
  for (int i = 0; i < N; ++i) {
    const float ady = anchor[i] * dy[i], pdy = p[i] * dy[i];
    dlambda1[i] += s1 * ady;
    dlambda2[i] += s2 * pdy;
    ds1 += lambda1[i] * ady;
    ds2 += lambda2[i] * pdy;
    danchor[i] += (lambda1[i] * s1) * dy[i];
    dp[i] = (lambda2[i] * s2) * dy[i];
  }
}

}  // namespace strata::core
