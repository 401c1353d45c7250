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

STRATA_EXECUTOR_BEGIN

/// Element e of the final output row (token, head): O, or O sigma(g) with the row's gate logit.
template <class T>
STRATA_DEVICE float paged_output(float o, const PagedAttentionParams& p, int64_t token, int head,
                                 int e) {
  if (!p.gate) return o;
  const T* g = static_cast<const T*>(p.gate) + token * p.gate_row_stride +
               int64_t(head) * p.gate_head_stride;
  return o * core::sigmoid(core::to_float(g[p.gate_kind == core::GateKind::kHeadwise ? 0 : e]));
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
  __shared__ int bounds[3];  // the sequence's offsets and cache length, read once per block
  if (tid == 0) {
    bounds[0] = p.cu_seqlens_q[s], bounds[1] = p.cu_seqlens_q[s + 1];
    bounds[2] = p.cache.seqlen(s);
  }
  __syncthreads();
  const int q0 = bounds[0], tq = bounds[1] - q0, tk = bounds[2];
  const int nrows = tq * G, row0 = qtile * BM;
  if (row0 >= nrows) return;   // uniform over the block
  const int offset = tk - tq;  // cache position of query i is i + offset

  // Key tiles of this split, narrowed to the keys the tile's rows can see.
  const int tiles = (tk + BN - 1) / BN;
  const int per_split = (tiles + S - 1) / S;
  int kt_begin = split * per_split,
      kt_end = kt_begin + per_split < tiles ? kt_begin + per_split : tiles;
  const int last_row = (row0 + BM < nrows ? row0 + BM : nrows) - 1;
  const int i_first = row0 / G, i_last = last_row / G;  // the tile's first and last tokens
  if (p.is_causal) {
    const int key_end = i_last + offset + 1;  // exclusive
    const int t_end = key_end <= 0 ? 0 : (key_end + BN - 1) / BN;
    if (t_end < kt_end) kt_end = t_end;
  }
  if (p.window_left >= 0) {
    const int key_begin = i_first + offset - p.window_left;
    const int t_begin = key_begin <= 0 ? 0 : key_begin / BN;
    if (t_begin > kt_begin) kt_begin = t_begin;
  }

  // Q tile: packed row r is token (row0 + r) / G, head hk G + (row0 + r) % G.
  for (int c = tid; c < BM * Tr::kChunks; c += Tr::kThreads) {
    const int r = c / Tr::kChunks, e = (c % Tr::kChunks) * 8, pr = row0 + r;
    const bool ok = pr < nrows;
    const T* src = static_cast<const T*>(p.q);
    if (ok)
      src += int64_t(q0 + pr / G) * p.q_row_stride + int64_t(hk * G + pr % G) * p.q_head_stride + e;
    arch::cp_async<16>(&Qs[r * LD + e], src, ok ? 16 : 0);
  }
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
  STRATA_UNROLL
  for (int rr = 0; rr < R; ++rr) {
    const int pr = row0 + warp * R + rr;
    if (pr >= nrows) continue;
    const int64_t token = q0 + pr / G;
    const int head = hk * G + pr % G;
    const float inv = sm[rr].inv_sum();
    if (S == 1) {
      T* o = static_cast<T*>(p.o) + token * p.o_row_stride + int64_t(head) * p.o_head_stride;
      STRATA_UNROLL
      for (int k = 0; k < E; ++k)
        o[lane + 32 * k] =
            core::from_float<T>(paged_output<T>(acc[rr][k] * inv, p, token, head, lane + 32 * k));
      if (lane == 0) p.lse[int64_t(head) * p.total_q + token] = sm[rr].lse();
    } else {
      float* o = p.workspace + ((int64_t(split) * p.total_q + token) * p.h + head) * D;
      STRATA_UNROLL
      for (int k = 0; k < E; ++k) o[lane + 32 * k] = acc[rr][k] * inv;
      if (lane == 0) {
        float* lse = p.workspace + int64_t(S) * p.total_q * p.h * D;
        lse[(int64_t(split) * p.h + head) * p.total_q + token] = sm[rr].lse();
      }
    }
  }
}

/// Merges the splits' partial outputs of one (token, head) row by their LSE: block (token, head),
/// D threads. LSE = log sum_s e^lse_s; O = sum_s e^(lse_s - LSE) O_s; a row without keys in any
/// split gets O = 0, LSE = -inf.
template <class T, int D>
__global__ void __launch_bounds__(D) paged_attention_merge_kernel(const PagedAttentionParams p) {
  const int64_t token = blockIdx.x;
  const int head = int(blockIdx.y), e = int(threadIdx.x), S = p.num_splits;
  if (token >= p.cu_seqlens_q[p.cache.b]) return;  // padding (a graph's fixed batch): no partials
  __shared__ float lse_s[kMaxSplits];              // the row's partial LSE, read once
  const float* lse_part = p.workspace + int64_t(S) * p.total_q * p.h * D;
  for (int sp = e; sp < S; sp += D)
    lse_s[sp] = lse_part[(int64_t(sp) * p.h + head) * p.total_q + token];
  __syncthreads();
  float m = -INFINITY;
  for (int sp = 0; sp < S; ++sp) m = lse_s[sp] > m ? lse_s[sp] : m;
  float sum = 0.f, o = 0.f;
  if (m != -INFINITY) {
    for (int sp = 0; sp < S; ++sp) {
      const float w = expf(lse_s[sp] - m);
      sum += w;
      o += w * p.workspace[((int64_t(sp) * p.total_q + token) * p.h + head) * D + e];
    }
    o /= sum;
  }
  static_cast<T*>(p.o)[token * p.o_row_stride + int64_t(head) * p.o_head_stride + e] =
      core::from_float<T>(paged_output<T>(o, p, token, head, e));
  if (e == 0) p.lse[int64_t(head) * p.total_q + token] = m == -INFINITY ? m : m + logf(sum);
}

STRATA_EXECUTOR_END
}  // namespace strata::attention
