/// \file
/// Attention of new tokens over a KV cache (decode and chunked prefill), with the G query heads of
/// a KV group packed into one tile (as FlashAttention's decode packs them into the sequence
/// dimension): a block owns 64 packed rows (token i, head g of the group) of one (sequence, KV
/// head) and walks that KV head's cache once for all of them, 64 keys per tile, gathered from the
/// pages by cp.async. Each warp owns one m16 tile of 16 rows and runs the forward's tensor-core
/// loop on it (S = Q K^T and O += P V on mma.m16n8k16, the online softmax in registers, base 2);
/// a warp whose rows are all past the chunk only helps load. At decode a tile has G real rows of
/// 64, so the padded mma cost nothing that matters: the step is bound by reading the cache, and
/// the pipeline keeps it streaming (V of a tile lands during S, the next tile's K during P V, its
/// page lookups during S). With num_splits > 1 each block covers one split of the key tiles
/// (flash-decoding) and writes fp32 partial outputs and LSE, which paged_attention_merge_kernel
/// combines by their LSE. An output gate (Gated Attention, ExoFormer) multiplies the final O
/// only: in the epilogue without splits, in the merge with.
#pragma once

#include <cstdint>

#include "strata/arch/sfu.hpp"
#include "strata/arch/warp.hpp"
#include "strata/attention/kv_cache.hpp"
#include "strata/attention/warp_gemm.cuh"
#include "strata/core/gate.hpp"
#include "strata/core/numeric.hpp"
#include "strata/core/online_softmax.hpp"
#include "strata/strata.cuh"

namespace strata::attention {

/// Most key splits of one row (the merge stages their LSE in shared memory).
inline constexpr int kMaxSplits = 256;

/// Tile shape of the paged attention kernel for head dimension D.
template <int D>
struct PagedAttentionTraits {
  static_assert(D % 32 == 0 && D <= 256, "head dimension: a multiple of 32");
  static constexpr int kWarps = 4;
  static constexpr int kThreads = 32 * kWarps;
  static constexpr int kRowsPerWarp = 16;                ///< one m16 tile of rows per warp
  static constexpr int kBlockM = kWarps * kRowsPerWarp;  ///< packed (token, group head) rows
  static constexpr int kBlockN = 64;                     ///< keys per tile
  static constexpr int kLd = D + 8;  ///< padded smem row (16-byte aligned, ldmatrix conflict-free)
  static constexpr int kChunks = D / 8;
  /// Q, K and V tiles (T), then two stages of the tile's K and V row offsets (int64): the next
  /// tile's page lookups overlap this one's S.
  template <class T>
  static constexpr size_t kSmemBytes = size_t(kBlockM + 2 * kBlockN) * kLd * sizeof(T) +
                                       2 * 2 * size_t(kBlockN) * sizeof(int64_t);
};

/// Grid: (query tiles of the longest packed chunk x splits, KV heads, sequences).
template <int D>
inline dim3 paged_attention_grid(const PagedAttentionParams& p) {
  const int64_t rows = int64_t(p.max_seqlen_q) * (p.h / p.cache.h_k);
  const int64_t tiles =
      (rows + PagedAttentionTraits<D>::kBlockM - 1) / PagedAttentionTraits<D>::kBlockM;
  return dim3(unsigned(tiles * p.num_splits), unsigned(p.cache.h_k), unsigned(p.cache.b));
}

/// fp32 partial outputs [splits, total_q, h, d] then partial LSE [splits, h, total_q].
inline size_t paged_attention_workspace_floats(const PagedAttentionParams& p) {
  if (p.num_splits <= 1 || p.total_q <= 0 || p.h <= 0 || p.cache.d <= 0) return 0;
  return size_t(p.num_splits) * size_t(p.total_q) * size_t(p.h) * size_t(p.cache.d + 1);
}

/// Key tiles [begin, end) of `bn` keys that split `split` of p.num_splits walks, narrowed to
/// the keys query tokens i_first .. i_last of a chunk (cache positions i + offset) can see:
/// up to the last one's position (causal), from the first one's window start (window_left).
struct KeyTiles {
  int begin, end;
};
STRATA_HOST_DEVICE KeyTiles split_key_tiles(const PagedAttentionParams& p, int tk, int offset,
                                            int bn, int split, int i_first, int i_last) {
  const int tiles = (tk + bn - 1) / bn, S = p.num_splits;
  const int per_split = (tiles + S - 1) / S;
  KeyTiles t{split * per_split,
             split * per_split + per_split < tiles ? split * per_split + per_split : tiles};
  if (p.is_causal) {
    const int key_end = i_last + offset + 1;  // exclusive
    const int t_end = key_end <= 0 ? 0 : (key_end + bn - 1) / bn;
    if (t_end < t.end) t.end = t_end;
  }
  if (p.window_left >= 0) {
    const int key_begin = i_first + offset - p.window_left;
    const int t_begin = key_begin <= 0 ? 0 : key_begin / bn;
    if (t_begin > t.begin) t.begin = t_begin;
  }
  return t;
}

STRATA_EXECUTOR_BEGIN

/// The output gate of the final O (Gated Attention, ExoFormer), or none: element e of row
/// (token, head) is O sigma(g) with the row's gate logit.
struct PagedGate {
  const void* gate;
  int64_t row_stride, head_stride;
  core::GateKind kind;
  STRATA_HOST_DEVICE static PagedGate of(const PagedAttentionParams& p) {
    return {p.gate, p.gate_row_stride, p.gate_head_stride, p.gate_kind};
  }
  template <class T>
  STRATA_DEVICE float element(float o, int64_t token, int head, int e) const {
    if (!gate) return o;
    const T* g = static_cast<const T*>(gate) + token * row_stride + int64_t(head) * head_stride;
    return o * core::sigmoid(core::to_float(g[kind == core::GateKind::kHeadwise ? 0 : e]));
  }
  /// The finish of a row (see paged_merge_row): element by element.
  template <class T, int N, class Col, class Sum>
  STRATA_DEVICE void apply(float (&o)[N], int64_t token, int head, Col col, Sum) const {
    STRATA_UNROLL
    for (int n = 0; n < N; ++n) o[n] = element<T>(o[n], token, head, col(n));
  }
};

/// Where a block's sequence sits: its new tokens [q0, q0 + tq) and its cache length tk, read by
/// thread 0 once per block and shared. Every thread of the block calls it.
struct CacheSeq {
  int q0, tq, tk;
};
STRATA_DEVICE CacheSeq read_cache_seq(const PagedAttentionParams& p, int s) {
  __shared__ int bounds[3];
  if (threadIdx.x == 0) {
    bounds[0] = p.cu_seqlens_q[s], bounds[1] = p.cu_seqlens_q[s + 1];
    bounds[2] = p.cache.seqlen(s);
  }
  __syncthreads();
  return {bounds[0], bounds[1] - bounds[0], bounds[2]};
}

/// cp.async of the Q tile (committed by the caller): packed row r is token q0 + (row0 + r) / n,
/// head head0 + (row0 + r) % n; rows at or past nrows are zero-filled.
template <class T, int D, int BM, int Threads>
STRATA_DEVICE void load_q_tile(T* qs, const PagedAttentionParams& p, int q0, int row0, int nrows,
                               int n, int head0) {
  constexpr int kChunks = D / 8, LD = D + 8;
  for (int c = int(threadIdx.x); c < BM * kChunks; c += Threads) {
    const int r = c / kChunks, e = (c % kChunks) * 8, pr = row0 + r;
    const bool ok = pr < nrows;
    const T* src = static_cast<const T*>(p.q);
    if (ok)
      src += int64_t(q0 + pr / n) * p.q_row_stride + int64_t(head0 + pr % n) * p.q_head_stride + e;
    arch::cp_async<16>(&qs[r * LD + e], src, ok ? 16 : 0);
  }
}

/// Stores this thread's elements of a finished row (token, head), already divided by the row's
/// sum: o[n] is element col(n); `sum` adds a value over the lanes that hold the row, and
/// `lse_writer` is the one of them that writes its LSE. Unsplit: `finish` maps the row
/// (PagedGate, MEA's output GroupNorm, which sums with `sum`), then O in T and the LSE. Split: the
/// fp32 partial and the split's LSE for the merge. Every lane holding the row calls it.
template <class T, int D, int N, class Col, class Sum, class Finish>
STRATA_DEVICE void store_row(const PagedAttentionParams& p, int split, int64_t token, int head,
                             float (&o)[N], Col col, Sum sum, bool lse_writer, float lse,
                             const Finish& finish) {
  const int S = p.num_splits;
  if (S == 1) {
    finish.template apply<T>(o, token, head, col, sum);
    T* out = static_cast<T*>(p.o) + token * p.o_row_stride + int64_t(head) * p.o_head_stride;
    STRATA_UNROLL
    for (int n = 0; n < N; ++n) out[col(n)] = core::from_float<T>(o[n]);
    if (lse_writer) p.lse[int64_t(head) * p.total_q + token] = lse;
  } else {
    float* w = p.workspace + ((int64_t(split) * p.total_q + token) * p.h + head) * D;
    STRATA_UNROLL
    for (int n = 0; n < N; ++n) w[col(n)] = o[n];
    if (lse_writer)
      p.workspace[int64_t(S) * p.total_q * p.h * D + (int64_t(split) * p.h + head) * p.total_q +
                  token] = lse;
  }
}

/// store_row of a row a warp holds whole: lane holds elements lane + 32 k.
template <class T, int E, class Finish>
STRATA_DEVICE void store_row(const PagedAttentionParams& p, int split, int64_t token, int head,
                             float (&o)[E], float lse, const Finish& finish) {
  const int lane = int(threadIdx.x) % 32;
  store_row<T, 32 * E>(
      p, split, token, head, o, [lane](int k) { return lane + 32 * k; }, arch::LaneGroupSum<32>{},
      lane == 0, lse, finish);
}

/// Which (packed row, key) pairs connect: packed row r is query token r / G at cache position
/// r / G + offset; keys past tk, after the token (causal) or before its window are cut.
struct PackedRowMask {
  int G, offset, tk, window_left;
  bool causal;
  STRATA_HOST_DEVICE int position(int r) const { return r / G + offset; }
  STRATA_HOST_DEVICE bool connected(int r, int k) const {
    const int q = position(r);
    return k < tk && (!causal || k <= q) && (window_left < 0 || k >= q - window_left);
  }
  /// Every pair of rows [r0, r1) x keys [k0, k1) connects (r1 > r0, k1 > k0).
  STRATA_HOST_DEVICE bool all_connected(int r0, int r1, int k0, int k1) const {
    return k1 <= tk && (!causal || k1 - 1 <= position(r0)) &&
           (window_left < 0 || k0 >= position(r1 - 1) - window_left);
  }
};

/// Page lookups of key tile kt: element offsets of each key's K and V rows (head hk), -1 past tk.
template <int BN, int Threads>
STRATA_DEVICE void lookup_key_rows(int64_t* rows, const PagedAttentionParams& p, int s, int hk,
                                   int tk, int kt) {
  for (int j = int(threadIdx.x); j < BN; j += Threads) {  // one page lookup per key, not per chunk
    const int pos = kt * BN + j;
    const int64_t slot = pos < tk ? p.cache.slot(s, pos) : -1;
    rows[j] = slot < 0 ? -1 : cache_offset(p.cache.k, p.cache.page_size, slot, hk);
    rows[BN + j] = slot < 0 ? -1 : cache_offset(p.cache.v, p.cache.page_size, slot, hk);
  }
}

/// cp.async of a K (or V) tile from the row offsets lookup_key_rows left; keys past tk are
/// zero-filled.
template <class T, int D, int BN, int Threads>
STRATA_DEVICE void load_key_tile(T* dst, const int64_t* rows, const void* base) {
  constexpr int kChunks = D / 8, LD = D + 8;
  for (int c = int(threadIdx.x); c < BN * kChunks; c += Threads) {
    const int j = c / kChunks, e = (c % kChunks) * 8;
    const int64_t row = rows[j];
    const T* src = static_cast<const T*>(base);
    if (row >= 0) src += row + e;
    arch::cp_async<16>(&dst[j * LD + e], src, row >= 0 ? 16 : 0);
  }
}

/// S = Q K^T of a warp's 16 rows (Q tile rows qrow ..) and NT n8 tiles of keys (K tile rows
/// key0 ..), masked where the tile straddles the mask (rows [r0, r1), keys n0 ..), then the
/// online softmax: `o` rescaled, sc left holding P (FlashAttention-2's loop, one m16 tile).
template <class T, int D, int NT>
STRATA_DEVICE void paged_scores(float (&sc)[1][NT][4], const T* Qs, int qrow, const T* Ks, int key0,
                                const PackedRowMask& mask, int r0, int r1, int n0, float scale_log2,
                                float (&o)[D / 8][4], core::OnlineSoftmax (&row_state)[2],
                                int lane) {
  constexpr int LD = D + 8;
  STRATA_UNROLL
  for (int t = 0; t < NT; ++t) {
    STRATA_UNROLL
    for (int i = 0; i < 4; ++i) sc[0][t][i] = 0.f;
  }
  // Q's fragments are reread from shared memory (in registers they would cost 2 D of them).
  STRATA_UNROLL
  for (int kk = 0; kk < D / 16; ++kk) {
    uint32_t qa[4];
    load_a(qa, Qs, LD, qrow, kk * 16, lane);
    STRATA_UNROLL
    for (int np = 0; np < NT / 2; ++np) {
      uint32_t b0[2], b1[2];
      load_b_nk(b0, b1, Ks, LD, key0 + np * 16, kk * 16, lane);
      arch::mma_m16n8k16<T>(sc[0][2 * np], qa, b0, sc[0][2 * np]);
      arch::mma_m16n8k16<T>(sc[0][2 * np + 1], qa, b1, sc[0][2 * np + 1]);
    }
  }
  // Only a tile that straddles the mask or the end of the cache is masked.
  if (!mask.all_connected(r0, r1, n0, n0 + 8 * NT)) mask_scores(mask, r0, n0, sc, lane);
  float tile_max[2] = {-INFINITY, -INFINITY};
  STRATA_UNROLL
  for (int t = 0; t < NT; ++t) {
    STRATA_UNROLL
    for (int i = 0; i < 4; ++i) tile_max[i / 2] = fmaxf(tile_max[i / 2], sc[0][t][i]);
  }
  float rescale[2], exp_offset[2];
  STRATA_UNROLL
  for (int rr = 0; rr < 2; ++rr) {
    rescale[rr] = row_state[rr].raise_max(arch::warp_max<4>(tile_max[rr]) * scale_log2);
    exp_offset[rr] = row_state[rr].exp_offset();
  }
  STRATA_UNROLL
  for (int t = 0; t < D / 8; ++t) {
    STRATA_UNROLL
    for (int i = 0; i < 4; ++i) o[t][i] *= rescale[i / 2];
  }
  float psum[2] = {0.f, 0.f};
  STRATA_UNROLL
  for (int t = 0; t < NT; ++t) {
    STRATA_UNROLL
    for (int i = 0; i < 4; ++i) {
      sc[0][t][i] = core::exp2_scaled(sc[0][t][i], scale_log2, exp_offset[i / 2]);
      psum[i / 2] += sc[0][t][i];
    }
  }
  row_state[0].add(psum[0]);
  row_state[1].add(psum[1]);
}

/// O += P V for the NT n8 tiles of keys paged_scores left in sc (V tile rows key0 ..): P's
/// accumulators are the next mma's A fragments.
template <class T, int D, int NT>
STRATA_DEVICE void paged_add_pv(const float (&sc)[1][NT][4], const T* Vs, int key0,
                                float (&o)[D / 8][4], int lane) {
  constexpr int LD = D + 8;
  STRATA_UNROLL
  for (int kp = 0; kp < NT / 2; ++kp) {
    uint32_t pa[4];
    acc_to_a<T>(pa, sc[0][2 * kp], sc[0][2 * kp + 1]);
    STRATA_UNROLL
    for (int dp = 0; dp < D / 16; ++dp) {
      uint32_t b0[2], b1[2];
      load_b_kn(b0, b1, Vs, LD, key0 + kp * 16, dp * 16, lane);
      arch::mma_m16n8k16<T>(o[2 * dp], pa, b0, o[2 * dp]);
      arch::mma_m16n8k16<T>(o[2 * dp + 1], pa, b1, o[2 * dp + 1]);
    }
  }
}

template <class T, int D>
__global__ void __launch_bounds__(PagedAttentionTraits<D>::kThreads, 1)
    paged_attention_kernel(const PagedAttentionParams p) {
  using Tr = PagedAttentionTraits<D>;
  constexpr int BM = Tr::kBlockM, BN = Tr::kBlockN, LD = Tr::kLd;
  STRATA_DYNAMIC_SMEM(T, Qs);                                // [BM][LD]
  T* Ks = Qs + BM * LD;                                      // [BN][LD]
  T* Vs = Ks + BN * LD;                                      // [BN][LD]
  int64_t* rows = reinterpret_cast<int64_t*>(Vs + BN * LD);  // [2 stages][K, V][BN]

  const int S = p.num_splits;
  const int split = int(blockIdx.x) % S, qtile = int(blockIdx.x) / S;
  const int hk = int(blockIdx.y), s = int(blockIdx.z);
  const int tid = int(threadIdx.x), lane = tid % 32, warp = tid / 32;
  const int G = p.h / p.cache.h_k;
  const CacheSeq sb = read_cache_seq(p, s);
  const int q0 = sb.q0, tq = sb.tq, tk = sb.tk;
  const int nrows = tq * G, row0 = qtile * BM;
  if (row0 >= nrows) return;   // uniform over the block
  const int offset = tk - tq;  // cache position of query i is i + offset
  const PackedRowMask mask{G, offset, tk, p.window_left, p.is_causal};

  // Key tiles of this split, narrowed to the keys the tile's rows can see.
  const int last_row = (row0 + BM < nrows ? row0 + BM : nrows) - 1;
  const KeyTiles kts = split_key_tiles(p, tk, offset, BN, split, row0 / G, last_row / G);
  const int kt_begin = kts.begin, kt_end = kts.end;

  // This warp's rows [w0, w1) of the chunk; a warp without any only helps load. (Splitting a
  // decode step's keys over the warps instead, with a softmax state per warp merged at the end,
  // was measured on an H200: 8% faster at 16-64 sequences, 16% slower at 256.)
  const int w0 = row0 + warp * 16, w1 = w0 + 16 < nrows ? w0 + 16 : nrows;
  const bool active = w0 < nrows;

  // Q tile: packed row r is token (row0 + r) / G, head hk G + (row0 + r) % G.
  load_q_tile<T, D, BM, Tr::kThreads>(Qs, p, q0, row0, nrows, G, hk * G);
  if (kt_begin < kt_end) {
    lookup_key_rows<BN, Tr::kThreads>(rows + (kt_begin & 1) * 2 * BN, p, s, hk, tk, kt_begin);
    __syncthreads();
    load_key_tile<T, D, BN, Tr::kThreads>(Ks, rows + (kt_begin & 1) * 2 * BN, p.cache.k.data);
  }
  arch::cp_async_commit();

  float o[D / 8][4] = {};
  core::OnlineSoftmax row_state[2];  // rows lane / 4 and lane / 4 + 8 of the warp's m16 tile
  const float scale_log2 = p.softmax_scale * core::kLog2e;

  for (int kt = kt_begin; kt < kt_end; ++kt) {
    const int64_t* cur = rows + (kt & 1) * 2 * BN;
    // K of this tile (and Q) landed; every warp is past the previous tile's O += P V, so V's
    // stage and the other stage of row offsets are free.
    arch::cp_async_wait<0>();
    __syncthreads();
    load_key_tile<T, D, BN, Tr::kThreads>(Vs, cur + BN, p.cache.v.data);
    arch::cp_async_commit();

    // The next tile's page lookups, read before its K is issued.
    if (kt + 1 < kt_end)
      lookup_key_rows<BN, Tr::kThreads>(rows + ((kt + 1) & 1) * 2 * BN, p, s, hk, tk, kt + 1);
    float sc[1][BN / 8][4];
    if (active)
      paged_scores<T, D, BN / 8>(sc, Qs, warp * 16, Ks, 0, mask, w0, w1, kt * BN, scale_log2, o,
                                 row_state, lane);

    // V landed, and every warp is past S: K's stage is free for the next tile's K, whose row
    // offsets this barrier also publishes.
    arch::cp_async_wait<0>();
    __syncthreads();
    if (kt + 1 < kt_end)
      load_key_tile<T, D, BN, Tr::kThreads>(Ks, rows + ((kt + 1) & 1) * 2 * BN, p.cache.k.data);
    arch::cp_async_commit();

    if (active) paged_add_pv<T, D, BN / 8>(sc, Vs, 0, o, lane);
  }
  arch::cp_async_wait<0>();  // no copy outlives the block (the Q tile of a split without keys)

  if (!active) return;

  // Epilogue: every row of the chunk is written, also one that saw no key (O = 0, LSE = -inf).
  // The quad of lanes sharing a row holds its 2 D / 8 columns in pairs.
  const PagedGate gate = PagedGate::of(p);
  STRATA_UNROLL
  for (int rr = 0; rr < 2; ++rr) {
    int r, col0;
    arch::mma_c_coord(lane, 2 * rr, r, col0);
    core::OnlineSoftmax total = row_state[rr];
    total.l = arch::warp_sum<4>(row_state[rr].l);
    const int pr = w0 + r;
    const float inv = total.inv_sum();
    float orow[2 * (D / 8)];
    STRATA_UNROLL
    for (int t = 0; t < D / 8; ++t) {
      orow[2 * t] = o[t][2 * rr] * inv;
      orow[2 * t + 1] = o[t][2 * rr + 1] * inv;
    }
    if (pr < nrows)  // PagedGate sums nothing: the quads of rows past the chunk may skip it
      store_row<T, D>(
          p, split, q0 + pr / G, hk * G + pr % G, orow,
          [col0](int n) { return col0 + 8 * (n / 2) + n % 2; }, arch::LaneGroupSum<4>{}, col0 == 0,
          total.lse(), gate);
  }
}

/// Sum over the D threads of a block (the merge's row), on every thread; every thread calls it.
template <int D>
struct BlockRowSum {
  float* red;  ///< D / 32 floats of shared memory
  STRATA_DEVICE float operator()(float x) const {
    x = arch::warp_sum(x);
    __syncthreads();  // the previous call's readers are done with `red`
    if (threadIdx.x % 32 == 0) red[threadIdx.x / 32] = x;
    __syncthreads();
    float s = 0.f;
    STRATA_UNROLL
    for (int w = 0; w < D / 32; ++w) s += red[w];
    return s;
  }
};

/// Merges S partial states of one (token, head) row by their LSE, the D threads of the block one
/// element each: LSE = log sum_s e^lse_s, O = sum_s e^(lse_s - LSE) O_s; a row without keys in
/// any state gets O = 0, LSE = -inf. lse_of(s) reads state s's LSE (natural log), o_of(s) its
/// element threadIdx.x; `lse_s` is S floats of shared memory. Every thread calls it, and each
/// thread reads only the element it returns: the output may overwrite a state in place.
template <int D, class LseOf, class OOf>
STRATA_DEVICE float merge_by_lse(int S, LseOf lse_of, OOf o_of, float* lse_s, float& lse) {
  for (int sp = int(threadIdx.x); sp < S; sp += D) lse_s[sp] = lse_of(sp);  // read once
  __syncthreads();
  float m = -INFINITY;
  for (int sp = 0; sp < S; ++sp) m = lse_s[sp] > m ? lse_s[sp] : m;
  float sum = 0.f, o = 0.f;
  if (m != -INFINITY) {
    for (int sp = 0; sp < S; ++sp) {
      const float w = arch::exp_e(lse_s[sp] - m);
      sum += w;
      o += w * o_of(sp);
    }
    o /= sum;
  }
  lse = m == -INFINITY ? m : m + arch::log_e(sum);
  return o;
}

/// The split-KV merge of one (token, head) row: merge_by_lse over the splits' fp32 partials in
/// the workspace; `finish.apply<T>(o, token, head, col, sum)` then maps the final O row in place
/// (PagedGate; MEA's output GroupNorm, a row-wide function that sums over the row with `sum`,
/// which every thread of the block calls).
template <class T, int D, class Finish>
STRATA_DEVICE void paged_merge_row(const PagedAttentionParams& p, const Finish& finish) {
  const int64_t token = blockIdx.x;
  const int head = int(blockIdx.y), e = int(threadIdx.x), S = p.num_splits;
  if (token >= p.cu_seqlens_q[p.cache.b]) return;  // padding (a graph's fixed batch): no partials
  __shared__ float lse_s[kMaxSplits];              // the row's partial LSE, read once
  __shared__ float red[D / 32];
  const float* lse_part = p.workspace + int64_t(S) * p.total_q * p.h * D;
  float lse, o[1];
  o[0] = merge_by_lse<D>(
      S, [&](int sp) { return lse_part[(int64_t(sp) * p.h + head) * p.total_q + token]; },
      [&](int sp) { return p.workspace[((int64_t(sp) * p.total_q + token) * p.h + head) * D + e]; },
      lse_s, lse);
  finish.template apply<T>(
      o, token, head, [e](int) { return e; }, BlockRowSum<D>{red});
  static_cast<T*>(p.o)[token * p.o_row_stride + int64_t(head) * p.o_head_stride + e] =
      core::from_float<T>(o[0]);
  if (e == 0) p.lse[int64_t(head) * p.total_q + token] = lse;
}

/// The split-KV merge of paged_attention_kernel: block (token, head), D threads.
template <class T, int D>
__global__ void __launch_bounds__(D) paged_attention_merge_kernel(const PagedAttentionParams p) {
  paged_merge_row<T, D>(p, PagedGate::of(p));
}

STRATA_EXECUTOR_END
}  // namespace strata::attention
