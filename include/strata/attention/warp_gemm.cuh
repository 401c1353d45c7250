/// \file
/// One warp's share of a block-tiled matrix product on mma.sync m16n8k16, both operands in padded
/// shared memory: C[MT m16 tiles][NT n8 tiles] += A[rows, K] B[K, cols]. The backward's five
/// products differ only in which operand is stored transposed, so one loop serves them all:
///   A stored [row][k] (Q in S = Q K^T) through ldmatrix, or [k][row] (P in dV = P^T dO) through
///   ldmatrix.trans;
///   B stored [n][k] (K in S = Q K^T) through ldmatrix, or [k][n] (dO in dV = P^T dO) through
///   ldmatrix.trans.
/// Every A fragment feeds NT mma and every B fragment MT, so a warp tile of MT x NT reads
/// 512 MT + 256 NT bytes of shared memory per k16 step for MT NT mma: the shared-memory cost per
/// mma the performance model charges (strata/cost/perf_model.hpp).
#pragma once

#include <cmath>
#include <cstdint>

#include "strata/attention/mask.hpp"
#include "strata/attention/tile_io.cuh"

namespace strata::attention {

STRATA_EXECUTOR_BEGIN

/// c[mt][nt] += A[row0 + 16 mt .., k] B[k, n0 + 8 nt ..] for k in [0, K): accumulator element i of
/// tile (mt, nt) is C[row0 + 16 mt + r][n0 + 8 nt + c] with (r, c) = arch::mma_c_coord(lane, i).
template <class T, int MT, int NT, int K, bool ATrans, bool BTrans>
STRATA_DEVICE void warp_gemm(float (&c)[MT][NT][4], const T* a, int lda, int row0, const T* b,
                             int ldb, int n0, int lane) {
  static_assert(NT % 2 == 0 && K % 16 == 0, "n8 tiles come in pairs; k in steps of 16");
  STRATA_UNROLL
  for (int kk = 0; kk < K; kk += 16) {
    uint32_t af[MT][4];
    STRATA_UNROLL
    for (int mt = 0; mt < MT; ++mt) {
      if constexpr (ATrans)
        load_a_km(af[mt], a, lda, row0 + 16 * mt, kk, lane);
      else
        load_a(af[mt], a, lda, row0 + 16 * mt, kk, lane);
    }
    STRATA_UNROLL
    for (int np = 0; np < NT / 2; ++np) {
      uint32_t b0[2], b1[2];
      if constexpr (BTrans)
        load_b_kn(b0, b1, b, ldb, kk, n0 + 16 * np, lane);
      else
        load_b_nk(b0, b1, b, ldb, n0 + 16 * np, kk, lane);
      STRATA_UNROLL
      for (int mt = 0; mt < MT; ++mt) {
        arch::mma_m16n8k16<T>(c[mt][2 * np], af[mt], b0, c[mt][2 * np]);
        arch::mma_m16n8k16<T>(c[mt][2 * np + 1], af[mt], b1, c[mt][2 * np + 1]);
      }
    }
  }
}

/// Calls f(mt, nt, i, r, c) for every accumulator element of a warp's MT x NT tile: element i of
/// tile (mt, nt), at row r and column c of the warp tile (r in [0, 16 MT), c in [0, 8 NT)).
template <int MT, int NT, class F>
STRATA_DEVICE void for_each_c(int lane, F&& f) {
  STRATA_UNROLL
  for (int mt = 0; mt < MT; ++mt) {
    STRATA_UNROLL
    for (int nt = 0; nt < NT; ++nt) {
      STRATA_UNROLL
      for (int i = 0; i < 4; ++i) {
        int r, c;
        arch::mma_c_coord(lane, i, r, c);
        f(mt, nt, i, 16 * mt + r, 8 * nt + c);
      }
    }
  }
}

/// Sets the scores of a warp's tile (queries q0 + r, keys k0 + c) that the mask cuts to -inf,
/// for a tile that is not full: their exponentials are then ex2(-inf) = 0 with no test in the
/// exponent's loop (FlashAttention's apply_mask before scale_apply_exp2). `mask` is a Mask or
/// any type with its connected(q, k) (paged attention's PackedRowMask).
template <int MT, int NT, class M = Mask>
STRATA_DEVICE void mask_scores(const M& mask, int q0, int k0, float (&s)[MT][NT][4], int lane) {
  for_each_c<MT, NT>(lane, [&](int mt, int nt, int i, int r, int c) {
    if (!mask.connected(q0 + r, k0 + c)) s[mt][nt][i] = -INFINITY;
  });
}

/// for_each_c over a warp's tile of scores, queries q0 + r and keys k0 + c: f(mt, nt, i, qi, kj,
/// on) with on = whether the mask connects the pair. A full tile (every pair connected, the
/// common case) runs a copy of the loop with on = true, so it does no per-score integer work.
template <int MT, int NT, class F>
STRATA_DEVICE void for_each_score(const Mask& mask, bool full, int q0, int k0, int lane, F&& f) {
  if (full)
    for_each_c<MT, NT>(
        lane, [&](int mt, int nt, int i, int r, int c) { f(mt, nt, i, q0 + r, k0 + c, true); });
  else
    for_each_c<MT, NT>(lane, [&](int mt, int nt, int i, int r, int c) {
      f(mt, nt, i, q0 + r, k0 + c, mask.connected(q0 + r, k0 + c));
    });
}

/// The same per pair of adjacent columns: f(mt, nt, hf, r, c) for elements 2 hf and 2 hf + 1 of
/// tile (mt, nt), at row r and columns c, c + 1 (c even).
template <int MT, int NT, class F>
STRATA_DEVICE void for_each_c_pair(int lane, F&& f) {
  STRATA_UNROLL
  for (int mt = 0; mt < MT; ++mt) {
    STRATA_UNROLL
    for (int nt = 0; nt < NT; ++nt) {
      STRATA_UNROLL
      for (int hf = 0; hf < 2; ++hf) {
        int r, c;
        arch::mma_c_coord(lane, 2 * hf, r, c);
        f(mt, nt, hf, 16 * mt + r, 8 * nt + c);
      }
    }
  }
}

/// Stores a warp's accumulator tile (as warp_gemm leaves it) rounded to T into a [row][col] tile of
/// pitch `ld`: one 32-bit store per column pair, the next product's operand (P, dS).
template <class T, int MT, int NT>
STRATA_DEVICE void store_c_tile(T* s, int ld, int row0, int n0, const float (&c)[MT][NT][4],
                                int lane) {
  for_each_c_pair<MT, NT>(lane, [&](int mt, int nt, int hf, int r, int col) {
    *reinterpret_cast<uint32_t*>(&s[(row0 + r) * ld + n0 + col]) =
        pack2<T>(c[mt][nt][2 * hf], c[mt][nt][2 * hf + 1]);
  });
}

/// The same for a tile already packed as pack2<T> pairs ([mt][nt][0] rows r, [1] rows r + 8).
template <class T, int MT, int NT>
STRATA_DEVICE void store_packed_tile(T* s, int ld, int row0, int n0,
                                     const uint32_t (&pk)[MT][NT][2], int lane) {
  for_each_c_pair<MT, NT>(lane, [&](int mt, int nt, int hf, int r, int col) {
    *reinterpret_cast<uint32_t*>(&s[(row0 + r) * ld + n0 + col]) = pk[mt][nt][hf];
  });
}

/// Stores a warp's fp32 accumulator tile times `scale` into a [row][col] fp32 tile of pitch `ld`,
/// one 8-byte store per column pair: the epilogues hand the store hooks whole rows (a quad of
/// lanes per row), so the warps' quarters of a gradient tile meet in shared memory.
template <int MT, int NT>
STRATA_DEVICE void stage_c_tile(float* s, int ld, int row0, int n0, const float (&c)[MT][NT][4],
                                float scale, int lane) {
  for_each_c_pair<MT, NT>(lane, [&](int mt, int nt, int hf, int r, int col) {
    core::store_pair(&s[(row0 + r) * ld + n0 + col], c[mt][nt][2 * hf] * scale,
                     c[mt][nt][2 * hf + 1] * scale);
  });
}

/// One quad lane's share of a staged fp32 row (from stage_c_tile), in the layout the store hooks
/// take: out[2 t], out[2 t + 1] = row[8 t + col0], row[8 t + col0 + 1] for col0 = 2 (lane % 4).
template <int D>
STRATA_DEVICE void load_row_pairs(const float* row, int col0, float (&out)[D / 4]) {
  STRATA_UNROLL
  for (int t = 0; t < D / 8; ++t) core::load_pair(&row[t * 8 + col0], out[2 * t], out[2 * t + 1]);
}

STRATA_EXECUTOR_END

}  // namespace strata::attention
