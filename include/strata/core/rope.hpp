/// \file
/// Rotary position embedding, rotate-half form (Llama / Qwen3 / ExoFormer; SPEC §1a, §3a):
/// element i < d/2 is paired with i + d/2 and the pair is rotated by a = pos * theta^(-2i/d):
///   y[i] = x[i] cos a - x[i+d/2] sin a,   y[i+d/2] = x[i+d/2] cos a + x[i] sin a.
/// The backward is the transposed rotation (by -a). fp32, like the official codes' fp32 tables.
#pragma once

#include "strata/arch/sfu.hpp"
#include "strata/core/numeric.hpp"

namespace strata::core {

/// sin(pi x) and cos(pi x) (arch::sincospi: exact argument reduction, no local memory).
STRATA_HOST_DEVICE void sin_cos_pi(float x, float& s, float& c) {
  arch::sincospi(x, s, c);
}

/// cos and sin of the rotation of pair i (0 <= i < d/2) at position `pos`, base `theta`: the
/// angle pos * theta^(-2i/d) in half-turns (fp32, as the official codes' fp32 frequency tables).
STRATA_HOST_DEVICE void rope_cos_sin(float pos, int i, int d, float theta, float& c, float& s) {
  const float inv_freq_pi = arch::pow_f(theta, -float(2 * i) / float(d)) * 0.318309886183790672f;
  sin_cos_pi(pos * inv_freq_pi, s, c);
}

/// Rotates one pair (a, b) = (x[i], x[i+d/2]) forward.
STRATA_HOST_DEVICE void rope_rotate(float& a, float& b, float c, float s) {
  const float a0 = a;
  a = a0 * c - b * s;
  b = b * c + a0 * s;
}

/// The transposed rotation of one pair: the backward of rope_rotate.
STRATA_HOST_DEVICE void rope_rotate_back(float& a, float& b, float c, float s) {
  const float a0 = a;
  a = a0 * c + b * s;
  b = b * c - a0 * s;
}

/// RoPE of a whole row of D elements owned by one thread, in place.
template <int D>
STRATA_HOST_DEVICE void rope_forward(float (&x)[D], float pos, float theta) {
  static_assert(D % 2 == 0, "RoPE needs an even head dimension");
  STRATA_UNROLL
  for (int i = 0; i < D / 2; ++i) {
    float c, s;
    rope_cos_sin(pos, i, D, theta, c, s);
    rope_rotate(x[i], x[i + D / 2], c, s);
  }
}

/// Backward of rope_forward in place: dy becomes dx.
template <int D>
STRATA_HOST_DEVICE void rope_backward(float (&dy)[D], float pos, float theta) {
  static_assert(D % 2 == 0, "RoPE needs an even head dimension");
  STRATA_UNROLL
  for (int i = 0; i < D / 2; ++i) {
    float c, s;
    rope_cos_sin(pos, i, D, theta, c, s);
    rope_rotate_back(dy[i], dy[i + D / 2], c, s);
  }
}

}  // namespace strata::core
