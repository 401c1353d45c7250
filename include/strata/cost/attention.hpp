/// \file
/// FLOPs of masked sequence attention, in two flavours that answer different questions.
///
///  * The FlashAttention convention (SPEC section 7.8): forward = 4·B·T²·H·d (QKᵀ and PV, two
///    FLOPs per multiply-add), halved for causal; backward = 2.5 × forward (five matmuls instead of
///    two: the recomputed S, dV, dP, dQ, dK). This is what benchmarks report as TFLOP/s, so that
///    numbers compare with FlashAttention's own tables. It counts T²/2 for causal, not T(T+1)/2,
///    and knows nothing of sliding windows or of Tq ≠ Tk.
///  * The exact count of connected (query, key) pairs for a packed variable-length batch with a
///    causal mask and/or a left window, using the mask of tests/oracle/CONTRACT.md (bottom-right
///    alignment, offset o = Tk − Tq): query i and key j are connected iff
///    (!causal || j ≤ i + o) && (window_left < 0 || j ≥ i + o − window_left).
///    Each connected pair costs 4·H·d forward FLOPs (2·d for its score, 2·d for its share of PV per
///    query head; GQA does not change this, the query heads do the work), 2.5 × that backward. This
///    is the arithmetic a kernel that skips fully masked tiles approaches.
///
/// Host C++ only, header-only, constexpr.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

namespace strata::cost {

// ---- FlashAttention convention (SPEC 7.8) ------------------------------------------------------

/// Forward FLOPs by FlashAttention's convention: 4·B·T²·H·d, halved when causal (SPEC 7.8).
constexpr double attention_forward_flops(int64_t batch, int64_t seqlen, int64_t num_heads,
                                         int64_t head_dim, bool causal) {
  const double f =
      4.0 * double(batch) * double(seqlen) * double(seqlen) * double(num_heads) * double(head_dim);
  return causal ? f / 2 : f;
}

/// Backward FLOPs by FlashAttention's convention: 2.5 × the forward (SPEC 7.8).
constexpr double attention_backward_flops(int64_t batch, int64_t seqlen, int64_t num_heads,
                                          int64_t head_dim, bool causal) {
  return 2.5 * attention_forward_flops(batch, seqlen, num_heads, head_dim, causal);
}

/// Forward FLOPs by FlashAttention's convention for a packed batch (`cu_seqlens`, B+1 offsets,
/// queries and keys alike): the sum over sequences of 4·T_b²·H·d, halved when causal.
constexpr double attention_forward_flops_varlen(std::span<const int32_t> cu_seqlens,
                                                int64_t num_heads, int64_t head_dim, bool causal) {
  double f = 0;
  for (size_t b = 0; b + 1 < cu_seqlens.size(); ++b)
    f += attention_forward_flops(1, int64_t(cu_seqlens[b + 1]) - cu_seqlens[b], num_heads, head_dim,
                                 causal);
  return f;
}

// ---- exact connected pairs ---------------------------------------------------------------------

namespace detail {
/// Σ_{y ≤ n} clamp(y, 0, m) over the integers (0 for n ≤ 0).
constexpr int64_t clamp_prefix(int64_t n, int64_t m) {
  if (n <= 0) return 0;
  if (n <= m) return n * (n + 1) / 2;
  return m * (m + 1) / 2 + (n - m) * m;
}
/// Σ_{y = lo}^{hi} clamp(y, 0, m) (0 when hi < lo).
constexpr int64_t clamp_sum(int64_t lo, int64_t hi, int64_t m) {
  return hi < lo ? 0 : clamp_prefix(hi, m) - clamp_prefix(lo - 1, m);
}
}  // namespace detail

/// Exact number of connected (query, key) pairs of one sequence with `tq` queries and `tk` keys
/// under the CONTRACT.md mask (bottom-right aligned causal, `window_left` < 0 = unlimited). O(1).
///
/// Why it is closed-form: with x = i + o, the keys of query i are {j < tk : j ≤ x} minus
/// {j < tk : j < x − window_left}, the second set contained in the first, so the count is
/// clamp(x + 1, 0, tk) − clamp(x − window_left, 0, tk) (tk instead of the first term when not
/// causal), and sums of a clamped linear function have a closed form.
constexpr int64_t connected_pairs(int64_t tq, int64_t tk, bool causal, int64_t window_left) {
  if (tq <= 0 || tk <= 0) return 0;
  const int64_t o = tk - tq;
  // Σ_i F(i + o): causal F(x) = clamp(x + 1, 0, tk), else tk
  const int64_t f = causal ? detail::clamp_sum(o + 1, o + tq, tk) : tq * tk;
  // Σ_i G(i + o): G(x) = clamp(x − w, 0, tk) with a window, else 0
  const int64_t g =
      window_left < 0 ? 0 : detail::clamp_sum(o - window_left, o + tq - 1 - window_left, tk);
  return f - g;
}

/// Exact connected pairs of a packed batch: sequence b has queries cu_seqlens_q[b]..[b+1] and keys
/// cu_seqlens_k[b]..[b+1] (both B+1 entries; lengths may be 0).
constexpr int64_t connected_pairs_varlen(std::span<const int32_t> cu_seqlens_q,
                                         std::span<const int32_t> cu_seqlens_k, bool causal,
                                         int64_t window_left) {
  int64_t n = 0;
  for (size_t b = 0; b + 1 < cu_seqlens_q.size() && b + 1 < cu_seqlens_k.size(); ++b)
    n += connected_pairs(int64_t(cu_seqlens_q[b + 1]) - cu_seqlens_q[b],
                         int64_t(cu_seqlens_k[b + 1]) - cu_seqlens_k[b], causal, window_left);
  return n;
}

/// Exact forward FLOPs of `pairs` connected pairs: 4·pairs·H·d (H = query heads).
constexpr double attention_forward_flops_exact(int64_t pairs, int64_t num_heads, int64_t head_dim) {
  return 4.0 * double(pairs) * double(num_heads) * double(head_dim);
}

/// Exact backward FLOPs of `pairs` connected pairs: 2.5 × the forward (five matmuls vs two).
constexpr double attention_backward_flops_exact(int64_t pairs, int64_t num_heads,
                                                int64_t head_dim) {
  return 2.5 * attention_forward_flops_exact(pairs, num_heads, head_dim);
}

}  // namespace strata::cost
