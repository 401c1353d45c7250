/// \file
/// RMSNorm over the head dimension (QK-norm of Depth-Attention / Qwen3 / ExoFormer, and ExoFormer's
/// anchor norm): y = gamma * x / sqrt(mean(x^2) + eps). Forward and backward, fp32.
///
/// A row of `n` elements may be spread over a group of threads; each thread passes the N elements
/// it owns and a reducer that sums over the group (LocalSum when one thread owns the row).
///
/// Backward (SPEC §3e), with r = 1/sqrt(mean(x^2) + eps) and x^ = x r:
///   dx = r (gamma dy - x^ mean(gamma dy x^)),   dgamma += dy x^.
/// An all-zero row gives y = 0 and dx = r gamma dy with r = 1/sqrt(eps): finite for eps > 0.
#pragma once

#include "strata/arch/sfu.hpp"
#include "strata/core/numeric.hpp"

namespace strata::core {

/// 1/sqrt(mean(x^2) + eps) of a row of `n` elements (this thread owns N of them).
template <int N, class Sum = LocalSum>
STRATA_HOST_DEVICE float rms_inverse(const float (&x)[N], int n, float eps, Sum sum = {}) {
  float ss = 0.f;
  STRATA_UNROLL
  for (int i = 0; i < N; ++i) ss += x[i] * x[i];
  return arch::rsqrt_rn(sum(ss) / float(n) + eps);
}

/// y = gamma * x * r; returns r. `y` may alias `x`.
template <int N, class Sum = LocalSum>
STRATA_HOST_DEVICE float rmsnorm_forward(const float (&x)[N], const float (&gamma)[N], int n,
                                         float eps, float (&y)[N], Sum sum = {}) {
  const float r = rms_inverse(x, n, eps, sum);
  STRATA_UNROLL
  for (int i = 0; i < N; ++i) y[i] = gamma[i] * (x[i] * r);
  return r;
}

/// dx of RMSNorm given the forward input x and dy; adds dy * x^ to dgamma (the caller reduces it
/// over tokens). `dx` may alias `dy`.
template <int N, class Sum = LocalSum>
STRATA_HOST_DEVICE void rmsnorm_backward(const float (&x)[N], const float (&gamma)[N],
                                         const float (&dy)[N], int n, float eps, float (&dx)[N],
                                         float (&dgamma)[N], Sum sum = {}) {
  const float r = rms_inverse(x, n, eps, sum);
  float dot = 0.f;  // sum of gamma dy x^
  STRATA_UNROLL
  for (int i = 0; i < N; ++i) dot += gamma[i] * dy[i] * (x[i] * r);
  const float mean_dot = sum(dot) / float(n);
  STRATA_UNROLL
  for (int i = 0; i < N; ++i) {
    const float xh = x[i] * r;
    dgamma[i] += dy[i] * xh;
    dx[i] = r * (gamma[i] * dy[i] - xh * mean_dot);
  }
}

}  // namespace strata::core
