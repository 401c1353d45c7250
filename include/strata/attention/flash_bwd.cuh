// Flash-attention backward on tensor cores (sm_80 path), deterministic by construction: every
// gradient element is accumulated in registers of one thread in a fixed order and written once —
// no atomics, so results are bitwise identical from run to run and with any number of simulator
// workers. Three kernels:
//  1. preprocess: D = rowsum(dO o O) per (query, head), fp32 (the softmax backward's correction);
//  2. dQ: one block per 64-query tile (like the forward) streams the key tiles, recomputes
//     P = exp2(S log2e - LSE log2e) from Q, K and the LSE, dP = dO V^T, dS = P o (dP - D), and
//     accumulates dQ = scale dS K in fp32 registers, converted once at the end;
//  3. dK/dV: one block per 64-key tile of one KV head streams the query tiles of the G query heads
//     of its group (GQA: the sum over the group happens in registers), recomputes S^T = K Q^T,
//     P^T and dP^T = V dO^T, and accumulates dV = P^T dO and dK = scale dS^T Q.
// All matrix products run on mma.sync m16n8k16 with ldmatrix fragments; P and dS are rounded to
// the storage type as mma operands, as in FlashAttention.
#pragma once

#include <cstdint>

#include "strata/attention/mask.hpp"
#include "strata/attention/params.hpp"
#include "strata/attention/tile_io.cuh"
#include "strata/attention/variant.hpp"
#include "strata/core/numeric.hpp"
#include "strata/core/online_softmax.hpp"

namespace strata::attention {

/// Tile shape of the backward kernels for head dimension D.
template <int D>
struct FlashBwdTraits {
  static_assert(D % 16 == 0 && D >= 16 && D <= 256, "head dimension: a multiple of 16");
  static constexpr int kBlockM = 64;  ///< queries per tile of the dQ kernel
  /// Queries per tile of the dK/dV kernel: 32 above d = 64, where the dK and dV accumulators
  /// (d/2 registers each) leave no room for 64-query S^T and dP^T tiles without spilling.
  static constexpr int kBlockMKv = D > 64 ? 32 : 64;
  static constexpr int kBlockN = 64;  ///< keys per tile
  static constexpr int kWarps = 4;
  static constexpr int kThreads = 32 * kWarps;
  static constexpr int kLd = D + 8;
  static constexpr int kKSteps = D / 16;
  static constexpr int kDTiles = D / 8;  ///< n8 tiles of a [16, D] gradient per warp
  /// dQ kernel: Q and dO tiles, one K and one V tile.
  template <class T>
  static constexpr size_t kSmemDq = size_t(2 * kBlockM + 2 * kBlockN) * kLd * sizeof(T);
  /// dK/dV kernel: K and V tiles, Q and dO tiles, and the tile's LSE and D (fp32).
  template <class T>
  static constexpr size_t kSmemDkDv = size_t(2 * kBlockMKv + 2 * kBlockN) * kLd * sizeof(T) +
                                      2 * kBlockMKv * sizeof(float);
  /// mma.sync per warp and (query tile, key tile) pair: dQ kernel S, dP, dQ; dK/dV kernel S^T,
  /// dP^T, dV, dK.
  static constexpr int kMmaDq = 3 * (kBlockN / 8) * kKSteps;
  static constexpr int kMmaDkDv = 4 * (kBlockMKv / 8) * kKSteps;
};

/// log2(e) * LSE of a row, or +inf for a row without keys (LSE = -inf) or past the sequence, so
/// that exp2(s - it) is 0 there instead of inf.
STRATA_HOST_DEVICE float lse_log2(float lse, bool valid) {
  return valid && lse != -INFINITY ? lse * core::kLog2e : INFINITY;
}

STRATA_EXECUTOR_BEGIN

/// D[h, row] = sum_d dO[row, h, d] O[row, h, d], one thread per (row, head).
/// The variant's preprocess hook computes it (and, e.g., a gate's backward).
template <class T, int D, class Variant = VanillaAttention>
__global__ void __launch_bounds__(128)
    flash_bwd_preprocess_kernel(const FlashBwdParams p, const Variant var) {
  static_assert(AttentionVariant<Variant, T, D>, "the variant policy misses a hook (variant.hpp)");
  const int64_t idx = int64_t(blockIdx.x) * 128 + threadIdx.x;
  if (idx >= int64_t(p.total_q) * p.h) return;
  const int64_t row = idx / p.h;
  const int h = int(idx % p.h);
  p.dsum[int64_t(h) * p.total_q + row] = var.template preprocess<T, D>(p, row, h);
}

/// dQ of one 64-query tile of one (sequence, head).
template <class T, int D, class Variant = VanillaAttention>
__global__ void __launch_bounds__(FlashBwdTraits<D>::kThreads)
    flash_bwd_dq_kernel(const FlashBwdParams p, const Variant var) {
  static_assert(AttentionVariant<Variant, T, D>, "the variant policy misses a hook (variant.hpp)");
  using Tr = FlashBwdTraits<D>;
  static_assert(Tr::template kSmemDq<T> <= 99 * 1024, "shared memory above 99 KB");
  constexpr int BM = Tr::kBlockM, BN = Tr::kBlockN, LD = Tr::kLd;
  STRATA_DYNAMIC_SMEM(T, Qs);  // [BM][LD]
  T* dOs = Qs + BM * LD;       // [BM][LD]
  T* Ks = dOs + BM * LD;       // [BN][LD]
  T* Vs = Ks + BN * LD;        // [BN][LD]

  const int tid = int(threadIdx.x), warp = tid / 32, lane = tid % 32;
  const int h = int(blockIdx.y), b = int(blockIdx.z);
  const SeqBounds sb = SeqBounds::of(p, b);
  const int m0 = int(blockIdx.x) * BM;
  if (m0 >= sb.tq) return;
  const int h_k = h / (p.h / p.h_k);
  const Mask mask = var.mask(p, sb);
  const int m1 = m0 + BM < sb.tq ? m0 + BM : sb.tq;

  const TileSite at_q{sb, h, h_k, m0};
  var.template load_q<D, Tr::kThreads>(Qs, LD, p, at_q, BM, tid);
  var.template load_do<D, Tr::kThreads>(dOs, LD, p, at_q, BM, tid);
  arch::cp_async_commit();

  // This thread's two rows: their LSE (log2 units) and D.
  float lse2[2], dsum[2];
  STRATA_UNROLL
  for (int rr = 0; rr < 2; ++rr) {
    const int row = m0 + warp * 16 + lane / 4 + 8 * rr;
    const bool valid = row < sb.tq;
    const int64_t at = int64_t(h) * p.total_q + sb.q_begin + row;
    lse2[rr] = lse_log2(valid ? p.lse[at] : 0.f, valid);
    dsum[rr] = valid ? p.dsum[at] : 0.f;
  }
  const float scale_log2 = p.softmax_scale * core::kLog2e;
  const int k_lo = mask.key_begin(m0), k_hi = mask.key_end(m1);
  const int n_first = k_lo / BN, n_end = k_hi > k_lo ? (k_hi + BN - 1) / BN : n_first;

  float dq[Tr::kDTiles][4] = {};
  for (int n = n_first; n < n_end; ++n) {
    const TileSite at_k{sb, h, h_k, n * BN};
    var.template load_k<D, Tr::kThreads>(Ks, LD, p, at_k, BN, tid);
    var.template load_v<D, Tr::kThreads>(Vs, LD, p, at_k, BN, tid);
    arch::cp_async_commit();
    arch::cp_async_wait<0>();
    __syncthreads();
    // S = Q K^T and dP = dO V^T for this warp's 16 rows and the tile's 64 keys.
    float s[BN / 8][4] = {}, dp[BN / 8][4] = {};
    // Q and dO fragments are reloaded from shared memory per tile: holding them in registers
    // (d/4 each) would push d = 128 past 255 registers next to the dQ accumulators.
    STRATA_UNROLL
    for (int kk = 0; kk < Tr::kKSteps; ++kk) {
      uint32_t qa[4], doa[4];
      load_a(qa, Qs, LD, warp * 16, kk * 16, lane);
      load_a(doa, dOs, LD, warp * 16, kk * 16, lane);
      STRATA_UNROLL
      for (int np = 0; np < BN / 16; ++np) {
        uint32_t b0[2], b1[2];
        load_b_nk(b0, b1, Ks, LD, np * 16, kk * 16, lane);
        arch::mma_m16n8k16<T>(s[2 * np], qa, b0, s[2 * np]);
        arch::mma_m16n8k16<T>(s[2 * np + 1], qa, b1, s[2 * np + 1]);
        load_b_nk(b0, b1, Vs, LD, np * 16, kk * 16, lane);
        arch::mma_m16n8k16<T>(dp[2 * np], doa, b0, dp[2 * np]);
        arch::mma_m16n8k16<T>(dp[2 * np + 1], doa, b1, dp[2 * np + 1]);
      }
    }
    // P, then dS = P o (dP - D) in place of dp.
    const int n0 = n * BN;
    const bool full = mask.all_connected(m0, m1, n0, n0 + BN);
    STRATA_UNROLL
    for (int t = 0; t < BN / 8; ++t) {
      STRATA_UNROLL
      for (int i = 0; i < 4; ++i) {
        int r, c;
        arch::mma_c_coord(lane, i, r, c);
        const int qi = m0 + warp * 16 + r, kj = n0 + t * 8 + c;
        const bool on = full || mask.connected(qi, kj);
        if constexpr (Variant::kTransformsLogits) {
          const float x = s[t][i] * p.softmax_scale;
          const float pr =
              on ? core::exp2_or_zero(var.logit(x, qi, kj, h) * core::kLog2e - lse2[i / 2]) : 0.f;
          dp[t][i] = pr * (dp[t][i] - dsum[i / 2]) * var.logit_grad(x, qi, kj, h);
        } else {
          const float pr = on ? core::exp2_or_zero(s[t][i] * scale_log2 - lse2[i / 2]) : 0.f;
          dp[t][i] = pr * (dp[t][i] - dsum[i / 2]);
        }
      }
    }
    // dQ += dS K
    STRATA_UNROLL
    for (int kp = 0; kp < BN / 16; ++kp) {
      uint32_t a[4];
      acc_to_a<T>(a, dp[2 * kp], dp[2 * kp + 1]);
      STRATA_UNROLL
      for (int dt = 0; dt < Tr::kDTiles / 2; ++dt) {
        uint32_t b0[2], b1[2];
        load_b_kn(b0, b1, Ks, LD, kp * 16, dt * 16, lane);
        arch::mma_m16n8k16<T>(dq[2 * dt], a, b0, dq[2 * dt]);
        arch::mma_m16n8k16<T>(dq[2 * dt + 1], a, b1, dq[2 * dt + 1]);
      }
    }
    __syncthreads();  // the next tile overwrites Ks / Vs
  }
  if (n_first >= n_end) arch::cp_async_wait<0>();  // no key tile: dQ = 0

  STRATA_UNROLL
  for (int rr = 0; rr < 2; ++rr) {
    int r, col0;
    arch::mma_c_coord(lane, 2 * rr, r, col0);
    const int row = m0 + warp * 16 + r;
    float dq_row[2 * Tr::kDTiles];
    STRATA_UNROLL
    for (int t = 0; t < Tr::kDTiles; ++t) {
      dq_row[2 * t] = dq[t][2 * rr] * p.softmax_scale;
      dq_row[2 * t + 1] = dq[t][2 * rr + 1] * p.softmax_scale;
    }
    const RowSite rs{int64_t(sb.q_begin) + row, h, col0, row < sb.tq};
    var.template store_dq<T>(dq_row, p, rs, arch::LaneGroupSum<4>{});
  }
}

/// dK and dV of one 64-key tile of one (sequence, KV head), summed over its query heads.
template <class T, int D, class Variant = VanillaAttention>
__global__ void __launch_bounds__(FlashBwdTraits<D>::kThreads)
    flash_bwd_dkdv_kernel(const FlashBwdParams p, const Variant var) {
  static_assert(AttentionVariant<Variant, T, D>, "the variant policy misses a hook (variant.hpp)");
  using Tr = FlashBwdTraits<D>;
  static_assert(Tr::template kSmemDkDv<T> <= 99 * 1024, "shared memory above 99 KB");
  constexpr int BM = Tr::kBlockMKv, BN = Tr::kBlockN, LD = Tr::kLd;
  STRATA_DYNAMIC_SMEM(T, Ks);                              // [BN][LD]
  T* Vs = Ks + BN * LD;                                    // [BN][LD]
  T* Qs = Vs + BN * LD;                                    // [BM][LD]
  T* dOs = Qs + BM * LD;                                   // [BM][LD]
  float* lse_s = reinterpret_cast<float*>(dOs + BM * LD);  // [BM], log2 units
  float* dsum_s = lse_s + BM;                              // [BM]

  const int tid = int(threadIdx.x), warp = tid / 32, lane = tid % 32;
  const int h_k = int(blockIdx.y), b = int(blockIdx.z);
  const SeqBounds sb = SeqBounds::of(p, b);
  const int n0 = int(blockIdx.x) * BN;
  if (n0 >= sb.tk) return;
  const int G = p.h / p.h_k;
  const Mask mask = var.mask(p, sb);
  const int n1 = n0 + BN < sb.tk ? n0 + BN : sb.tk;

  // K/V through the hooks with the group's first query head (a KV tile is the same for all G).
  const TileSite at_k{sb, h_k * G, h_k, n0};
  var.template load_k<D, Tr::kThreads>(Ks, LD, p, at_k, BN, tid);
  var.template load_v<D, Tr::kThreads>(Vs, LD, p, at_k, BN, tid);
  arch::cp_async_commit();

  const float scale_log2 = p.softmax_scale * core::kLog2e;
  const int q_lo = mask.query_begin(n0), q_hi = mask.query_end(n1);
  float dk[Tr::kDTiles][4] = {}, dv[Tr::kDTiles][4] = {};

  for (int g = 0; g < G; ++g) {
    const int h = h_k * G + g;
    for (int m0 = (q_lo / BM) * BM; m0 < q_hi; m0 += BM) {
      const TileSite at_q{sb, h, h_k, m0};
      var.template load_q<D, Tr::kThreads>(Qs, LD, p, at_q, BM, tid);
      var.template load_do<D, Tr::kThreads>(dOs, LD, p, at_q, BM, tid);
      arch::cp_async_commit();
      for (int r = tid; r < BM; r += Tr::kThreads) {
        const int row = m0 + r;
        const bool valid = row < sb.tq;
        const int64_t at = int64_t(h) * p.total_q + sb.q_begin + row;
        lse_s[r] = lse_log2(valid ? p.lse[at] : 0.f, valid);
        dsum_s[r] = valid ? p.dsum[at] : 0.f;
      }
      arch::cp_async_wait<0>();
      __syncthreads();

      // S^T = K Q^T and dP^T = V dO^T: this warp's 16 keys x the tile's 64 queries.
      float st[BM / 8][4] = {}, dpt[BM / 8][4] = {};
      STRATA_UNROLL
      for (int kk = 0; kk < Tr::kKSteps; ++kk) {
        uint32_t ka[4], va[4];
        load_a(ka, Ks, LD, warp * 16, kk * 16, lane);
        load_a(va, Vs, LD, warp * 16, kk * 16, lane);
        STRATA_UNROLL
        for (int np = 0; np < BM / 16; ++np) {
          uint32_t b0[2], b1[2];
          load_b_nk(b0, b1, Qs, LD, np * 16, kk * 16, lane);
          arch::mma_m16n8k16<T>(st[2 * np], ka, b0, st[2 * np]);
          arch::mma_m16n8k16<T>(st[2 * np + 1], ka, b1, st[2 * np + 1]);
          load_b_nk(b0, b1, dOs, LD, np * 16, kk * 16, lane);
          arch::mma_m16n8k16<T>(dpt[2 * np], va, b0, dpt[2 * np]);
          arch::mma_m16n8k16<T>(dpt[2 * np + 1], va, b1, dpt[2 * np + 1]);
        }
      }
      // P^T and dS^T = P^T o (dP^T - D) (D per query: a column here).
      const int m1 = m0 + BM < sb.tq ? m0 + BM : sb.tq;
      const bool full = mask.all_connected(m0, m1, n0, n0 + BN);
      STRATA_UNROLL
      for (int t = 0; t < BM / 8; ++t) {
        STRATA_UNROLL
        for (int i = 0; i < 4; ++i) {
          int r, c;
          arch::mma_c_coord(lane, i, r, c);
          const int qc = t * 8 + c;
          const int kj = n0 + warp * 16 + r;
          const bool on = full || mask.connected(m0 + qc, kj);
          if constexpr (Variant::kTransformsLogits) {
            const float x = st[t][i] * p.softmax_scale;
            const float pr =
                on ? core::exp2_or_zero(var.logit(x, m0 + qc, kj, h) * core::kLog2e - lse_s[qc])
                   : 0.f;
            st[t][i] = pr;
            dpt[t][i] = pr * (dpt[t][i] - dsum_s[qc]) * var.logit_grad(x, m0 + qc, kj, h);
          } else {
            const float pr = on ? core::exp2_or_zero(st[t][i] * scale_log2 - lse_s[qc]) : 0.f;
            st[t][i] = pr;
            dpt[t][i] = pr * (dpt[t][i] - dsum_s[qc]);
          }
        }
      }
      // dV += P^T dO and dK += dS^T Q (k = the tile's queries).
      STRATA_UNROLL
      for (int kp = 0; kp < BM / 16; ++kp) {
        uint32_t pa[4], dsa[4];
        acc_to_a<T>(pa, st[2 * kp], st[2 * kp + 1]);
        acc_to_a<T>(dsa, dpt[2 * kp], dpt[2 * kp + 1]);
        STRATA_UNROLL
        for (int dt = 0; dt < Tr::kDTiles / 2; ++dt) {
          uint32_t b0[2], b1[2];
          load_b_kn(b0, b1, dOs, LD, kp * 16, dt * 16, lane);
          arch::mma_m16n8k16<T>(dv[2 * dt], pa, b0, dv[2 * dt]);
          arch::mma_m16n8k16<T>(dv[2 * dt + 1], pa, b1, dv[2 * dt + 1]);
          load_b_kn(b0, b1, Qs, LD, kp * 16, dt * 16, lane);
          arch::mma_m16n8k16<T>(dk[2 * dt], dsa, b0, dk[2 * dt]);
          arch::mma_m16n8k16<T>(dk[2 * dt + 1], dsa, b1, dk[2 * dt + 1]);
        }
      }
      __syncthreads();  // the next query tile overwrites Qs, dOs, lse_s, dsum_s
    }
  }
  arch::cp_async_wait<0>();  // K / V were loaded even when no query attends to this tile

  STRATA_UNROLL
  for (int rr = 0; rr < 2; ++rr) {
    int r, col0;
    arch::mma_c_coord(lane, 2 * rr, r, col0);
    const int row = n0 + warp * 16 + r;
    float dk_row[2 * Tr::kDTiles], dv_row[2 * Tr::kDTiles];
    STRATA_UNROLL
    for (int t = 0; t < Tr::kDTiles; ++t) {
      dk_row[2 * t] = dk[t][2 * rr] * p.softmax_scale;
      dk_row[2 * t + 1] = dk[t][2 * rr + 1] * p.softmax_scale;
      dv_row[2 * t] = dv[t][2 * rr];
      dv_row[2 * t + 1] = dv[t][2 * rr + 1];
    }
    const RowSite rs{int64_t(sb.k_begin) + row, h_k, col0, row < sb.tk};
    var.template store_dk_dv<T>(dk_row, dv_row, p, rs, arch::LaneGroupSum<4>{});
  }
}

STRATA_EXECUTOR_END

/// Grids of the three backward kernels.
template <int D>
inline dim3 flash_bwd_preprocess_grid(const FlashBwdParams& p) {
  return dim3(unsigned((int64_t(p.total_q) * p.h + 127) / 128));
}
template <int D>
inline dim3 flash_bwd_dq_grid(const FlashBwdParams& p) {
  return dim3(unsigned((p.seqlen_q + FlashBwdTraits<D>::kBlockM - 1) / FlashBwdTraits<D>::kBlockM),
              unsigned(p.h), unsigned(p.b));
}
template <int D>
inline dim3 flash_bwd_dkdv_grid(const FlashBwdParams& p) {
  return dim3(unsigned((p.seqlen_k + FlashBwdTraits<D>::kBlockN - 1) / FlashBwdTraits<D>::kBlockN),
              unsigned(p.h_k), unsigned(p.b));
}

}  // namespace strata::attention
