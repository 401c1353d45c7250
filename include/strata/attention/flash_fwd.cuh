/// \file
/// Flash-attention forward on tensor cores, the sm_80 path (cp.async + ldmatrix + mma.sync, which
/// sm_86/89/90 run too): one block of 4 warps owns a tile of 128 query rows of one (sequence,
/// head), 32 per warp; K/V tiles of 64 keys (32 at d = 128) stream through one shared-memory stage
/// each, V's copy overlapping S = Q K^T and the next K's overlapping O += P V; every warp computes
/// S and O += P V for its two m16 tiles with mma.m16n8k16, the online softmax in registers in
/// base-2 units (the scale folded into log2(e)), causal / window tiles skipped and fully connected
/// tiles left unmasked, and the natural-log LSE written per row.
#pragma once

#include <cstdint>
#include <cstring>

#include "strata/attention/mask.hpp"
#include "strata/attention/params.hpp"
#include "strata/attention/tile_io.cuh"
#include "strata/attention/variant.hpp"
#include "strata/attention/warp_gemm.cuh"
#include "strata/core/numeric.hpp"
#include "strata/core/online_softmax.hpp"
#include "strata/strata.cuh"

namespace strata::attention {

/// Tile shape of the forward kernel for head dimension D (a constexpr table, testable on the host).
///
/// Each warp owns kMTiles = 2 m16 tiles (32 query rows), so every K or V fragment read from
/// shared memory feeds two mma: 1/32 byte per FLOP instead of 1/16, under an A100 SM's ratio of
/// shared-memory bandwidth to tensor throughput (128 B/clk : 2048 FLOP/clk) instead of at it.
/// K and V have one shared-memory stage each (FlashAttention-2's pipeline: V of tile n streams in
/// during S = Q K^T, K of tile n + 1 during O += P V), which keeps the d = 128 block at 52,224
/// bytes; its ~230 registers let two blocks (8 warps) share an A100 SM. Q stays in registers at
/// d = 64; above, its fragments are reread from shared memory each k-step (their registers would
/// not fit beside the 32-row accumulators of O and S).
template <int D>
struct FlashFwdTraits {
  static_assert(D % 16 == 0 && D >= 16 && D <= 256, "head dimension: a multiple of 16");
  static constexpr int kMTiles = 2;  ///< m16 tiles of query rows per warp
  static constexpr int kWarps = 4;
  static constexpr int kRowsPerWarp = 16 * kMTiles;
  static constexpr int kBlockM = kRowsPerWarp * kWarps;  ///< query rows per block (128)
  /// Keys per K/V tile: 32 at D = 128, where S of 64 keys (64 more fp32 registers) beside O's 128
  /// would not fit 255 registers without spills (FlashAttention-2's 128 x 32 of sm_86).
  static constexpr int kBlockN = D >= 128 ? 32 : 64;
  static constexpr int kThreads = 32 * kWarps;
  /// Q fragments held in registers for the whole row tile.
  static constexpr bool kQInRegs = D <= 64;
  static constexpr int kLd = D + 8;       ///< padded smem row: 16-byte aligned, banks staggered
  static constexpr int kChunks = D / 8;   ///< 16-byte chunks per row
  static constexpr int kKSteps = D / 16;  ///< k16 steps of S = Q K^T
  static constexpr int kOTiles = D / 8;   ///< n8 tiles of O per m16 tile
  static constexpr int kSTiles = kBlockN / 8;  ///< n8 tiles of S per m16 tile
  /// Q tile, then one stage of K and one of V.
  template <class T>
  static constexpr size_t kSmemBytes = size_t(kBlockM + 2 * kBlockN) * kLd * sizeof(T);
  /// 16-byte chunks of a V tile per thread, and whether a second raw V tile (kRawVTiles = 2)
  /// waits in registers (at most 4 chunks, 16 registers: d = 64 and 128) or in a second shared-
  /// memory tile (d = 96, whose 6 chunks spilled).
  static constexpr int kVStageChunks = (kBlockN * kChunks + kThreads - 1) / kThreads;
  static constexpr bool kVStageInRegs = kVStageChunks <= 4;
  /// Q tile, one stage of K and of V, and the second raw V tile where it is not in registers.
  template <class T, class Variant>
  static constexpr size_t kSmemBytesOf = kSmemBytes<T> + (Variant::kRawVTiles > 1 && !kVStageInRegs
                                                              ? kBlockN * kLd * sizeof(T)
                                                              : 0);
  /// mma.sync instructions per (query tile, key tile) pair: S and P V for every m16 tile of 4
  /// warps.
  static constexpr int kMmaPerTile =
      kWarps * kMTiles * (kSTiles * kKSteps + kOTiles * (kBlockN / 16));
};

/// Grid of the forward kernel: (query tiles of the longest sequence, heads, batch).
template <int D>
inline dim3 flash_fwd_grid(const FlashFwdParams& p) {
  return dim3(unsigned((p.seqlen_q + FlashFwdTraits<D>::kBlockM - 1) / FlashFwdTraits<D>::kBlockM),
              unsigned(p.h), unsigned(p.b));
}

STRATA_EXECUTOR_BEGIN

template <class T, int D, class Variant = VanillaAttention>
__global__ void __launch_bounds__(FlashFwdTraits<D>::kThreads)
    flash_fwd_kernel(const FlashFwdParams p, const Variant var) {
  static_assert(AttentionVariant<Variant, T, D>, "the variant policy misses a hook (variant.hpp)");
  using Tr = FlashFwdTraits<D>;
  static_assert(Tr::template kSmemBytesOf<T, Variant> <= 99 * 1024,
                "shared memory above 99 KB: sm_86 / sm_89 could not run this instantiation");
  constexpr int BM = Tr::kBlockM, BN = Tr::kBlockN, LD = Tr::kLd, MT = Tr::kMTiles;
  constexpr bool kRawV = Variant::kRawVTiles > 1;
  STRATA_DYNAMIC_SMEM(T, Qs);  // [BM][LD]
  T* Ks = Qs + BM * LD;        // [BN][LD]
  T* Vs = Ks + BN * LD;        // [BN][LD]
  // the second raw V tile (kRawVTiles = 2 only): this thread's chunks, or a shared-memory tile
  constexpr bool kStageRegs = Tr::kVStageInRegs;
  uint4 v_stage[kRawV && kStageRegs ? Tr::kVStageChunks : 1];
  T* Vaux = Vs + BN * LD;  // [BN][LD] (kRawV && !kStageRegs only)

  const int tid = int(threadIdx.x), warp = tid / 32, lane = tid % 32;
  const int m_block = int(blockIdx.x), h = int(blockIdx.y), b = int(blockIdx.z);
  const SeqBounds sb = SeqBounds::of(p, b);
  const int m0 = m_block * BM;
  if (m0 >= sb.tq) return;  // the whole block leaves: no barrier is pending
  const int h_k = h / (p.h / p.h_k);
  const Mask mask = var.mask(p, sb);
  const int m1 = m0 + BM < sb.tq ? m0 + BM : sb.tq;
  const int w0 = warp * Tr::kRowsPerWarp;  // this warp's first row in the tile
  const TileSite site{sb, h, h_k, 0};
  auto at_row = [&](int row0) {
    TileSite t = site;
    t.row0 = row0;
    return t;
  };

  // Key tiles this query tile needs (causal and window block skipping).
  const int k_lo = mask.key_begin(m0), k_hi = mask.key_end(m1);
  const int n_first = k_lo / BN, n_end = k_hi > k_lo ? (k_hi + BN - 1) / BN : n_first;

  var.template load_q<D, Tr::kThreads>(Qs, LD, p, at_row(m0), BM, tid);
  if (n_first < n_end)
    var.template load_k<D, Tr::kThreads>(Ks, LD, p, at_row(n_first * BN), BN, tid);
  arch::cp_async_commit();

  float o[MT][Tr::kOTiles][4] = {};
  core::OnlineSoftmax row_state[MT][2];  // rows lane/4 and lane/4 + 8 of each m16 tile
  uint32_t qf[Tr::kQInRegs ? MT : 1][Tr::kQInRegs ? Tr::kKSteps : 1][4];
  const float scale_log2 = p.softmax_scale * core::kLog2e;

  for (int n = n_first; n < n_end; ++n) {
    // K of this tile (and Q) landed; every warp is past the previous tile's O += P V, so V's
    // stage is free: its copy overlaps S = Q K^T.
    arch::cp_async_wait<0>();
    __syncthreads();
    if constexpr (kRawV)
      var.template load_v_raw<D, Tr::kThreads, kStageRegs>(Vs, Vaux, v_stage, LD, p, at_row(n * BN),
                                                           BN, tid);
    else
      var.template load_v<D, Tr::kThreads>(Vs, LD, p, at_row(n * BN), BN, tid);
    arch::cp_async_commit();
    if constexpr (Tr::kQInRegs) {
      if (n == n_first) {
        STRATA_UNROLL
        for (int mt = 0; mt < MT; ++mt) {
          STRATA_UNROLL
          for (int kk = 0; kk < Tr::kKSteps; ++kk)
            load_a(qf[mt][kk], Qs, LD, w0 + mt * 16, kk * 16, lane);
        }
      }
    }

    // S = Q K^T for this warp's 32 rows and the tile's BN keys: each K fragment feeds MT mma.
    float s[MT][Tr::kSTiles][4] = {};
    STRATA_UNROLL
    for (int kk = 0; kk < Tr::kKSteps; ++kk) {
      uint32_t qa[MT][4];
      STRATA_UNROLL
      for (int mt = 0; mt < MT; ++mt) {
        if constexpr (Tr::kQInRegs) {
          STRATA_UNROLL
          for (int i = 0; i < 4; ++i) qa[mt][i] = qf[mt][kk][i];
        } else {
          load_a(qa[mt], Qs, LD, w0 + mt * 16, kk * 16, lane);
        }
      }
      STRATA_UNROLL
      for (int np = 0; np < Tr::kSTiles / 2; ++np) {
        uint32_t b0[2], b1[2];
        load_b_nk(b0, b1, Ks, LD, np * 16, kk * 16, lane);
        STRATA_UNROLL
        for (int mt = 0; mt < MT; ++mt) {
          arch::mma_m16n8k16<T>(s[mt][2 * np], qa[mt], b0, s[mt][2 * np]);
          arch::mma_m16n8k16<T>(s[mt][2 * np + 1], qa[mt], b1, s[mt][2 * np + 1]);
        }
      }
    }

    // The scores stay as the mma left them: times exp_scale they are base-2 units, and the scale
    // is applied in each exponent (FlashAttention's scale_apply_exp2). A variant that
    // transforms logits has them in base-2 units already. Only a tile that straddles the mask or
    // the end of the keys is masked: a full tile does no per-score integer work.
    const int n0 = n * BN;
    const bool full = mask.all_connected(m0, m1, n0, n0 + BN);
    constexpr bool kLogits = Variant::kTransformsLogits;
    const float exp_scale = kLogits ? 1.f : scale_log2;
    if constexpr (kLogits) {
      for_each_score<MT, Tr::kSTiles>(
          mask, full, m0 + w0, n0, lane, [&](int mt, int t, int i, int qi, int kj, bool on) {
            s[mt][t][i] =
                on ? var.logit(s[mt][t][i] * p.softmax_scale, qi, kj, h) * core::kLog2e : -INFINITY;
          });
    } else if (!full) {
      mask_scores(mask, m0 + w0, n0, s, lane);
    }
    STRATA_UNROLL
    for (int mt = 0; mt < MT; ++mt) {
      float tile_max[2] = {-INFINITY, -INFINITY};
      STRATA_UNROLL
      for (int t = 0; t < Tr::kSTiles; ++t) {
        STRATA_UNROLL
        for (int i = 0; i < 4; ++i) tile_max[i / 2] = fmaxf(tile_max[i / 2], s[mt][t][i]);
      }
      // Online softmax per row: the quad of lanes sharing a row agrees on the maximum.
      float rescale[2], offset[2];
      STRATA_UNROLL
      for (int rr = 0; rr < 2; ++rr) {
        rescale[rr] = row_state[mt][rr].raise_max(arch::warp_max<4>(tile_max[rr]) * exp_scale);
        offset[rr] = row_state[mt][rr].exp_offset();
      }
      STRATA_UNROLL
      for (int t = 0; t < Tr::kOTiles; ++t) {
        STRATA_UNROLL
        for (int i = 0; i < 4; ++i) o[mt][t][i] *= rescale[i / 2];
      }
      float psum[2] = {0.f, 0.f};
      STRATA_UNROLL
      for (int t = 0; t < Tr::kSTiles; ++t) {
        STRATA_UNROLL
        for (int i = 0; i < 4; ++i) {
          // a masked score is -inf and its weight ex2(-inf) = 0
          s[mt][t][i] = core::exp2_scaled(s[mt][t][i], exp_scale, offset[i / 2]);
          psum[i / 2] += s[mt][t][i];
        }
      }
      row_state[mt][0].add(psum[0]);
      row_state[mt][1].add(psum[1]);
    }

    // V of this tile landed; every warp is past S = Q K^T, so K's stage is free: the next
    // tile's K streams in during O += P V.
    arch::cp_async_wait<0>();
    __syncthreads();
    if (n + 1 < n_end)
      var.template load_k<D, Tr::kThreads>(Ks, LD, p, at_row((n + 1) * BN), BN, tid);
    arch::cp_async_commit();
    if constexpr (kRawV) {  // both raw tiles are here: form V in place while K streams in
      var.template transform_v<D, Tr::kThreads, kStageRegs>(Vs, Vaux, v_stage, LD, at_row(n * BN),
                                                            BN, tid);
      __syncthreads();
    }

    // O += P V: P's accumulator layout is the A-fragment layout of the next mma (two n8 tiles of
    // S form one k16 step); V's B fragments come from ldmatrix.trans of the [key][d] tile.
    STRATA_UNROLL
    for (int kp = 0; kp < BN / 16; ++kp) {
      uint32_t pa[MT][4];
      STRATA_UNROLL
      for (int mt = 0; mt < MT; ++mt) acc_to_a<T>(pa[mt], s[mt][2 * kp], s[mt][2 * kp + 1]);
      STRATA_UNROLL
      for (int dp = 0; dp < Tr::kOTiles / 2; ++dp) {
        uint32_t b0[2], b1[2];
        load_b_kn(b0, b1, Vs, LD, kp * 16, dp * 16, lane);
        STRATA_UNROLL
        for (int mt = 0; mt < MT; ++mt) {
          arch::mma_m16n8k16<T>(o[mt][2 * dp], pa[mt], b0, o[mt][2 * dp]);
          arch::mma_m16n8k16<T>(o[mt][2 * dp + 1], pa[mt], b1, o[mt][2 * dp + 1]);
        }
      }
    }
  }
  arch::cp_async_wait<0>();  // no copy outlives the block (with no key tile, Q was loaded unused)

  // Epilogue: normalise this thread's rows and hand them to the variant's store (a row without
  // keys is zero), then the LSE.
  STRATA_UNROLL
  for (int mt = 0; mt < MT; ++mt) {
    STRATA_UNROLL
    for (int rr = 0; rr < 2; ++rr) {
      core::OnlineSoftmax total = row_state[mt][rr];
      total.l = arch::warp_sum<4>(row_state[mt][rr].l);
      int r, col0;  // this thread's row of the m16 tile and its first column
      arch::mma_c_coord(lane, 2 * rr, r, col0);
      const int row = m0 + w0 + mt * 16 + r;
      const float inv = total.inv_sum();
      float orow[2 * Tr::kOTiles];
      STRATA_UNROLL
      for (int t = 0; t < Tr::kOTiles; ++t) {
        orow[2 * t] = o[mt][t][2 * rr] * inv;
        orow[2 * t + 1] = o[mt][t][2 * rr + 1] * inv;
      }
      const RowSite rs{int64_t(sb.q_begin) + row, h, col0, row < sb.tq};
      var.template store_o<T>(orow, p, rs, arch::LaneGroupSum<4>{});
      if (rs.valid && col0 == 0) p.lse[int64_t(h) * p.total_q + rs.token] = total.lse();
    }
  }
}

STRATA_EXECUTOR_END
}  // namespace strata::attention
