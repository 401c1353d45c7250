/// \file
/// The token-local QK-norm + RoPE pass (Qwen3 order, used by Gated Attention; ExoFormer and
/// Depth-Attention apply the same two steps): per (token, head) row of q or k,
///   y = RoPE_pos(RMSNorm_gamma(x)),  pos = the token's position in its sequence,
/// one fp32 pass and one rounding to T, a quad of lanes per row.
/// Backward: dx = RMSNorm'(RoPE^T(dy)) per row, and dgamma = sum over rows of RoPE^T(dy) o x^ in
/// two fixed-order reductions (each quad over its rows in registers, then over quads):
/// deterministic, no atomics, and each operand read once.
#pragma once

#include <cstdint>

#include "strata/core/defaults.hpp"
#include "strata/core/numeric.hpp"
#include "strata/core/rmsnorm.hpp"
#include "strata/core/rope.hpp"
#include "strata/strata.cuh"
#include "strata/variants/lane_row.cuh"

namespace strata::variants {

/// Options of the pass (Depth-Attention's local pass, Gated Attention's QK-norm + RoPE): the
/// defaults of strata/core/defaults.hpp, so QK-norm runs only when asked.
struct QkNormRopeOptions {
  bool qk_norm = defaults::kQkNorm;
  bool rope = defaults::kRope;
  float eps = defaults::kRmsNormEps;                   ///< QK-norm's RMSNorm
  float rope_theta = paper::kDepthAttentionRopeTheta;  ///< = paper::kGatedAttentionRopeTheta
};

/// One side (q or k) of the pass: [total, heads, d] operands with (row, head) strides in
/// elements. Positions restart at 0 in every sequence of cu_seqlens (or every `seqlen` tokens of a
/// fixed-length batch when cu_seqlens is null).
struct QkRows {
  const void* x = nullptr;  ///< the raw projection (T)
  int64_t x_row_stride = 0, x_head_stride = 0;
  void* y = nullptr;  ///< forward output (T)
  int64_t y_row_stride = 0, y_head_stride = 0;
  int heads = 0, total = 0;
  const int* cu_seqlens = nullptr;  ///< [b + 1], device
  int b = 0, seqlen = 0;
  const int* positions = nullptr;  ///< [total] RoPE position of each token (device), or null
  const float* gamma = nullptr;    ///< [d] fp32, the norm's gain (qk_norm)
  // backward
  const void* dy = nullptr;  ///< dL/dy (T)
  int64_t dy_row_stride = 0, dy_head_stride = 0;
  void* dx = nullptr;  ///< dL/dx (T), written
  int64_t dx_row_stride = 0, dx_head_stride = 0;
  float* dgamma = nullptr;   ///< [d] fp32, written (qk_norm)
  float* partial = nullptr;  ///< workspace [blocks, d]: the dgamma of each block's rows

  STRATA_HOST_DEVICE int64_t rows() const { return int64_t(total) * heads; }
};

/// Position of packed token `t` within its sequence: positions[t] when given (decode and chunked
/// prefill: a new token's place in its cache, vLLM's `positions`), else from cu_seqlens [b + 1]
/// (device), or every `seqlen` tokens of a fixed-length batch when cu_seqlens is null.
STRATA_HOST_DEVICE int sequence_position(const int* positions, const int* cu_seqlens, int b,
                                         int seqlen, int t) {
  if (positions) return positions[t];
  if (!cu_seqlens) return seqlen > 0 ? t % seqlen : 0;
  int lo = 0, hi = b - 1;  // the last sequence starting at or before t (empty ones skipped)
  while (lo < hi) {
    const int mid = (lo + hi + 1) / 2;
    if (cu_seqlens[mid] <= t)
      lo = mid;
    else
      hi = mid - 1;
  }
  return t - cu_seqlens[lo];
}

STRATA_HOST_DEVICE int token_position(const QkRows& s, int t) {
  return sequence_position(s.positions, s.cu_seqlens, s.b, s.seqlen, t);
}

/// A row is split over a quad of lanes so that D = 128 fits in registers: lane q of the quad owns
/// columns [q D/8, (q+1) D/8) and their RoPE partners D/2 + the same, as elements [0, D/8) and
/// [D/8, D/4) of its fragment; the quad sums with LaneGroupSum<4>.
template <int D>
struct QuadRow {
  static constexpr int kN = D / 4, kHalf = D / 8;
  int col0;  ///< q D/8
  STRATA_HOST_DEVICE int col(int e) const {
    return e < kHalf ? col0 + e : D / 2 + col0 + e - kHalf;
  }
};

/// Threads per block of the row kernels, and rows each quad of lanes walks (256 rows per block).
/// The gains are staged once per block in shared memory and the dgamma partials of the block's
/// quads are summed there, so per 256 rows the pass reads the gains once and writes (and later
/// reads) one dgamma partial: within 1% of the minimum bytes (tests/traffic).
inline constexpr int kQkNormThreads = 128;
inline constexpr int kQkNormRowsPerQuad = 8;
inline constexpr int kQkNormQuads = kQkNormThreads / 4;
inline constexpr int kQkNormRowsPerBlock = kQkNormQuads * kQkNormRowsPerQuad;

STRATA_EXECUTOR_BEGIN

template <class T, int D>
STRATA_DEVICE void load_quad(const void* base, int64_t row_stride, int64_t head_stride, int t,
                             int h, const QuadRow<D>& q, float (&x)[D / 4]) {
  const T* p = static_cast<const T*>(base) + int64_t(t) * row_stride + int64_t(h) * head_stride;
  STRATA_UNROLL
  for (int e = 0; e < D / 4; ++e) x[e] = core::to_float(p[q.col(e)]);
}

template <class T, int D>
STRATA_DEVICE void store_quad(void* base, int64_t row_stride, int64_t head_stride, int t, int h,
                              const QuadRow<D>& q, const float (&x)[D / 4]) {
  T* p = static_cast<T*>(base) + int64_t(t) * row_stride + int64_t(h) * head_stride;
  STRATA_UNROLL
  for (int e = 0; e < D / 4; ++e) p[q.col(e)] = core::from_float<T>(x[e]);
}

/// RoPE (or its transpose) of the quad's pairs, in place.
template <int D, bool kBackward>
STRATA_DEVICE void rope_quad(float (&x)[D / 4], const QuadRow<D>& q, float pos, float theta) {
  STRATA_UNROLL
  for (int e = 0; e < D / 8; ++e) {
    float c, s;
    core::rope_cos_sin(pos, q.col0 + e, D, theta, c, s);
    if (kBackward)
      core::rope_rotate_back(x[e], x[e + D / 8], c, s);
    else
      core::rope_rotate(x[e], x[e + D / 8], c, s);
  }
}

/// Stages the gains (or ones without qk_norm) in shared memory; then the quad's share of them.
template <int D>
STRATA_DEVICE void load_gamma(const QkRows& s, const QkNormRopeOptions& o, const QuadRow<D>& q,
                              float* staged, float (&g)[D / 4]) {
  for (int j = int(threadIdx.x); j < D; j += kQkNormThreads)
    staged[j] = o.qk_norm ? s.gamma[j] : 1.f;
  __syncthreads();
  STRATA_UNROLL
  for (int e = 0; e < D / 4; ++e) g[e] = staged[q.col(e)];
}

/// The row a quad's iteration i works on; rows past the end are clamped (and not loaded).
struct QuadStep {
  bool valid;
  int t, h;
};
STRATA_HOST_DEVICE QuadStep quad_step(const QkRows& s, int64_t r0, int i) {
  const int64_t rows = s.rows();
  const bool valid = r0 + i < rows;
  const int64_t row = valid ? r0 + i : rows - 1;
  return {valid, int(row / s.heads), int(row % s.heads)};
}

template <class T, int D>
STRATA_DEVICE void load_quad_or_zero(bool valid, const void* base, int64_t row_stride,
                                     int64_t head_stride, int t, int h, const QuadRow<D>& q,
                                     float (&x)[D / 4]) {
  if (valid) {
    load_quad<T, D>(base, row_stride, head_stride, t, h, q, x);
  } else {
    STRATA_UNROLL
    for (int e = 0; e < D / 4; ++e) x[e] = 0.f;
  }
}

/// y = RoPE(RMSNorm(x)): each quad of lanes walks kQkNormRowsPerQuad rows. Every lane runs every
/// iteration (the quad sums are warp shuffles, and the block shares a barrier): rows past the end
/// compute on zeros and store nothing.
template <class T, int D>
__global__ void __launch_bounds__(kQkNormThreads)
    qk_norm_rope_forward_kernel(const QkRows s, const QkNormRopeOptions o) {
  __shared__ float staged[D];
  const QuadRow<D> q{int(threadIdx.x % 4) * (D / 8)};
  float g[D / 4];
  load_gamma(s, o, q, staged, g);
  const int64_t r0 =
      int64_t(blockIdx.x) * kQkNormRowsPerBlock + (threadIdx.x / 4) * kQkNormRowsPerQuad;
  for (int i = 0; i < kQkNormRowsPerQuad; ++i) {
    const QuadStep st = quad_step(s, r0, i);
    float x[D / 4];
    load_quad_or_zero<T, D>(st.valid, s.x, s.x_row_stride, s.x_head_stride, st.t, st.h, q, x);
    if (o.qk_norm) core::rmsnorm_forward(x, g, D, o.eps, x, arch::LaneGroupSum<4>{});
    if (o.rope) rope_quad<D, false>(x, q, float(token_position(s, st.t)), o.rope_theta);
    if (st.valid) store_quad<T, D>(s.y, s.y_row_stride, s.y_head_stride, st.t, st.h, q, x);
  }
}

/// dx of each row a quad walks; the block's dgamma partial over its rows (summed over its quads
/// in order in shared memory) goes to s.partial[block][d].
template <class T, int D>
__global__ void __launch_bounds__(kQkNormThreads)
    qk_norm_rope_backward_kernel(const QkRows s, const QkNormRopeOptions o) {
  __shared__ float staged[D];
  __shared__ float quad_dg[kQkNormQuads][D];
  const QuadRow<D> q{int(threadIdx.x % 4) * (D / 8)};
  float g[D / 4], dg[D / 4] = {};
  load_gamma(s, o, q, staged, g);
  const int64_t r0 =
      int64_t(blockIdx.x) * kQkNormRowsPerBlock + (threadIdx.x / 4) * kQkNormRowsPerQuad;
  for (int i = 0; i < kQkNormRowsPerQuad; ++i) {
    const QuadStep st = quad_step(s, r0, i);
    float dy[D / 4];  // zero past the end: adds nothing to dgamma
    load_quad_or_zero<T, D>(st.valid, s.dy, s.dy_row_stride, s.dy_head_stride, st.t, st.h, q, dy);
    if (o.rope) rope_quad<D, true>(dy, q, float(token_position(s, st.t)), o.rope_theta);
    if (o.qk_norm) {
      float x[D / 4];
      load_quad_or_zero<T, D>(st.valid, s.x, s.x_row_stride, s.x_head_stride, st.t, st.h, q, x);
      core::rmsnorm_backward(x, g, dy, D, o.eps, dy, dg, arch::LaneGroupSum<4>{});
    }
    if (st.valid) store_quad<T, D>(s.dx, s.dx_row_stride, s.dx_head_stride, st.t, st.h, q, dy);
  }
  if (!o.qk_norm) return;  // uniform over the block: no barrier below is skipped by some threads
  STRATA_UNROLL
  for (int e = 0; e < D / 4; ++e) quad_dg[threadIdx.x / 4][q.col(e)] = dg[e];
  __syncthreads();
  for (int j = int(threadIdx.x); j < D; j += kQkNormThreads) {
    float acc = 0.f;
    for (int w = 0; w < kQkNormQuads; ++w) acc += quad_dg[w][j];
    s.partial[int64_t(blockIdx.x) * D + j] = acc;
  }
}

/// dgamma[j] = sum over quads of partial[quad][j], in quad order (deterministic).
template <int D>
__global__ void __launch_bounds__(D)
    qk_norm_dgamma_reduce_kernel(const float* partial, int quads, float* dgamma) {
  const int j = int(threadIdx.x);
  float acc = 0.f;
  for (int c = 0; c < quads; ++c) acc += partial[int64_t(c) * D + j];
  dgamma[j] = acc;
}

STRATA_EXECUTOR_END
}  // namespace strata::variants
