/// \file
/// Head GroupNorm (MEA, SPEC §4a/§7.5): per token and head, over the head dimension, with a
/// per-channel affine: y = gamma (x - mu) / sqrt(var + eps) + beta, var biased. fp32.
///
/// Backward (SPEC §4e), with x^ = (x - mu) r, r = 1/sqrt(var + eps) and u = gamma dy:
///   dx = r (u - mean(u) - x^ mean(u x^)),   dgamma += dy x^,   dbeta += dy.
/// A constant row has x^ = 0: y = beta, and dx = r (u - mean(u)), finite for eps > 0.
#pragma once

#include "strata/arch/sfu.hpp"
#include "strata/core/numeric.hpp"

namespace strata::core {

/// Mean and 1/sqrt(var + eps) of a row of `n` elements (two passes: no cancellation).
template <int N, class Sum = LocalSum>
STRATA_HOST_DEVICE void group_norm_stats(const float (&x)[N], int n, float eps, float& mu, float& r,
                                         Sum sum = {}) {
  float s = 0.f;
  STRATA_UNROLL
  for (int i = 0; i < N; ++i) s += x[i];
  mu = sum(s) / float(n);
  float ss = 0.f;
  STRATA_UNROLL
  for (int i = 0; i < N; ++i) ss += (x[i] - mu) * (x[i] - mu);
  r = arch::rsqrt_rn(sum(ss) / float(n) + eps);
}

/// y = gamma x^ + beta. `y` may alias `x`.
template <int N, class Sum = LocalSum>
STRATA_HOST_DEVICE void group_norm_forward(const float (&x)[N], const float (&gamma)[N],
                                           const float (&beta)[N], int n, float eps, float (&y)[N],
                                           Sum sum = {}) {
  float mu, r;
  group_norm_stats(x, n, eps, mu, r, sum);
  STRATA_UNROLL
  for (int i = 0; i < N; ++i) y[i] = gamma[i] * ((x[i] - mu) * r) + beta[i];
}

/// dx given the forward input and dy; adds to dgamma and dbeta. `dx` may alias `dy`.
template <int N, class Sum = LocalSum>
STRATA_HOST_DEVICE void group_norm_backward(const float (&x)[N], const float (&gamma)[N],
                                            const float (&dy)[N], int n, float eps, float (&dx)[N],
                                            float (&dgamma)[N], float (&dbeta)[N], Sum sum = {}) {
  float mu, r;
  group_norm_stats(x, n, eps, mu, r, sum);
  float su = 0.f, sux = 0.f;
  STRATA_UNROLL
  for (int i = 0; i < N; ++i) {
    const float u = gamma[i] * dy[i];
    su += u;
    sux += u * ((x[i] - mu) * r);
  }
  const float mean_u = sum(su) / float(n), mean_ux = sum(sux) / float(n);
  STRATA_UNROLL
  for (int i = 0; i < N; ++i) {
    const float xh = (x[i] - mu) * r;
    dgamma[i] += dy[i] * xh;
    dbeta[i] += dy[i];
    dx[i] = r * (gamma[i] * dy[i] - mean_u - xh * mean_ux);
  }
}

}  // namespace strata::core
