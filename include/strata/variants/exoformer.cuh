/// \file
/// ExoFormer's fused token-local pass (SPEC §3a, §3e, decisions §7.4), one launch per layer and
/// direction, blockIdx.y = the stream P in {q, k, v, g}, a group of 8 lanes per (token, head) row:
///
/// forward   A^ = RMSNorm_{gamma_anchor,P}(anchor_P)   (recomputed from the raw anchor projection
///           in every layer: the same bytes as reading a stored A^, and no anchor pass at all)
///           P~ = (lambda1 s1) A^ + (lambda2 s2) P
///           q, k: P~ <- RoPE(RMSNorm_{gamma_q|k}(P~))  (QK-norm after the mix, then RoPE)
///           written once, rounded to T: the attention's q, k, v and the gate's logits g~.
/// backward  dy = dL/dP~ (for q, k back through RoPE and the QK-norm, whose input P~ is
///           recomputed), dP = lambda2 s2 dy written; dA^ = lambda1 s1 dy added to the stack's fp32
///           accumulator (written instead of added by the first layer of the backward, and turned
///           into d anchor_P through the anchor RMSNorm by layer 0, which then writes no
///           accumulator); ds1, ds2 per token (a sum over the stream's heads and d, one lane group
///           owns a token: no atomics); dlambda1, dlambda2, dgamma_q|k and dgamma_anchor as block
///           partials reduced in a fixed order by exo_chunk_sum_kernel (past kExoChunkBlocks
///           blocks) and exo_reduce_kernel (deterministic).
#pragma once

#include <cstdint>

#include "strata/core/anchor_mix.hpp"
#include "strata/core/defaults.hpp"
#include "strata/core/numeric.hpp"
#include "strata/core/options.hpp"
#include "strata/core/rmsnorm.hpp"
#include "strata/core/rope.hpp"
#include "strata/strata.cuh"
#include "strata/variants/lane_row.cuh"
#include "strata/variants/qk_norm_rope.cuh"

namespace strata::variants {

inline constexpr int kExoStreams = 4;  ///< q, k, v, g: the order of the streams and of s's columns

/// A [total, heads, d] operand with (row, head) strides in elements.
struct ExoRows {
  const void* ptr = nullptr;
  int64_t row_stride = 0, head_stride = 0;
};
struct ExoRowsOut {
  void* ptr = nullptr;
  int64_t row_stride = 0, head_stride = 0;
};

/// One stream P of one layer (kernel arguments; device pointers).
struct ExoStream {
  ExoRows p;       ///< the layer's own projection P (T)
  ExoRows anchor;  ///< the raw anchor projection anchor_P = E W_anc (T), shared by all layers
  const float* gamma_anchor = nullptr;  ///< [d] the anchor RMSNorm's gain
  const float* lambda1 = nullptr;       ///< fp32, [heads, d], [heads] or [] (granularity)
  const float* lambda2 = nullptr;
  ExoRowsOut out;  ///< forward: P~ (q, k after QK-norm and RoPE) (T)
  // backward
  ExoRows dout;                  ///< dL/d out (T): the attention's dq, dk, dv, the gate's dg~
  ExoRowsOut dp;                 ///< dL/dP (T), written
  float* danchor_acc = nullptr;  ///< fp32 [total, heads, d] contiguous: sum of the layers' dA^
  ExoRowsOut danchor;            ///< finalize: dL/d anchor_P (T), written
  float* dlambda1 = nullptr;     ///< fp32, lambda's shape, written
  float* dlambda2 = nullptr;
  float* dgamma_anchor = nullptr;  ///< finalize: [d] fp32, written
};

/// One layer of the pass.
struct ExoMix {
  int total = 0, h = 0, h_k = 0;    ///< tokens, heads of q and g, heads of k and v
  const int* cu_seqlens = nullptr;  ///< [b + 1] (RoPE positions); null: fixed-length `seqlen`
  int b = 0, seqlen = 0;
  /// [total] RoPE position of each token (device; decode: its place in the cache), or null:
  /// from cu_seqlens
  const int* positions = nullptr;
  core::MixGranularity granularity = core::MixGranularity::kElementwise;
  bool dynamic = true;  ///< per-token scales s; false: s = 1 (static ExoFormer)
  bool rope = defaults::kRope;
  float rope_theta = paper::kExoFormerRopeTheta;
  float norm_eps = defaults::kRmsNormEps, anchor_eps = defaults::kRmsNormEps;
  ExoStream stream[kExoStreams];
  const float* gamma_q = nullptr;  ///< [d] QK-norm gains
  const float* gamma_k = nullptr;
  const float* s = nullptr;  ///< dynamic: fp32 [total, 8] (q1 q2 k1 k2 v1 v2 g1 g2)
  // backward
  float* ds = nullptr;  ///< dynamic: fp32 [total, 8], written
  float* dgamma_q = nullptr;
  float* dgamma_k = nullptr;
  bool accumulate = false;   ///< add dA^ to danchor_acc (false: the first layer writes it)
  bool finalize = false;     ///< layer 0: write danchor and dgamma_anchor instead of danchor_acc
  float* partial = nullptr;  ///< workspace [4][blocks][exo_partial_floats]: block partials

  STRATA_HOST_DEVICE int heads(int p) const { return p == 1 || p == 2 ? h_k : h; }
};

inline constexpr int kExoLanes = 8;      ///< lanes per (token, head) row
inline constexpr int kExoThreads = 128;  ///< 16 lane groups per block
inline constexpr int kExoTokensPerGroup = 8;
inline constexpr int kExoGroups = kExoThreads / kExoLanes;
inline constexpr int kExoTokensPerBlock = kExoGroups * kExoTokensPerGroup;

/// Floats of one block's partials per stream: dlambda1 and dlambda2 elementwise [h, d] (the
/// reduction sums them to lambda's shape), the QK-norm gain's and the anchor gain's [d].
STRATA_HOST_DEVICE int64_t exo_partial_floats(int h, int d) {
  return 2 * int64_t(h) * d + 2 * int64_t(d);
}
STRATA_HOST_DEVICE int exo_blocks(int total) {
  return (total + kExoTokensPerBlock - 1) / kExoTokensPerBlock;
}
/// The parameter-gradient reduction runs in two stages past this many blocks: the first sums the
/// block partials over chunks of kExoChunkBlocks blocks, coalesced (exo_chunk_sum_kernel), the
/// second sums the chunks per output (exo_reduce_kernel), so no warp walks thousands of blocks
/// one strided float per lane.
inline constexpr int kExoChunkBlocks = 64;
STRATA_HOST_DEVICE int exo_chunks(int blocks) {
  return (blocks + kExoChunkBlocks - 1) / kExoChunkBlocks;
}
/// Floats of the backward's workspace: the block partials [4][blocks][exo_partial_floats], and
/// past kExoChunkBlocks blocks the chunk partials [4][chunks][exo_partial_floats] after them.
STRATA_HOST_DEVICE int64_t exo_workspace_floats(int total, int h, int d) {
  const int blocks = exo_blocks(total);
  const int64_t rows = blocks + (blocks > kExoChunkBlocks ? exo_chunks(blocks) : 0);
  return int64_t(kExoStreams) * rows * exo_partial_floats(h, d);
}

STRATA_EXECUTOR_BEGIN

namespace exo_detail {

template <int D>
using Row = LaneRow<D, kExoLanes>;
inline constexpr int kWarps = kExoThreads / 32;
using Sum = arch::LaneGroupSum<kExoLanes>;

/// The stream of blockIdx.y, copied out of the parameter block with constant indices (a
/// dynamically indexed kernel parameter would be copied to local memory).
STRATA_DEVICE ExoStream pick(const ExoMix& m, int p) {
  switch (p) {
    case 0:
      return m.stream[0];
    case 1:
      return m.stream[1];
    case 2:
      return m.stream[2];
    default:
      return m.stream[3];
  }
}

/// The lane's share of row (t, h) of a stream's strided rows.
template <class T, int D>
STRATA_DEVICE void load(bool valid, const ExoRows& x, int t, int h, const Row<D>& r,
                        float (&v)[D / kExoLanes]) {
  lane_load(valid,
            static_cast<const T*>(x.ptr) + int64_t(t) * x.row_stride + int64_t(h) * x.head_stride,
            r, v);
}
template <class T, int D>
STRATA_DEVICE void store(bool valid, const ExoRowsOut& x, int t, int h, const Row<D>& r,
                         const float (&v)[D / kExoLanes]) {
  if (!valid) return;  // the address only for a row that exists
  lane_store(static_cast<T*>(x.ptr) + int64_t(t) * x.row_stride + int64_t(h) * x.head_stride, r, v);
}

/// Block prologue: the gains (anchor and, for q and k, the QK-norm's; ones otherwise) and the
/// stream's two scales of the block's tokens (ones when static), staged in shared memory.
template <int D>
STRATA_DEVICE void stage_block(const ExoMix& m, const ExoStream& S, int p, int tok0, float* ga_s,
                               float* gn_s, float (*s_s)[2]) {
  const float* gn = p == 0 ? m.gamma_q : p == 1 ? m.gamma_k : nullptr;
  for (int j = int(threadIdx.x); j < D; j += kExoThreads) {
    ga_s[j] = S.gamma_anchor[j];
    gn_s[j] = gn ? gn[j] : 1.f;
  }
  for (int j = int(threadIdx.x); j < 2 * kExoTokensPerBlock; j += kExoThreads) {
    const int t = tok0 + j / 2;
    s_s[j / 2][j % 2] = !m.dynamic ? 1.f : t < m.total ? m.s[int64_t(t) * 8 + 2 * p + j % 2] : 0.f;
  }
}

/// lambda1 and lambda2 of head h expanded to a [D] row in shared memory. The caller brackets it
/// with barriers (the previous head's rows may still be read).
template <int D>
STRATA_DEVICE void stage_lambda(const ExoMix& m, const ExoStream& S, int h, float* l1_s,
                                float* l2_s) {
  for (int j = int(threadIdx.x); j < D; j += kExoThreads) {
    const int64_t i = m.granularity == core::MixGranularity::kElementwise ? int64_t(h) * D + j
                      : m.granularity == core::MixGranularity::kHeadwise  ? h
                                                                          : 0;
    l1_s[j] = S.lambda1[i];
    l2_s[j] = S.lambda2[i];
  }
}

/// A^ of row (t, h): the anchor RMSNorm of the raw anchor projection, which stays in `raw`.
template <class T, int D>
STRATA_DEVICE void anchor_hat(const ExoMix& m, const ExoStream& S, bool valid, int t, int h,
                              const Row<D>& r, const float* ga_s, float (&raw)[D / kExoLanes],
                              float (&a)[D / kExoLanes]) {
  load<T, D>(valid, S.anchor, t, h, r, raw);
  float g[D / kExoLanes];
  lane_gather(ga_s, r, g);
  core::rmsnorm_forward(raw, g, D, m.anchor_eps, a, Sum{});
}

/// Sum of a row fragment over the block's lane groups into dst[D] (fixed order: the four groups
/// of a warp by a butterfly, whose every lane ends with the same sum, then the warps in order).
template <int D>
STRATA_DEVICE void block_sum(const Row<D>& r, const float (&x)[D / kExoLanes], float (*red)[D],
                             float* dst) {
  const int lane = int(threadIdx.x % 32), warp = int(threadIdx.x / 32);
  STRATA_UNROLL
  for (int e = 0; e < D / kExoLanes; ++e) {
    float y = x[e];
    y += arch::shfl_xor(y, 8);
    y += arch::shfl_xor(y, 16);
    if (lane < kExoLanes) red[warp][r.col(e)] = y;
  }
  __syncthreads();
  for (int j = int(threadIdx.x); j < D; j += kExoThreads) {
    float acc = 0.f;
    for (int w = 0; w < kWarps; ++w) acc += red[w][j];
    dst[j] = acc;
  }
  __syncthreads();
}

}  // namespace exo_detail

/// Forward pass of one layer, one stream per blockIdx.y. Every lane runs every iteration (group
/// sums are warp shuffles, heads share barriers); tokens past the end compute on zeros and store
/// nothing.
template <class T, int D>
__global__ void __launch_bounds__(kExoThreads) exo_mix_forward_kernel(const ExoMix m) {
  using namespace exo_detail;
  constexpr int N = D / kExoLanes;
  __shared__ float ga_s[D], gn_s[D], l1_s[D], l2_s[D];
  __shared__ float s_s[kExoTokensPerBlock][2];
  const int p = int(blockIdx.y);
  const ExoStream S = pick(m, p);
  const int H = m.heads(p);
  const int tok0 = int(blockIdx.x) * kExoTokensPerBlock;
  const int grp = int(threadIdx.x) / kExoLanes;
  const Row<D> r{int(threadIdx.x % kExoLanes) * (D / (2 * kExoLanes))};
  stage_block<D>(m, S, p, tok0, ga_s, gn_s, s_s);
  for (int h = 0; h < H; ++h) {
    __syncthreads();
    stage_lambda<D>(m, S, h, l1_s, l2_s);
    __syncthreads();
    float l1[N], l2[N];
    lane_gather(l1_s, r, l1), lane_gather(l2_s, r, l2);
    for (int i = 0; i < kExoTokensPerGroup; ++i) {
      const int j = grp * kExoTokensPerGroup + i, t = tok0 + j;
      const bool valid = t < m.total;
      const int tc = valid ? t : m.total - 1;
      float raw[N], a[N], x[N], y[N];
      anchor_hat<T, D>(m, S, valid, tc, h, r, ga_s, raw, a);
      load<T, D>(valid, S.p, tc, h, r, x);
      core::anchor_mix_forward(a, x, l1, l2, s_s[j][0], s_s[j][1], y);
      if (p < 2) {
        float g[N];
        lane_gather(gn_s, r, g);
        core::rmsnorm_forward(y, g, D, m.norm_eps, y, Sum{});
        if (m.rope)
          lane_rope<false>(y, r,
                           float(sequence_position(m.positions, m.cu_seqlens, m.b, m.seqlen, tc)),
                           m.rope_theta);
      }
      store<T, D>(valid, S.out, tc, h, r, y);
    }
  }
}

/// Backward pass of one layer (after the gated attention's backward of the same layer).
template <class T, int D>
__global__ void __launch_bounds__(kExoThreads) exo_mix_backward_kernel(const ExoMix m) {
  using namespace exo_detail;
  constexpr int N = D / kExoLanes;
  __shared__ float ga_s[D], gn_s[D], l1_s[D], l2_s[D];
  __shared__ float s_s[kExoTokensPerBlock][2];
  __shared__ float red[kWarps][D];
  __shared__ float ds_s[kExoTokensPerBlock][2];  // each row's entries owned by its group's lane 0
  // dgamma_q|k and dgamma_anchor per lane group (kept here, not in registers: the row already
  // holds a dozen fragments)
  __shared__ float dg_s[2][kExoGroups][D];
  const int p = int(blockIdx.y);
  const ExoStream S = pick(m, p);
  const int H = m.heads(p);
  const int tok0 = int(blockIdx.x) * kExoTokensPerBlock;
  const int grp = int(threadIdx.x) / kExoLanes;
  const Row<D> r{int(threadIdx.x % kExoLanes) * (D / (2 * kExoLanes))};
  float* part = m.partial + (int64_t(p) * gridDim.x + blockIdx.x) * exo_partial_floats(m.h, D);
  stage_block<D>(m, S, p, tok0, ga_s, gn_s, s_s);
  for (int j = int(threadIdx.x); j < 2 * kExoGroups * D; j += kExoThreads)
    (&dg_s[0][0][0])[j] = 0.f;
  const bool owner = threadIdx.x % kExoLanes == 0;
  if (owner)
    for (int i = 0; i < kExoTokensPerGroup; ++i)
      ds_s[grp * kExoTokensPerGroup + i][0] = ds_s[grp * kExoTokensPerGroup + i][1] = 0.f;
  for (int h = 0; h < H; ++h) {
    __syncthreads();
    stage_lambda<D>(m, S, h, l1_s, l2_s);
    __syncthreads();
    float l1[N], l2[N], dl1[N] = {}, dl2[N] = {};
    lane_gather(l1_s, r, l1), lane_gather(l2_s, r, l2);
    for (int i = 0; i < kExoTokensPerGroup; ++i) {
      const int j = grp * kExoTokensPerGroup + i, t = tok0 + j;
      const bool valid = t < m.total;
      const int tc = valid ? t : m.total - 1;
      const float s1 = s_s[j][0], s2 = s_s[j][1];
      float raw[N], a[N], x[N], dy[N];
      anchor_hat<T, D>(m, S, valid, tc, h, r, ga_s, raw, a);
      load<T, D>(valid, S.p, tc, h, r, x);
      load<T, D>(valid, S.dout, tc, h, r, dy);  // zero past the end: adds nothing anywhere
      if (p < 2) {  // back through RoPE and the QK-norm, whose input P~ is recomputed
        if (m.rope)
          lane_rope<true>(dy, r,
                          float(sequence_position(m.positions, m.cu_seqlens, m.b, m.seqlen, tc)),
                          m.rope_theta);
        float y[N], g[N], dg[N] = {};
        core::anchor_mix_forward(a, x, l1, l2, s1, s2, y);
        lane_gather(gn_s, r, g);
        core::rmsnorm_backward(y, g, dy, D, m.norm_eps, dy, dg, Sum{});
        lane_accumulate(dg_s[0][grp], r, dg);
      }
      float dp[N], da[N] = {};
      if (m.accumulate && valid) {  // the later layers' dA^, contiguous [total, heads, d]
        const float* acc = S.danchor_acc + (int64_t(tc) * H + h) * D;
        STRATA_UNROLL
        for (int e = 0; e < N; ++e) da[e] = acc[r.col(e)];
      }
      float ds1 = 0.f, ds2 = 0.f;
      core::anchor_mix_backward(a, x, l1, l2, s1, s2, dy, dp, da, dl1, dl2, ds1, ds2);
      ds1 = Sum{}(ds1), ds2 = Sum{}(ds2);  // the row's share of ds, summed over heads below
      if (owner) ds_s[j][0] += ds1, ds_s[j][1] += ds2;
      store<T, D>(valid, S.dp, tc, h, r, dp);
      if (m.finalize) {  // the stack's total dA^ through the anchor RMSNorm
        float g[N], dg[N] = {};
        lane_gather(ga_s, r, g);
        core::rmsnorm_backward(raw, g, da, D, m.anchor_eps, da, dg, Sum{});
        lane_accumulate(dg_s[1][grp], r, dg);
        store<T, D>(valid, S.danchor, tc, h, r, da);
      } else if (valid) {
        float* w = S.danchor_acc + (int64_t(tc) * H + h) * D;
        STRATA_UNROLL
        for (int e = 0; e < N; ++e) w[r.col(e)] = da[e];
      }
    }
    block_sum<D>(r, dl1, red, part + int64_t(h) * D);
    block_sum<D>(r, dl2, red, part + int64_t(m.h + h) * D);
  }
  // uniform over the block: no barrier below is skipped by some threads
  __syncthreads();
  for (int j = int(threadIdx.x); j < 2 * D; j += kExoThreads) {  // the groups in order
    float acc = 0.f;
    for (int w = 0; w < kExoGroups; ++w) acc += dg_s[j / D][w][j % D];
    part[2 * int64_t(m.h) * D + j] = acc;  // zero where unused (k, v, g; not finalize)
  }
  if (!m.dynamic || !owner) return;
  for (int i = 0; i < kExoTokensPerGroup; ++i) {
    const int j = grp * kExoTokensPerGroup + i, t = tok0 + j;
    if (t >= m.total) break;
    m.ds[int64_t(t) * 8 + 2 * p] = ds_s[j][0];
    m.ds[int64_t(t) * 8 + 2 * p + 1] = ds_s[j][1];
  }
}

/// Number of reduced outputs of stream p: dlambda1 and dlambda2 (lambda's shape), dgamma_q|k
/// (q, k) and dgamma_anchor (finalize), each a sum of the partials of every block.
STRATA_HOST_DEVICE int exo_reduce_outputs(const ExoMix& m, int p, int d) {
  const int H = m.heads(p);
  const int lam = m.granularity == core::MixGranularity::kElementwise ? H * d
                  : m.granularity == core::MixGranularity::kHeadwise  ? H
                                                                      : 1;
  return 2 * lam + (p < 2 ? d : 0) + (m.finalize ? d : 0);
}
inline constexpr int kExoReduceWarps = 4;

/// One warp per output: the sum over blocks (and, for headwise or scalar lambda, over the
/// elementwise partials it covers) in a fixed order, then a butterfly. Deterministic.
template <int D>
__global__ void __launch_bounds__(32 * kExoReduceWarps)
    exo_reduce_kernel(const ExoMix m, int blocks) {
  const int p = int(blockIdx.y);
  const ExoStream S = exo_detail::pick(m, p);
  const int H = m.heads(p);
  const int o = int(blockIdx.x) * kExoReduceWarps + int(threadIdx.x / 32);
  const int lane = int(threadIdx.x % 32);
  const int lam = m.granularity == core::MixGranularity::kElementwise ? H * D
                  : m.granularity == core::MixGranularity::kHeadwise  ? H
                                                                      : 1;
  const int span = m.granularity == core::MixGranularity::kElementwise ? 1
                   : m.granularity == core::MixGranularity::kHeadwise  ? D
                                                                       : H * D;
  int64_t off = 0;
  int len = 1;
  float* dst = nullptr;
  if (o < 2 * lam) {
    const int which = o / lam, k = o % lam;
    off = int64_t(which) * m.h * D + int64_t(k) * span, len = span;
    dst = (which == 0 ? S.dlambda1 : S.dlambda2) + k;
  } else if (p < 2 && o < 2 * lam + D) {
    off = 2 * int64_t(m.h) * D + (o - 2 * lam);
    dst = (p == 0 ? m.dgamma_q : m.dgamma_k) + (o - 2 * lam);
  } else {
    const int k = o - 2 * lam - (p < 2 ? D : 0);
    off = 2 * int64_t(m.h) * D + D + k;
    dst = m.finalize && k < D ? S.dgamma_anchor + k : nullptr;  // past the last output: idle
  }
  const int64_t stride = exo_partial_floats(m.h, D);
  const float* base = m.partial + int64_t(p) * blocks * stride + off;
  float acc = 0.f;
  if (dst)
    for (int64_t i = lane; i < int64_t(blocks) * len; i += 32)
      acc += base[(i / len) * stride + i % len];
  acc = arch::warp_sum<32>(acc);
  if (dst && lane == 0) *dst = acc;
}

inline constexpr int kExoColumnThreads = 256;

/// The reduction's first stage (more than kExoChunkBlocks blocks): stream blockIdx.z's block
/// partials summed over chunk blockIdx.y of kExoChunkBlocks blocks, in block order, one thread per
/// partial float — consecutive threads read consecutive floats of a block's partials. `chunked`
/// receives [4][chunks][exo_partial_floats], which exo_reduce_kernel then sums as its blocks.
template <int D>
__global__ void __launch_bounds__(kExoColumnThreads)
    exo_chunk_sum_kernel(const float* partial, float* chunked, int h, int blocks) {
  const int64_t stride = exo_partial_floats(h, D);
  const int64_t i = int64_t(blockIdx.x) * kExoColumnThreads + threadIdx.x;
  if (i >= stride) return;
  const int c = int(blockIdx.y), p = int(blockIdx.z);
  const int b0 = c * kExoChunkBlocks;
  const int b1 = b0 + kExoChunkBlocks < blocks ? b0 + kExoChunkBlocks : blocks;
  const float* src = partial + (int64_t(p) * blocks + b0) * stride + i;
  float acc = 0.f;
  for (int b = b0; b < b1; ++b, src += stride) acc += *src;
  chunked[(int64_t(p) * exo_chunks(blocks) + c) * stride + i] = acc;
}

STRATA_EXECUTOR_END
}  // namespace strata::variants
