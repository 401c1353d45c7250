/// \file
/// Value-residual mix of ResFormer (SPEC §2a/§2e, decisions §7.3): V'_l = lambda_self V_l +
/// lambda_first V_0, lambda a scalar or one per KV head (the caller passes the head's pair). The
/// official Identity-ResFormer is lambda = 0.5 / 0.5; modded-nanogpt's (1 - l) v + l v1 is
/// lambda_self = 1 - l, lambda_first = l. SVFormer is lambda_self = 0, lambda_first = 1 (and no
/// V_l at all; see the kernels).
/// Backward: dV_l = lambda_self g, dV_0 += lambda_first g, dlambda_self += V_l . g,
/// dlambda_first += V_0 . g (per-thread partial sums; the caller reduces them).
#pragma once

#include "strata/core/numeric.hpp"

namespace strata::core {

/// The official constants (Identity-ResFormer).
inline constexpr float kResFormerLambda = 0.5f;

/// V' = lambda_self v + lambda_first v_first. `out` may alias either input.
template <int N>
STRATA_HOST_DEVICE void value_residual_forward(const float (&v)[N], const float (&v_first)[N],
                                               float lambda_self, float lambda_first,
                                               float (&out)[N]) {
  STRATA_UNROLL
  for (int i = 0; i < N; ++i) out[i] = lambda_self * v[i] + lambda_first * v_first[i];
}

/// Backward with g = dL/dV': writes dv, adds to dv_first (a cross-layer fp32 accumulator) and to
/// the partial sums of dlambda_self and dlambda_first.
template <int N>
STRATA_HOST_DEVICE void value_residual_backward(const float (&v)[N], const float (&v_first)[N],
                                                float lambda_self, float lambda_first,
                                                const float (&g)[N], float (&dv)[N],
                                                float (&dv_first)[N], float& dlambda_self,
                                                float& dlambda_first) {
  STRATA_UNROLL
  for (int i = 0; i < N; ++i) {
    dlambda_self += v[i] * g[i];
    dlambda_first += v_first[i] * g[i];
    dv_first[i] += lambda_first * g[i];
    dv[i] = lambda_self * g[i];
  }
}

}  // namespace strata::core
