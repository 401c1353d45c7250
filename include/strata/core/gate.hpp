/// \file
/// Gated Attention's sigmoid output gate at position G1 (SPEC §5a/§5e, decisions §7.6), also
/// ExoFormer's gate on the mixed logits g~: O' = O sigma(g), elementwise (g per head and
/// dimension) or headwise (one g per head, broadcast over d).
/// Backward with dy = dL/dO':  dO = dy sigma(g),  dg = dy O sigma(g) (1 - sigma(g)) — summed over
/// the head's elements for a headwise gate. dO is what the attention backward consumes as its
/// "dO"; its preprocess D = rowsum(dO o O) reuses the same loads. sigma'(g) is computed as
/// sigma(g) sigma(-g): 1 - sigma(g) would lose all relative accuracy for g > ~16.
#pragma once

#include "strata/core/numeric.hpp"

namespace strata::core {

/// O' = O sigma(g) elementwise. `out` may alias `o`.
template <int N>
STRATA_HOST_DEVICE void gate_forward(const float (&o)[N], const float (&g)[N], float (&out)[N]) {
  STRATA_UNROLL
  for (int i = 0; i < N; ++i) out[i] = o[i] * sigmoid(g[i]);
}

/// O' = O sigma(g) with one gate logit for the head.
template <int N>
STRATA_HOST_DEVICE void gate_forward(const float (&o)[N], float g, float (&out)[N]) {
  const float sg = sigmoid(g);
  STRATA_UNROLL
  for (int i = 0; i < N; ++i) out[i] = o[i] * sg;
}

/// Elementwise backward: writes dO and dg. `d_o` may alias `dy`.
template <int N>
STRATA_HOST_DEVICE void gate_backward(const float (&o)[N], const float (&g)[N],
                                      const float (&dy)[N], float (&d_o)[N], float (&dg)[N]) {
  STRATA_UNROLL
  for (int i = 0; i < N; ++i) {
    const float sg = sigmoid(g[i]);
    dg[i] = dy[i] * o[i] * (sg * sigmoid(-g[i]));
    d_o[i] = dy[i] * sg;
  }
}

/// Headwise backward: writes dO and returns dg of the head (summed over the row with `sum`).
template <int N, class Sum = LocalSum>
STRATA_HOST_DEVICE float gate_backward(const float (&o)[N], float g, const float (&dy)[N],
                                       float (&d_o)[N], Sum sum = {}) {
  const float sg = sigmoid(g);
  float dot = 0.f;
  STRATA_UNROLL
  for (int i = 0; i < N; ++i) {
    dot += dy[i] * o[i];
    d_o[i] = dy[i] * sg;
  }
  return sum(dot) * (sg * sigmoid(-g));
}

/// Backward from the gated output y' = O sigma(g), which is what a fused forward stores (O itself
/// is never written): since O sigma(g) (1 - sigma(g)) = y' sigma(-g) and (dy sigma(g)) o O = dy o
/// y',
///   dO = dy sigma(g),  dg = dy y' sigma(-g),  rowsum(dO o O) = rowsum(dy o y').
/// One element; returns dy y' (the term of the attention backward's D and of a headwise dg).
STRATA_HOST_DEVICE float gate_backward_from_output(float y_gated, float g, float dy, float& d_o,
                                                   float& dg) {
  const float dot = dy * y_gated;
  d_o = dy * sigmoid(g);
  dg = dot * sigmoid(-g);
  return dot;
}

}  // namespace strata::core
