/// \file
/// The variant hook concept (DESIGN §3): one flash mainloop, forward and backward, and a variant
/// is a policy object that plugs into its named hook points. The kernels take the policy by value
/// as a kernel argument (a trivially copyable struct holding the variant's own pointers and
/// scalars) and call:
///
///  mask         Mask mask(p, sb)                   which (query, key) pairs exist: causal, window,
///                                                   varlen; it also drives block skipping
///  tile loads   load_q / load_k / load_v / load_do  fill a shared-memory tile of rows; the
///                                                   vanilla ones are cp.async copies, a variant
///                                                   may mix (value residual) or expand (virtual
///                                                   heads)
///               load_v_raw / transform_v            the forward's V tile from a cp.async tile
///                                                   and a staged one (registers or a second
///                                                   tile), formed after the wait (kRawVTiles = 2)
///               v_aux_operand / v_mix               the same on the sm_90 forward: the second
///                                                   raw tile's operand (loaded by TMA beside V)
///                                                   and the 16-byte chunkwise transform
///  logits       logit(x, q, k, h), logit_grad       x = softmax_scale q.k in natural units, and
///                                                   d logit / dx for the backward; only called
///                                                   when kTransformsLogits (so the vanilla path
///                                                   keeps the scale folded into log2(e))
///  epilogue     store_o(o, p, row, sum)             one normalised output row (gate, GroupNorm)
///  backward     preprocess<T, D>(p, token, h)      D = rowsum(dO o O) of one row (the gate's
///                                                   backward lives here)
///               store_dq / store_dk_dv              the gradient rows (dV' -> dV and dV_0)
///
/// The same policy drives the forward and every backward kernel, so K/V loaded through a hook are
/// the same K'/V' in both directions, and the chain rule through a load transform belongs to the
/// store hooks. Rows reach the epilogues as RowSite + a fragment; every lane calls the store hooks
/// (rows past the sequence end included, with valid = false) so that a hook may reduce over the
/// row with `sum` (a quad of lanes holds a row). `AttentionVariant` checks a policy at compile
/// time; every kernel static_asserts it. Derive from VanillaAttention and hide what changes.
#pragma once

#include <concepts>
#include <cstdint>
#include <type_traits>

#include "strata/attention/mask.hpp"
#include "strata/attention/params.hpp"
#include "strata/attention/tile_io.cuh"
#include "strata/core/numeric.hpp"

namespace strata::attention {

/// Where a tile of rows comes from: the sequence, the query head (for the dK/dV kernel, the head
/// of the GQA group being visited) with its KV head, and the tile's first row in the sequence
/// (query rows for Q and dO, key rows for K and V).
struct TileSite {
  SeqBounds sb;
  int h, h_k;
  int row0;
};

/// One row of a [16, N*2] mma accumulator as a thread holds it: element j of the fragment is
/// column col(j) = (j / 2) * 8 + col0 + j % 2 with col0 = 2 (lane % 4); the four lanes of a quad
/// hold the whole row. `token` is the row in the packed [total, heads, d] layout and `valid` says
/// whether the row exists (it is false past the end of the sequence: read and write nothing).
struct RowSite {
  int64_t token;
  int head;
  int col0;
  bool valid;
  STRATA_HOST_DEVICE int col(int j) const { return (j / 2) * 8 + col0 + j % 2; }
};

STRATA_EXECUTOR_BEGIN  // policies call device helpers

/// A [rows, heads, d] operand as stored, in the attention's dtype: the second raw V tile's source
/// of a kRawVTiles = 2 variant, from which the sm_90 forward makes a TMA map. `name` is the
/// field a refusal names.
struct RowsOperand {
  const void* base = nullptr;
  int64_t row_stride = 0, head_stride = 0;
  const char* name = "v_aux";
};

/// Plain scaled-dot-product attention: every hook does what FlashAttention does.
struct VanillaAttention {
  static constexpr bool kTransformsLogits = false;
  /// Raw tiles the forward's V tile is formed from: 1, V is used as loaded (load_v); 2,
  /// load_v_raw issues the cp.async of V into the tile and the loads of a second raw tile into a
  /// stage, and after the wait transform_v forms the tile in shared memory from both, so that a
  /// tile-load transform keeps the cp.async pipeline. The stage is registers where a thread's
  /// share of the tile fits in 4 chunks of 16 bytes (FlashFwdTraits::kVStageInRegs: plain
  /// 16-byte loads in flight during S = Q K^T; the transform then costs one read and one write of
  /// the tile in shared memory), else a second shared-memory tile `aux` filled by cp.async (a
  /// write and a read more: 6% of the d = 128 forward's ceiling in the performance model, but
  /// the d = 96 stage of 6 chunks does not fit in registers). A policy with 2 overrides
  /// load_v_raw and transform_v (these defaults call VanillaAttention's load_v, not a derived
  /// one). The backward's kernels call load_v.
  /// On the sm_90 forward (attention/flash_fwd_sm90.cuh), a policy with 2 also gives
  /// `RowsOperand v_aux_operand() const` (host and device: the second raw tile's rows, loaded by
  /// TMA beside V's with the same box and swizzle) and `v_mix(h_k)`, an object whose
  /// `template <class T> uint4 apply(uint4 v, uint4 aux) const` forms 8 elements of V from 8 of
  /// each raw tile at the same place (the transform is elementwise: the swizzle permutes both
  /// tiles alike). Three producer warps apply it in shared memory after the TMA lands, before
  /// the consumers' P V reads the tile: a read of both tiles and a write of one per (query tile,
  /// key tile) pair, off the consumers' registers (docs/performance.md has its cost).
  static constexpr int kRawVTiles = 1;

  STRATA_HOST_DEVICE Mask mask(const FlashFwdParams& p, const SeqBounds& sb) const {
    return Mask{sb.tq, sb.tk, p.is_causal, p.window_left};
  }

  template <int D, int Threads, class T>
  STRATA_DEVICE void load_q(T* dst, int ld, const FlashFwdParams& p, const TileSite& s, int nrows,
                            int tid) const {
    load_tile_rows<D, Threads>(
        dst, ld,
        head_rows(static_cast<const T*>(p.q), s.sb.q_begin, p.q_row_stride, s.h, p.q_head_stride),
        p.q_row_stride, s.row0, s.sb.tq, nrows, tid);
  }
  template <int D, int Threads, class T>
  STRATA_DEVICE void load_k(T* dst, int ld, const FlashFwdParams& p, const TileSite& s, int nrows,
                            int tid) const {
    load_tile_rows<D, Threads>(
        dst, ld,
        head_rows(static_cast<const T*>(p.k), s.sb.k_begin, p.k_row_stride, s.h_k, p.k_head_stride),
        p.k_row_stride, s.row0, s.sb.tk, nrows, tid);
  }
  template <int D, int Threads, class T>
  STRATA_DEVICE void load_v(T* dst, int ld, const FlashFwdParams& p, const TileSite& s, int nrows,
                            int tid) const {
    load_tile_rows<D, Threads>(
        dst, ld,
        head_rows(static_cast<const T*>(p.v), s.sb.k_begin, p.v_row_stride, s.h_k, p.v_head_stride),
        p.v_row_stride, s.row0, s.sb.tk, nrows, tid);
  }
  /// The forward's V tile when kRawVTiles = 2: V into dst, the second raw tile into `stage`
  /// (kInRegs: chunk c = tid + i Threads of tile_chunk's order in stage[i]) or `aux` ([rows][ld]);
  /// see kRawVTiles.
  template <int D, int Threads, bool kInRegs, int N, class T>
  STRATA_DEVICE void load_v_raw(T* dst, T* /*aux*/, uint4 (&/*stage*/)[N], int ld,
                                const FlashFwdParams& p, const TileSite& s, int nrows,
                                int tid) const {
    load_v<D, Threads>(dst, ld, p, s, nrows, tid);
  }
  /// Forms the V tile in dst from the raw tile in dst and the staged one, after every thread's
  /// copies landed; the kernel synchronises the block before and after.
  template <int D, int Threads, bool kInRegs, int N, class T>
  STRATA_DEVICE void transform_v(T* /*dst*/, const T* /*aux*/, const uint4 (&/*stage*/)[N],
                                 int /*ld*/, const TileSite& /*s*/, int /*nrows*/,
                                 int /*tid*/) const {}
  template <int D, int Threads, class T>
  STRATA_DEVICE void load_do(T* dst, int ld, const FlashBwdParams& p, const TileSite& s, int nrows,
                             int tid) const {
    load_tile_rows<D, Threads>(dst, ld,
                               head_rows(static_cast<const T*>(p.dout), s.sb.q_begin,
                                         p.do_row_stride, s.h, p.do_head_stride),
                               p.do_row_stride, s.row0, s.sb.tq, nrows, tid);
  }

  /// x = softmax_scale q.k (natural units) of query row q, key row k (within the sequence), head h.
  STRATA_HOST_DEVICE float logit(float x, int /*q*/, int /*k*/, int /*h*/) const { return x; }
  /// d logit(x) / dx.
  STRATA_HOST_DEVICE float logit_grad(float /*x*/, int /*q*/, int /*k*/, int /*h*/) const {
    return 1.f;
  }

  /// Stores one normalised output row (a row without keys arrives as zeros).
  template <class T, int N, class Sum>
  STRATA_HOST_DEVICE void store_o(const float (&o)[N], const FlashFwdParams& p, const RowSite& r,
                                  Sum /*sum*/) const {
    if (r.valid) store_fragment_row(static_cast<T*>(p.o), p.o_row_stride, p.o_head_stride, o, r);
  }

  /// D = rowsum(dO o O) of packed row `token`, head h (O and dO as stored).
  template <class T, int D>
  STRATA_HOST_DEVICE float preprocess(const FlashBwdParams& p, int64_t token, int h) const {
    const T* o = static_cast<const T*>(p.o) + token * p.o_row_stride + int64_t(h) * p.o_head_stride;
    const T* d_o =
        static_cast<const T*>(p.dout) + token * p.do_row_stride + int64_t(h) * p.do_head_stride;
    float acc = 0.f;
    STRATA_UNROLL_N(8)
    for (int e = 0; e < D; ++e) acc += core::to_float(o[e]) * core::to_float(d_o[e]);
    return acc;
  }

  /// Stores one row of dQ (the softmax scale applied).
  template <class T, int N, class Sum>
  STRATA_HOST_DEVICE void store_dq(const float (&dq)[N], const FlashBwdParams& p, const RowSite& r,
                                   Sum /*sum*/) const {
    if (r.valid)
      store_fragment_row(static_cast<T*>(p.dq), p.dq_row_stride, p.dq_head_stride, dq, r);
  }

  /// Stores one key row of dK (scale applied) and of dV' (the gradient of the V tile as loaded),
  /// summed over the GQA group; r.head is the KV head.
  template <class T, int N, class Sum>
  STRATA_HOST_DEVICE void store_dk_dv(const float (&dk)[N], const float (&dv)[N],
                                      const FlashBwdParams& p, const RowSite& r,
                                      Sum /*sum*/) const {
    if (!r.valid) return;
    store_fragment_row(static_cast<T*>(p.dk), p.dk_row_stride, p.dk_head_stride, dk, r);
    store_fragment_row(static_cast<T*>(p.dv), p.dv_row_stride, p.dv_head_stride, dv, r);
  }

  /// Writes a fragment row to a [rows, heads, d] operand, rounding to T.
  template <class T, int N>
  STRATA_HOST_DEVICE static void store_fragment_row(T* base, int64_t row_stride,
                                                    int64_t head_stride, const float (&x)[N],
                                                    const RowSite& r) {
    static_assert(N % 2 == 0, "fragment rows come in column pairs");
    T* out = base + r.token * row_stride + int64_t(r.head) * head_stride;
    STRATA_UNROLL
    for (int j = 0; j < N; j += 2) core::store_pair(out + r.col(j), x[j], x[j + 1]);
  }
};

STRATA_EXECUTOR_END

/// Whether variant V runs on the sm_90a kernels (attention/flash_fwd_sm90.cuh,
/// flash_bwd_sm90.cuh): TMA loads Q, K, V and dO as stored, so a variant that overrides load_q /
/// load_k / load_v / load_do must not; the forward's V may be formed from two raw tiles
/// (kRawVTiles = 2 with v_aux_operand and v_mix, Sm90VTransform); mask, logit, store and
/// preprocess hooks run there as in the sm_80 kernels. A derived variant is not on them until it
/// says so: specialise to true_type for one whose loads are VanillaAttention's or that gives the
/// sm_90 V transform (OutputGate, MeaOutputAttention, ValueResidual, ValueResidualGrad,
/// SharedValue, FirstValue).
template <class V>
struct Sm90Variant : std::is_same<V, VanillaAttention> {};

/// The sm_90 forward's V-transform hooks of a kRawVTiles = 2 variant (VanillaAttention's
/// kRawVTiles documents them); a variant with kRawVTiles = 1 needs none.
template <class V, class T>
concept Sm90VTransform = V::kRawVTiles == 1 || requires(const V v, uint4 x, int h_k) {
  { v.v_aux_operand() } -> std::same_as<RowsOperand>;
  { v.v_mix(h_k).template apply<T>(x, x) } -> std::same_as<uint4>;
};

/// The compile-time conformance check of a variant policy for storage type T and head dim D:
/// every hook present with the signature the kernels call, and the policy trivially copyable
/// (it travels as a kernel argument).
template <class V, class T, int D>
concept AttentionVariant = std::is_trivially_copyable_v<V> &&
    requires(const V v, T* dst, uint4 (&stage)[4], const FlashFwdParams& pf,
             const FlashBwdParams& pb, const SeqBounds& sb, const TileSite& site,
             const RowSite& row, const float (&frag)[D / 4], float x, int i, int64_t token) {
  { V::kTransformsLogits } -> std::convertible_to<bool>;
  requires V::kRawVTiles == 1 || V::kRawVTiles == 2;
  { v.template load_v_raw<D, 128, true>(dst, dst, stage, i, pf, site, i, i) } -> std::same_as<void>;
  {
    v.template load_v_raw<D, 128, false>(dst, dst, stage, i, pf, site, i, i)
    } -> std::same_as<void>;
  { v.template transform_v<D, 128, true>(dst, dst, stage, i, site, i, i) } -> std::same_as<void>;
  { v.template transform_v<D, 128, false>(dst, dst, stage, i, site, i, i) } -> std::same_as<void>;
  { v.mask(pf, sb) } -> std::same_as<Mask>;
  { v.template load_q<D, 128>(dst, i, pf, site, i, i) } -> std::same_as<void>;
  { v.template load_k<D, 128>(dst, i, pf, site, i, i) } -> std::same_as<void>;
  { v.template load_v<D, 128>(dst, i, pf, site, i, i) } -> std::same_as<void>;
  { v.template load_do<D, 128>(dst, i, pb, site, i, i) } -> std::same_as<void>;
  { v.logit(x, i, i, i) } -> std::same_as<float>;
  { v.logit_grad(x, i, i, i) } -> std::same_as<float>;
  { v.template store_o<T>(frag, pf, row, core::LocalSum{}) } -> std::same_as<void>;
  { v.template preprocess<T, D>(pb, token, i) } -> std::same_as<float>;
  { v.template store_dq<T>(frag, pb, row, core::LocalSum{}) } -> std::same_as<void>;
  { v.template store_dk_dv<T>(frag, frag, pb, row, core::LocalSum{}) } -> std::same_as<void>;
};

}  // namespace strata::attention
