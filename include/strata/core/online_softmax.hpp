/// \file
/// Online softmax state of one row (FlashAttention's running max and sum), host+device.
///
/// Scores are in base-2 units: a kernel multiplies q.k by softmax_scale * log2(e) once (folded
/// into the exponent's FFMA), so every exponential is an exp2 (one MUFU.EX2 on the GPU). The state
/// is the running maximum m and the running sum l = sum_j 2^(s_j - m). Streaming a tile of scores
/// is: raise the maximum (rescaling l and the caller's output accumulators by the returned factor),
/// add 2^(s - m) of each score, then, after the last tile, finalize: divide the accumulators by l
/// and report the log-sum-exp.
///
/// A row whose scores are all masked (-inf) keeps m = -inf and l = 0; every factor is then 0,
/// never NaN, and finalize() yields a zero output and LSE = -inf.
#pragma once

#include <cmath>

#include "strata/arch/sfu.hpp"
#include "strata/config.hpp"

namespace strata::core {

/// ln(2): converts a base-2 log-sum-exp to the natural one.
inline constexpr float kLn2 = 0.693147180559945309f;
/// log2(e): folded into the softmax scale so that exp(x) = exp2(x * log2(e)).
inline constexpr float kLog2e = 1.442695040888963407f;

/// 2^(x scale - offset) of a raw score x, the way PyTorch builds FlashAttention (UNFUSE_FMA): the
/// product rounded first, then the difference (FMUL, FADD, one ex2), so that the row's maximum,
/// whose offset is that same rounded product, weighs exactly 1. A fused FMA leaves the product's
/// rounding error in the exponent (pytorch/pytorch#121558): with logits of 1e4 that is 2^-11, an
/// output ulp off in a one-hot row. A -inf score weighs 0. Host builds of the simulator compile
/// with -ffp-contract=off, so the host rounds the product too.
STRATA_HOST_DEVICE float exp2_scaled(float x, float scale, float offset) {
#if STRATA_DEVICE_PASS
  return arch::ex2_ftz(__fmul_rn(x, scale) - offset);
#else
  return arch::ex2_ftz(x * scale - offset);
#endif
}

/// Running max / sum of one softmax row in base-2 units.
struct OnlineSoftmax {
  float m = -INFINITY;  ///< running maximum of the scores seen (base-2 units)
  float l = 0.f;        ///< running sum of 2^(s - m)

  /// Raises the running maximum to cover `tile_max` and returns the factor by which l has been,
  /// and the caller's output accumulators must be, rescaled (0 if nothing was seen before).
  STRATA_HOST_DEVICE float raise_max(float tile_max) {
    const float m_new = m > tile_max ? m : tile_max;
    const float alpha = m == -INFINITY ? 0.f : arch::ex2_ftz(m - m_new);  // m_new >= m > -inf
    l *= alpha;
    m = m_new;
    return alpha;
  }
  /// What a score's exponent subtracts: m, or 0 while the row has seen only masked scores (then
  /// every score so far is -inf, and 2^(-inf - 0) = 0 where -inf - -inf would be NaN). A kernel
  /// reads it once per row and tile and computes each weight as exp2_scaled(raw, scale,
  /// exp_offset()) (FlashAttention's max_scaled).
  STRATA_HOST_DEVICE float exp_offset() const { return m == -INFINITY ? 0.f : m; }
  /// 2^(s - m) of a score under the current maximum (0 for a masked score or an empty row).
  STRATA_HOST_DEVICE float weight(float s) const { return arch::ex2_ftz(s - exp_offset()); }
  /// Adds weights already computed with weight() to the running sum.
  STRATA_HOST_DEVICE void add(float weight_sum) { l += weight_sum; }
  /// One score at a time: raise_max, then add its weight. Returns the rescale factor.
  STRATA_HOST_DEVICE float update(float s, float& p) {
    const float alpha = raise_max(s);
    p = weight(s);
    add(p);
    return alpha;
  }

  /// Merges another partial state of the same row (split-KV): after the call this state covers
  /// both. `scale_self` and `scale_other` rescale the two partial output accumulators, which are
  /// then summed.
  STRATA_HOST_DEVICE void merge(const OnlineSoftmax& o, float& scale_self, float& scale_other) {
    const float m_new = m > o.m ? m : o.m;
    scale_self = m == -INFINITY ? 0.f : arch::ex2_ftz(m - m_new);
    scale_other = o.m == -INFINITY ? 0.f : arch::ex2_ftz(o.m - m_new);
    l = l * scale_self + o.l * scale_other;
    m = m_new;
  }

  /// 1 / l, the factor that normalises the output accumulators; 0 for an empty row.
  STRATA_HOST_DEVICE float inv_sum() const { return l > 0.f ? 1.f / l : 0.f; }
  /// Natural log-sum-exp of the row's scores in natural units (the scores were multiplied by
  /// log2(e) to get base-2 units): ln(sum_j e^(x_j)) = ln2 * (m + log2 l); -inf for an empty row.
  STRATA_HOST_DEVICE float lse() const { return l > 0.f ? kLn2 * (m + arch::lg2(l)) : -INFINITY; }
};

}  // namespace strata::core
