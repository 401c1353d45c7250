// Attention of new tokens over a KV cache (decode and chunked prefill), with the G query heads of
// a KV group packed into one tile (as FlashAttention's decode packs them into the sequence
// dimension): a block owns 64 packed rows (token i, head g of the group) of one (sequence, KV
// head) and walks that KV head's cache once for all of them, 64 keys per tile, gathered from the
// pages by cp.async. Each warp keeps 16 rows' online softmax (fp32, base 2) and outputs in
// registers; S = q.k and O += P V run on the CUDA cores: at decode a tile has only G real rows,
// so the step is bound by reading the cache, not by arithmetic. With num_splits > 1 each block
// covers one split of the key tiles (flash-decoding) and writes fp32 partial outputs and LSE,
// which paged_attention_merge_kernel combines by their LSE. An output gate (Gated Attention,
// ExoFormer) multiplies the final O only: in the epilogue without splits, in the merge with.
#pragma once

#include <cstdint>

#include "strata/arch/sfu.hpp"
#include "strata/arch/warp.hpp"
#include "strata/attention/kv_cache.hpp"
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
  static constexpr int kRowsPerWarp = 16;  ///< rows whose softmax state and outputs a warp holds
  static constexpr int kBlockM = kWarps * kRowsPerWarp;  ///< packed (token, group head) rows
  static constexpr int kBlockN = 64;                     ///< keys per tile
  static constexpr int kLd = D + 8;  ///< padded smem row (16-byte aligned, banks staggered)
  static constexpr int kChunks = D / 8;
  /// Q, K and V tiles (T), the warps' P rows (fp32) and the tile's K and V row offsets (int64).
  template <class T>
  static constexpr size_t kSmemBytes = size_t(kBlockM + 2 * kBlockN) * kLd * sizeof(T) +
                                       size_t(kWarps) * kBlockN * sizeof(float) +
                                       2 * size_t(kBlockN) * sizeof(int64_t);
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

/// Stores a warp's finished row (token, head): lane holds O elements lane + 32 k (already
/// divided by the row's sum). Unsplit: `finish` maps the row (PagedGate, MEA's output
/// GroupNorm; its sums run over the warp), then O in T and the LSE. Split: the fp32 partial and
/// the split's LSE for the merge. Every lane of the warp calls it.
template <class T, int E, class Finish>
STRATA_DEVICE void store_row(const PagedAttentionParams& p, int split, int64_t token, int head,
                             float (&o)[E], float lse, const Finish& finish) {
  constexpr int D = 32 * E;
  const int lane = int(threadIdx.x) % 32, S = p.num_splits;
  if (S == 1) {
    finish.template apply<T>(
        o, token, head, [lane](int k) { return lane + 32 * k; }, arch::LaneGroupSum<32>{});
    T* out = static_cast<T*>(p.o) + token * p.o_row_stride + int64_t(head) * p.o_head_stride;
    STRATA_UNROLL
    for (int k = 0; k < E; ++k) out[lane + 32 * k] = core::from_float<T>(o[k]);
    if (lane == 0) p.lse[int64_t(head) * p.total_q + token] = lse;
  } else {
    float* w = p.workspace + ((int64_t(split) * p.total_q + token) * p.h + head) * D;
    STRATA_UNROLL
    for (int k = 0; k < E; ++k) w[lane + 32 * k] = o[k];
    if (lane == 0)
      p.workspace[int64_t(S) * p.total_q * p.h * D + (int64_t(split) * p.h + head) * p.total_q +
                  token] = lse;
  }
}

template <class T, int D>
__global__ void __launch_bounds__(PagedAttentionTraits<D>::kThreads, 1)
    paged_attention_kernel(const PagedAttentionParams p) {
  using Tr = PagedAttentionTraits<D>;
  constexpr int BM = Tr::kBlockM, BN = Tr::kBlockN, LD = Tr::kLd, R = Tr::kRowsPerWarp;
  constexpr int E = D / 32;                            // output elements per lane: e = lane + 32 k
  STRATA_DYNAMIC_SMEM(T, Qs);                          // [BM][LD]
  T* Ks = Qs + BM * LD;                                // [BN][LD]
  T* Vs = Ks + BN * LD;                                // [BN][LD]
  float* Ps = reinterpret_cast<float*>(Vs + BN * LD);  // [warps][BN]
  // [2][BN]: element offset of key j's row (page and offset, head 0) in K and in V; -1 past tk
  int64_t* rows = reinterpret_cast<int64_t*>(Ps + Tr::kWarps * BN);

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

  // Key tiles of this split, narrowed to the keys the tile's rows can see.
  const int last_row = (row0 + BM < nrows ? row0 + BM : nrows) - 1;
  const KeyTiles kts = split_key_tiles(p, tk, offset, BN, split, row0 / G, last_row / G);
  const int kt_begin = kts.begin, kt_end = kts.end;

  // Q tile: packed row r is token (row0 + r) / G, head hk G + (row0 + r) % G.
  load_q_tile<T, D, BM, Tr::kThreads>(Qs, p, q0, row0, nrows, G, hk * G);
  arch::cp_async_commit();

  core::OnlineSoftmax sm[R];
  float acc[R][E];
  STRATA_UNROLL
  for (int rr = 0; rr < R; ++rr) {
    STRATA_UNROLL
    for (int k = 0; k < E; ++k) acc[rr][k] = 0.f;
  }
  const float scale_log2 = p.softmax_scale * core::kLog2e;
  float* prow = Ps + warp * BN;

  for (int kt = kt_begin; kt < kt_end; ++kt) {
    __syncthreads();  // the previous tile's K, V and row offsets are no longer read
    for (int j = tid; j < BN; j += Tr::kThreads) {  // one page lookup per key, not per chunk
      const int pos = kt * BN + j;
      const int64_t slot = pos < tk ? p.cache.slot(s, pos) : -1;
      rows[j] = slot < 0 ? -1 : cache_offset(p.cache.k, p.cache.page_size, slot, hk);
      rows[BN + j] = slot < 0 ? -1 : cache_offset(p.cache.v, p.cache.page_size, slot, hk);
    }
    __syncthreads();
    for (int c = tid; c < 2 * BN * Tr::kChunks; c += Tr::kThreads) {
      const bool is_v = c >= BN * Tr::kChunks;
      const int cc = is_v ? c - BN * Tr::kChunks : c;
      const int j = cc / Tr::kChunks, e = (cc % Tr::kChunks) * 8;
      const int64_t row = rows[(is_v ? BN : 0) + j];
      const T* src = static_cast<const T*>(is_v ? p.cache.v.data : p.cache.k.data);
      if (row >= 0) src += row + e;
      arch::cp_async<16>(&(is_v ? Vs : Ks)[j * LD + e], src, row >= 0 ? 16 : 0);
    }
    arch::cp_async_commit();
    arch::cp_async_wait_all();
    __syncthreads();

    // Unrolled so that the rows' state stays in registers; a row past the chunk is skipped by
    // the whole warp.
    STRATA_UNROLL
    for (int rr = 0; rr < R; ++rr) {
      const int r = warp * R + rr, pr = row0 + r;
      if (pr >= nrows) continue;
      const int qpos = pr / G + offset;
      float x[2];
      STRATA_UNROLL
      for (int h2 = 0; h2 < 2; ++h2) {
        const int j = lane + 32 * h2, kpos = kt * BN + j;
        const bool connected = kpos < tk && (!p.is_causal || kpos <= qpos) &&
                               (p.window_left < 0 || kpos >= qpos - p.window_left);
        float dot = 0.f;
        STRATA_UNROLL_N(2)
        for (int e = 0; e < D; ++e)
          dot += core::to_float(Qs[r * LD + e]) * core::to_float(Ks[j * LD + e]);
        x[h2] = connected ? dot * scale_log2 : -INFINITY;
      }
      const float alpha = sm[rr].raise_max(arch::warp_max(x[0] > x[1] ? x[0] : x[1]));
      const float p0 = sm[rr].weight(x[0]), p1 = sm[rr].weight(x[1]);
      sm[rr].add(arch::warp_sum(p0 + p1));
      prow[lane] = p0;
      prow[lane + 32] = p1;
      arch::syncwarp();
      STRATA_UNROLL
      for (int k = 0; k < E; ++k) {
        float a = acc[rr][k] * alpha;
        for (int j = 0; j < BN; ++j) a += prow[j] * core::to_float(Vs[j * LD + lane + 32 * k]);
        acc[rr][k] = a;
      }
      arch::syncwarp();  // prow is rewritten by the next row
    }
  }

  arch::cp_async_wait_all();  // no copy outlives the block (the Q tile of a split without keys)

  // Epilogue: every row of the tile is written, also one that saw no key (O = 0, LSE = -inf).
  const PagedGate gate = PagedGate::of(p);
  STRATA_UNROLL
  for (int rr = 0; rr < R; ++rr) {
    const int pr = row0 + warp * R + rr;
    if (pr >= nrows) continue;
    const float inv = sm[rr].inv_sum();
    float o[E];
    STRATA_UNROLL
    for (int k = 0; k < E; ++k) o[k] = acc[rr][k] * inv;
    store_row<T>(p, split, q0 + pr / G, hk * G + pr % G, o, sm[rr].lse(), gate);
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
