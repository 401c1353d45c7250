/// \file
/// Pieces the flash kernels share: where a sequence starts, packing of mma operands, and the
/// cp.async copy of a tile of rows into padded shared memory.
#pragma once

#include <cstdint>
#include <cstring>

#include "strata/strata.cuh"

namespace strata::attention {

/// Two fp32 values as one register of two b16 elements (low half first), the mma operand format.
template <class T>
STRATA_HOST_DEVICE uint32_t pack2(float lo, float hi) {
  const T a = core::from_float<T>(lo), b = core::from_float<T>(hi);
  uint16_t ua, ub;
  memcpy(&ua, &a, 2);
  memcpy(&ub, &b, 2);
  return uint32_t(ua) | (uint32_t(ub) << 16);
}

/// The two values of a pack2<T> register as fp32.
template <class T>
STRATA_HOST_DEVICE void unpack2(uint32_t v, float& lo, float& hi) {
  const uint16_t ua = uint16_t(v & 0xffffu), ub = uint16_t(v >> 16);
  T a, b;
  memcpy(static_cast<void*>(&a), &ua, 2);
  memcpy(static_cast<void*>(&b), &ub, 2);
  lo = core::to_float(a), hi = core::to_float(b);
}

/// Where sequence b's queries and keys start and how many there are.
struct SeqBounds {
  int q_begin, tq, k_begin, tk;
  template <class Params>
  STRATA_HOST_DEVICE static SeqBounds of(const Params& p, int b) {
    SeqBounds s;
    s.q_begin = p.cu_seqlens_q ? p.cu_seqlens_q[b] : b * p.seqlen_q;
    s.tq = p.cu_seqlens_q ? p.cu_seqlens_q[b + 1] - s.q_begin : p.seqlen_q;
    s.k_begin = p.cu_seqlens_k ? p.cu_seqlens_k[b] : b * p.seqlen_k;
    s.tk = p.cu_seqlens_k ? p.cu_seqlens_k[b + 1] - s.k_begin : p.seqlen_k;
    return s;
  }
};

/// Row `row0` of head `head` of a [rows, heads, d] operand with the given strides (elements).
template <class T>
STRATA_HOST_DEVICE T* head_rows(T* base, int row0, int64_t row_stride, int head,
                                int64_t head_stride) {
  return base + int64_t(row0) * row_stride + int64_t(head) * head_stride;
}

STRATA_EXECUTOR_BEGIN  // the device helpers: cp.async and ldmatrix through strata/arch

/// The 16-byte chunk (row, column) that copy `c` of a tile of `nrows` rows moves. Row by row,
/// except for rows of 12 chunks (D = 96) in tiles of a multiple of 8 rows: chunks 0..7 of each
/// row first, then chunks 8..11 of rows r and r + 4 of each group of 8 rows together. Each 8 lanes
/// of a warp write one 128-byte shared-memory phase of a cp.async.16, so with rows of D + 8
/// elements (a 208-byte pitch: 13 chunks, 5 modulo the 8 chunks of a 128-byte bank line) the
/// row-by-row order lets a phase straddle two rows whose chunks share banks (2-way conflicts);
/// in this order every phase covers 8 distinct bank groups and reads two 64-byte runs (or one
/// 128-byte run) of global memory.
template <int D>
STRATA_DEVICE void tile_chunk(int c, int nrows, int& r, int& chunk) {
  constexpr int kChunks = D / 8;
  if constexpr (kChunks == 12) {
    if (nrows % 8 == 0) {
      if (c < nrows * 8) {
        r = c / 8;
        chunk = c % 8;
      } else {
        const int t = c - nrows * 8, pair = t / 8, j = t % 8;  // 4 pairs per 8 rows
        r = (pair / 4) * 8 + pair % 4 + (j / 4) * 4;
        chunk = 8 + j % 4;
      }
      return;
    }
  }
  r = c / kChunks;
  chunk = c % kChunks;
}

/// Copies rows [row0, row0 + nrows) of a [rows, D] operand (row stride in elements) into shared
/// memory rows of `ld` elements, 16 bytes per cp.async (in tile_chunk's order); rows at or past
/// `rows_valid` are zero-filled (0 source bytes), so ragged tiles hold zeros, never stale data.
/// All `Threads` threads of the block call it; the caller commits the group.
template <int D, int Threads, class T>
STRATA_DEVICE void load_tile_rows(T* dst, int ld, const T* src, int64_t row_stride, int row0,
                                  int rows_valid, int nrows, int tid) {
  constexpr int kChunks = D / 8;
  // Not unrolled: an unrolled copy loop lets the compiler hoist every iteration's 64-bit source
  // offsets out of the kernel's mainloop, pinning registers for the whole kernel (18 at the d = 128
  // forward, the difference between spilling and not).
  STRATA_UNROLL_N(1)
  for (int c = tid; c < nrows * kChunks; c += Threads) {
    int r, chunk;
    tile_chunk<D>(c, nrows, r, chunk);
    const int col = chunk * 8;
    const bool ok = row0 + r < rows_valid;
    arch::cp_async<16>(&dst[r * ld + col], ok ? src + int64_t(row0 + r) * row_stride + col : src,
                       ok ? 16 : 0);
  }
}

// Fragments of mma.m16n8k16 from padded shared memory (rows of `ld` elements) and from
// accumulators; `lane` is the lane in the warp.

/// A operand (16 x 16, row-major): rows row0..row0+15, columns k0..k0+15 of a [row][k] tile.
template <class T>
STRATA_DEVICE void load_a(uint32_t (&a)[4], const T* s, int ld, int row0, int k0, int lane) {
  arch::ldmatrix_x4(a, &s[(row0 + lane % 16) * ld + k0 + (lane / 16) * 8]);
}

/// A operand (16 x 16) from a tile stored [k][row] (P^T in dV = P^T dO, with P stored
/// [query][key]), through ldmatrix.trans: matrices (rows lo, k lo) (rows hi, k lo) (rows lo, k hi)
/// (rows hi, k hi).
template <class T>
STRATA_DEVICE void load_a_km(uint32_t (&a)[4], const T* s, int ld, int row0, int k0, int lane) {
  arch::ldmatrix_x4<true>(a,
                          &s[(k0 + lane % 8 + 8 * (lane / 16)) * ld + row0 + 8 * ((lane / 8) % 2)]);
}

/// B operands of two n8 tiles (n0..n0+7, n0+8..n0+15) for k0..k0+15 from a tile stored [n][k]
/// (K in S = Q K^T).
template <class T>
STRATA_DEVICE void load_b_nk(uint32_t (&b0)[2], uint32_t (&b1)[2], const T* s, int ld, int n0,
                             int k0, int lane) {
  uint32_t r[4];  // (n lo, k lo) (n lo, k hi) (n hi, k lo) (n hi, k hi)
  const int bi = lane / 8, br = lane % 8;
  arch::ldmatrix_x4(r, &s[(n0 + (bi / 2) * 8 + br) * ld + k0 + (bi % 2) * 8]);
  b0[0] = r[0], b0[1] = r[1], b1[0] = r[2], b1[1] = r[3];
}

/// The same from a tile stored [k][n] (V in O = P V), through ldmatrix.trans.
template <class T>
STRATA_DEVICE void load_b_kn(uint32_t (&b0)[2], uint32_t (&b1)[2], const T* s, int ld, int k0,
                             int n0, int lane) {
  uint32_t r[4];  // (k lo, n lo) (k hi, n lo) (k lo, n hi) (k hi, n hi)
  arch::ldmatrix_x4<true>(r,
                          &s[(k0 + lane % 8 + 8 * ((lane / 8) % 2)) * ld + n0 + 8 * (lane / 16)]);
  b0[0] = r[0], b0[1] = r[1], b1[0] = r[2], b1[1] = r[3];
}

STRATA_EXECUTOR_END

/// An accumulator pair (n8 tiles 2k and 2k+1 of a 16-row result) as the A operand of the k16
/// step k of the next mma: the C layout of two n8 tiles is the A layout of one k16 step.
template <class T>
STRATA_HOST_DEVICE void acc_to_a(uint32_t (&a)[4], const float (&c0)[4], const float (&c1)[4]) {
  a[0] = pack2<T>(c0[0], c0[1]);
  a[1] = pack2<T>(c0[2], c0[3]);
  a[2] = pack2<T>(c1[0], c1[1]);
  a[3] = pack2<T>(c1[2], c1[3]);
}

}  // namespace strata::attention
