/// \file
/// Head-level linear composition of MEA (SPEC §4a/§4e, decisions §7.5): composite head h of K (or
/// V) is a scalar mix of the H_c component heads at the same token,
///   K'[h] = sum_c A[c,h] K_c[c],   A in R^{H_c x H} stored row-major (A[c*H + h]).
/// With H_c < H the composite heads are "virtual": the cache holds H_c heads, the kernel expands.
/// Backward with dy = dL/dK'[h]:  dK_c[c] += A[c,h] dy,  dA[c,h] += K_c[c] . dy (per-thread partial
/// sums over this thread's elements, in registers; the caller reduces over the row and the tokens).
#pragma once

#include "strata/core/numeric.hpp"

namespace strata::core {

/// Composite head h from the `components` (<= kMaxComponents) component rows `kc` (N elements of
/// one token each). The loops run to the compile-time maximum so that `kc` stays in registers.
template <int kMaxComponents, int N>
STRATA_HOST_DEVICE void head_compose_forward(const float* a, int heads, int components, int h,
                                             const float (&kc)[kMaxComponents][N],
                                             float (&out)[N]) {
  STRATA_UNROLL
  for (int i = 0; i < N; ++i) out[i] = 0.f;
  STRATA_UNROLL
  for (int c = 0; c < kMaxComponents; ++c) {
    if (c >= components) break;
    const float w = a[c * heads + h];
    STRATA_UNROLL
    for (int i = 0; i < N; ++i) out[i] += w * kc[c][i];
  }
}

/// Backward of composite head h: adds to dkc (the component rows) and to da[c], this thread's
/// partial sum of dA[c,h] over its elements. The partials stay in registers; the caller reduces
/// them over the lanes of the row and over tokens (one atomic or store per block, not per lane).
template <int kMaxComponents, int N>
STRATA_HOST_DEVICE void head_compose_backward(const float* a, int heads, int components, int h,
                                              const float (&kc)[kMaxComponents][N],
                                              const float (&dy)[N], float (&dkc)[kMaxComponents][N],
                                              float (&da)[kMaxComponents]) {
  STRATA_UNROLL
  for (int c = 0; c < kMaxComponents; ++c) {
    if (c >= components) break;
    const float w = a[c * heads + h];
    float dot = 0.f;
    STRATA_UNROLL
    for (int i = 0; i < N; ++i) {
      dkc[c][i] += w * dy[i];
      dot += kc[c][i] * dy[i];
    }
    da[c] += dot;
  }
}

/// The documented init of A: identity when H_c = H, identity tiled (composite head h reads
/// component h mod H_c) when H_c < H, so MEA starts as MHA. `components` must be >= 1.
STRATA_HOST_DEVICE float head_compose_init(int components, int c, int h) {
  return components > 0 && h % components == c ? 1.f : 0.f;
}

}  // namespace strata::core
