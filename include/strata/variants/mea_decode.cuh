/// \file
/// MEA decode (SPEC §4c, decisions §7.5): attention of new tokens over a cache that holds the H_c
/// component heads of MEA's virtual heads, with K' and V' composed inside the tile, never in
/// memory.
///
/// What the cache holds, per site:
///   KeyValue  K_c and V_c as projected. The composite key of cached token s is
///             k'_h(s) = RoPE_s(GN_k(sum_c A^K[c,h] K_c[c](s))): the GroupNorm needs the whole
///             composite row and RoPE comes after it, so both run in the tile, at the key's cache
///             position s. v'_h(s) = GN_v(sum_c A^V[c,h] V_c[c](s)).
///   Output    RoPE(K_c) (rotated at append: HLC commutes with RoPE) and V_c. k'_h = sum_c A^K[c,h]
///             RoPE(K_c)[c], v'_h likewise; the GroupNorm runs on each head's final O: in the
///             epilogue without splits, after the merge with them (a row-wide nonlinearity never
///             runs on a split's partial output).
/// Each composite row is composed in fp32 and rounded to T once, like the training pass's k_attn,
/// v_attn (KeyValue) and the Output site's tile composition: decoding reads the same operands the
/// full forward reads.
///
/// Why compose, not absorb the query (MLA's trick, SPEC §4c (ii)): per cached key a step composes
/// 2 H_kv H_c d multiply-adds and scores and weights 2 H d; absorbing A into the queries costs
/// 2 H H_c d (an MQA over one wide key and value). Composing is cheaper for G = H / H_kv >= 2 and
/// H_c >= 2; at G = 1 absorbing saves a 1 / (H_c + 1) share but holds H_c d accumulators per row
/// and is valid only at the Output site (cost::mea_decode_compose_flops, mea_decode_absorb_flops).
///
/// Work layout. A block owns 64 packed rows (token i, query head h) of one sequence — every query
/// head, so that one block reads each component row of the cache once for all composite heads (a
/// decode step of H <= 64 heads: one block per sequence and split). A tile is BNk keys
/// (mea_decode_keys_per_tile: BNk H_c <= 64 component rows and BNk H_kv <= 64 composite rows):
///   1. the page lookup of each key, then cp.async of its H_c component rows of K and of V;
///   2. half-warps compose the tile's K' rows (the composite heads the block's rows use);
///   3. each warp scores its 16 rows: 32 / BNk lanes per key split the dot product over d, and
///      the row's online softmax (fp32, base 2) keeps P in shared memory;
///   4. half-warps compose V' into the same buffer, and the warps add P V' to their rows.
/// With num_splits > 1 the blocks write the same fp32 partials as paged_attention_kernel and
/// mea_paged_merge_kernel combines them (paged_merge_row) before the Output site's GroupNorm.
#pragma once

#include <cstddef>
#include <cstdint>

#include "strata/attention/paged_attention.cuh"
#include "strata/core/defaults.hpp"
#include "strata/core/group_norm.hpp"
#include "strata/core/rope.hpp"
#include "strata/variants/qk_norm_rope.cuh"  // LaneRow

namespace strata::variants {

/// The MEA part of an attention over a component-head cache (kernel arguments). The attention's
/// PagedAttentionParams::cache holds cache.h_k = H_c component heads.
struct MeaPagedArgs {
  int h_kv = 0;                ///< composite heads H_kv (h % h_kv == 0)
  const float* a_k = nullptr;  ///< A^K, A^V [h_c, h_kv] fp32 row-major
  const float* a_v = nullptr;
  /// Site KeyValue: GroupNorm on each composite row (gains [h_kv, d] fp32), then RoPE of the key
  /// at its cache position (with `rope`)
  bool kv_norm = true;
  const float* gamma_k = nullptr;
  const float* beta_k = nullptr;
  const float* gamma_v = nullptr;
  const float* beta_v = nullptr;
  bool rope = defaults::kRope;
  float rope_theta = paper::kMeaRopeTheta;
  float eps = defaults::kGroupNormEps;  ///< GroupNorm epsilon (both sites)
  /// Site Output: GroupNorm of each head's final O row (gains [h, d] fp32); null at KeyValue
  const float* gamma_o = nullptr;
  const float* beta_o = nullptr;
};

/// Tile shape of the MEA decode kernel for head dimension D.
template <int D>
struct MeaPagedTraits {
  static_assert(D % 32 == 0 && D <= 256, "head dimension: a multiple of 32");
  static constexpr int kWarps = 4;
  static constexpr int kThreads = 32 * kWarps;
  static constexpr int kRowsPerWarp = 16;
  static constexpr int kBlockM = kWarps * kRowsPerWarp;  ///< packed (token, query head) rows
  static constexpr int kTileRows = 64;  ///< component rows and composite rows a tile holds
  static constexpr int kMaxKeys = 32;   ///< keys per tile at most
  static constexpr int kLd = D + 8;     ///< padded smem row (16-byte aligned, banks staggered)
  static constexpr int kChunks = D / 8;
};

/// Keys per tile BNk: the largest power of two <= 32 with BNk max(H_c, H_kv) <= 64.
STRATA_HOST_DEVICE int mea_decode_keys_per_tile(int h_c, int h_kv) {
  const int rows = h_c > h_kv ? h_c : h_kv;
  int n = 32;
  while (n > 1 && n * rows > 64) n /= 2;
  return n;
}

/// Dynamic shared memory of the kernel: the Q tile, K and V component rows and the composite
/// rows (T), P (fp32), the component rows' offsets (int64), the KeyValue gains of the block's
/// composite heads and A^K, A^V (fp32).
STRATA_HOST_DEVICE size_t mea_decode_smem_bytes(int d, int h_c, int h_kv, bool kv_norm,
                                                size_t elem_bytes) {
  const size_t ld = size_t(d) + 8, rows = 64;
  return (rows + 2 * rows + rows) * ld * elem_bytes + rows * 32 * sizeof(float) +
         2 * rows * sizeof(int64_t) + (kv_norm ? 4 * size_t(h_kv) * size_t(d) * sizeof(float) : 0) +
         2 * size_t(h_c) * size_t(h_kv) * sizeof(float);
}

/// Grid: (row tiles of the longest chunk x splits, 1, sequences); a row tile holds 64 (token,
/// query head) rows.
inline dim3 mea_decode_grid(const attention::PagedAttentionParams& p) {
  const int64_t tiles = (int64_t(p.max_seqlen_q) * p.h + 63) / 64;
  return dim3(unsigned(tiles * p.num_splits), 1u, unsigned(p.cache.b));
}

STRATA_EXECUTOR_BEGIN

/// The finish of a final O row at the Output site: out = GN_o(O rounded to T) — the GroupNorm of
/// O as the full forward stores it (MeaOutputAttention::store_o). Nothing at KeyValue.
struct MeaOutputNorm {
  const float* gamma;
  const float* beta;
  float eps;
  int d;
  template <class T, int N, class Col, class Sum>
  STRATA_DEVICE void apply(float (&o)[N], int64_t, int head, Col col, Sum sum) const {
    if (!gamma) return;
    float x[N], g[N], b[N];
    STRATA_UNROLL
    for (int n = 0; n < N; ++n) {
      x[n] = core::to_float(core::from_float<T>(o[n]));
      g[n] = gamma[int64_t(head) * d + col(n)];
      b[n] = beta[int64_t(head) * d + col(n)];
    }
    core::group_norm_forward(x, g, b, d, eps, o, sum);
  }
};

namespace mea_decode_detail {

/// Composite rows (head hk_lo + i / bnk, key j = i % bnk) of the tile, i < nkv bnk, from the
/// staged component rows cs[(j h_c + c) ld]: HLC in fp32, at KeyValue the GroupNorm (and RoPE of
/// the key at cache position key0 + j), one rounding to T into xs[i ld]. A half-warp per row;
/// both halves of a warp run every iteration (the GroupNorm's sums shuffle over the warp).
template <class T, int D, int Warps>
STRATA_DEVICE void compose(T* xs, const T* cs, const float* a, const float* gains,
                           const MeaPagedArgs& m, int h_c, int hk_lo, int nkv, int bnk, int key0,
                           bool is_k) {
  constexpr int LD = D + 8, N = D / 16, kHalf = D / 32;
  const int tid = int(threadIdx.x), warp = tid / 32, half = (tid % 32) / 16;
  const LaneRow<D, 16> rw{(tid % 16) * kHalf};
  const int n = nkv * bnk;
  for (int base = 2 * warp; base < n; base += 2 * Warps) {  // uniform over the warp
    const bool valid = base + half < n;
    const int i = valid ? base + half : n - 1, hl = i / bnk, j = i % bnk;
    float x[N];
    STRATA_UNROLL
    for (int e = 0; e < N; ++e) x[e] = 0.f;
    for (int c = 0; c < h_c; ++c) {
      const float w = a[c * m.h_kv + hk_lo + hl];
      const T* row = cs + (j * h_c + c) * LD;
      STRATA_UNROLL
      for (int e = 0; e < N; ++e) x[e] += w * core::to_float(row[rw.col(e)]);
    }
    if (m.kv_norm) {
      const float* gs = gains + ((is_k ? 0 : 2) * nkv + hl) * D;  // gamma, then beta nkv rows on
      float g[N], b[N];
      STRATA_UNROLL
      for (int e = 0; e < N; ++e) g[e] = gs[rw.col(e)], b[e] = gs[nkv * D + rw.col(e)];
      core::group_norm_forward(x, g, b, D, m.eps, x, arch::LaneGroupSum<16>{});
      if (is_k && m.rope) {
        STRATA_UNROLL
        for (int e = 0; e < kHalf; ++e) {
          float c, s;
          core::rope_cos_sin(float(key0 + j), rw.col0 + e, D, m.rope_theta, c, s);
          core::rope_rotate(x[e], x[e + kHalf], c, s);
        }
      }
    }
    if (valid) {
      STRATA_UNROLL
      for (int e = 0; e < N; ++e) xs[i * LD + rw.col(e)] = core::from_float<T>(x[e]);
    }
  }
}

}  // namespace mea_decode_detail

/// Attention of the new tokens over an MEA component-head cache: grid mea_decode_grid(p), block
/// kThreads, dynamic shared memory mea_decode_smem_bytes. Writes o and lse (num_splits == 1) or
/// the fp32 partials of paged_attention_kernel's layout (then mea_paged_merge_kernel).
template <class T, int D>
__global__ void __launch_bounds__(MeaPagedTraits<D>::kThreads, 1)
    mea_paged_attention_kernel(const attention::PagedAttentionParams p, const MeaPagedArgs m) {
  using Tr = MeaPagedTraits<D>;
  constexpr int BM = Tr::kBlockM, TR = Tr::kTileRows, LD = Tr::kLd, R = Tr::kRowsPerWarp;
  constexpr int KM = Tr::kMaxKeys, E = D / 32;  // output elements per lane: e = lane + 32 k
  STRATA_DYNAMIC_SMEM(T, Qs);                   // [BM][LD]
  T* Cs = Qs + BM * LD;      // [2][TR][LD]: K_c, V_c rows (key j, component c) at j h_c + c
  T* Xs = Cs + 2 * TR * LD;  // [TR][LD]: composite rows (head hk_lo + i / BNk, key i % BNk)
  float* Ps = reinterpret_cast<float*>(Xs + TR * LD);        // [BM][KM]: P of each row
  int64_t* rows = reinterpret_cast<int64_t*>(Ps + BM * KM);  // [2][TR]: K, V row offsets
  // KeyValue: gamma_k, beta_k, gamma_v, beta_v of the block's composite heads, [4][nkv][D]
  float* gains = reinterpret_cast<float*>(rows + 2 * TR);
  float* as = gains + (m.kv_norm ? 4 * m.h_kv * D : 0);  // A^K, A^V [2][h_c][h_kv]

  const int S = p.num_splits;
  const int split = int(blockIdx.x) % S, qtile = int(blockIdx.x) / S, s = int(blockIdx.z);
  const int tid = int(threadIdx.x), lane = tid % 32, warp = tid / 32;
  const int H = p.h, h_c = p.cache.h_k, G = H / m.h_kv;
  const int bnk = mea_decode_keys_per_tile(h_c, m.h_kv);
  const attention::CacheSeq sb = attention::read_cache_seq(p, s);
  const int q0 = sb.q0, tq = sb.tq, tk = sb.tk;
  const int nrows = tq * H, row0 = qtile * BM;
  if (row0 >= nrows) return;   // uniform over the block
  const int offset = tk - tq;  // cache position of query i is i + offset
  const int last_row = (row0 + BM < nrows ? row0 + BM : nrows) - 1;
  const attention::KeyTiles kts =
      attention::split_key_tiles(p, tk, offset, bnk, split, row0 / H, last_row / H);
  // the composite heads the rows use: all of them once the tile spans two tokens
  const bool one_token = row0 / H == last_row / H;
  const int hk_lo = one_token ? (row0 % H) / G : 0;
  const int nkv = one_token ? (last_row % H) / G - hk_lo + 1 : m.h_kv;

  // Q tile: packed row r is token (row0 + r) / H, head (row0 + r) % H.
  attention::load_q_tile<T, D, BM, Tr::kThreads>(Qs, p, q0, row0, nrows, H, 0);
  arch::cp_async_commit();
  // The block's parameters, read once: A^K, A^V and the KeyValue gains of its composite heads.
  const int na = h_c * m.h_kv;
  for (int i = tid; i < 2 * na; i += Tr::kThreads) as[i] = i < na ? m.a_k[i] : m.a_v[i - na];
  if (m.kv_norm) {
    for (int i = tid; i < 4 * nkv * D; i += Tr::kThreads) {
      const int which = i / (nkv * D), r = i % (nkv * D);
      const float* src = which == 0   ? m.gamma_k
                         : which == 1 ? m.beta_k
                         : which == 2 ? m.gamma_v
                                      : m.beta_v;  // selected, not indexed: no local array
      gains[i] = src[int64_t(hk_lo) * D + r];
    }
  }

  core::OnlineSoftmax sm[R];
  float acc[R][E];
  STRATA_UNROLL
  for (int rr = 0; rr < R; ++rr) {
    STRATA_UNROLL
    for (int k = 0; k < E; ++k) acc[rr][k] = 0.f;
  }
  const float scale_log2 = p.softmax_scale * core::kLog2e;
  const int W = 32 / bnk, kj = lane / W, part = lane % W;  // W lanes score key kj of a tile
  const int ncomp = bnk * h_c;

  for (int kt = kts.begin; kt < kts.end; ++kt) {
    const int key0 = kt * bnk;
    __syncthreads();  // the previous tile's rows, offsets, composites and P are no longer read
    for (int j = tid; j < bnk; j += Tr::kThreads) {  // one page lookup per key
      const int pos = key0 + j;
      const int64_t slot = pos < tk ? p.cache.slot(s, pos) : -1;
      for (int c = 0; c < h_c; ++c) {
        rows[j * h_c + c] = slot < 0 ? -1 : cache_offset(p.cache.k, p.cache.page_size, slot, c);
        rows[TR + j * h_c + c] =
            slot < 0 ? -1 : cache_offset(p.cache.v, p.cache.page_size, slot, c);
      }
    }
    __syncthreads();
    for (int c = tid; c < 2 * ncomp * Tr::kChunks; c += Tr::kThreads) {
      const bool is_v = c >= ncomp * Tr::kChunks;
      const int cc = is_v ? c - ncomp * Tr::kChunks : c;
      const int r = cc / Tr::kChunks, e = (cc % Tr::kChunks) * 8;
      const int64_t row = rows[(is_v ? TR : 0) + r];
      const T* src = static_cast<const T*>(is_v ? p.cache.v.data : p.cache.k.data);
      if (row >= 0) src += row + e;
      arch::cp_async<16>(&Cs[((is_v ? TR : 0) + r) * LD + e], src, row >= 0 ? 16 : 0);
    }
    arch::cp_async_commit();
    arch::cp_async_wait_all();
    __syncthreads();
    mea_decode_detail::compose<T, D, Tr::kWarps>(Xs, Cs, as, gains, m, h_c, hk_lo, nkv, bnk, key0,
                                                 true);
    __syncthreads();

    // Scores: a warp's rows one at a time, W lanes per key; a row past the chunk is skipped by
    // the whole warp.
    STRATA_UNROLL
    for (int rr = 0; rr < R; ++rr) {
      const int r = warp * R + rr, pr = row0 + r;
      if (pr >= nrows) continue;
      const int qpos = pr / H + offset, kpos = key0 + kj;
      const T* qr = Qs + r * LD;
      const T* xr = Xs + ((pr % H) / G - hk_lo) * bnk * LD + kj * LD;
      float dot = 0.f;
      for (int e = part; e < D; e += W) dot += core::to_float(qr[e]) * core::to_float(xr[e]);
      for (int off = W / 2; off > 0; off /= 2) dot += arch::shfl_xor(dot, off);
      const bool connected = kpos < tk && (!p.is_causal || kpos <= qpos) &&
                             (p.window_left < 0 || kpos >= qpos - p.window_left);
      const float x = connected ? dot * scale_log2 : -INFINITY;
      const float alpha = sm[rr].raise_max(arch::warp_max(x));
      STRATA_UNROLL
      for (int k = 0; k < E; ++k) acc[rr][k] *= alpha;  // before this tile's P V' is added
      const float w = sm[rr].weight(x);
      sm[rr].add(arch::warp_sum(part == 0 ? w : 0.f));
      if (part == 0) Ps[r * KM + kj] = w;
    }
    __syncthreads();  // K' is no longer read
    mea_decode_detail::compose<T, D, Tr::kWarps>(Xs, Cs + TR * LD, as + na, gains, m, h_c, hk_lo,
                                                 nkv, bnk, key0, false);
    __syncthreads();
    STRATA_UNROLL
    for (int rr = 0; rr < R; ++rr) {
      const int r = warp * R + rr, pr = row0 + r;
      if (pr >= nrows) continue;
      const T* xr = Xs + ((pr % H) / G - hk_lo) * bnk * LD;
      STRATA_UNROLL
      for (int k = 0; k < E; ++k) {
        float a = acc[rr][k];
        for (int j = 0; j < bnk; ++j)
          a += Ps[r * KM + j] * core::to_float(xr[j * LD + lane + 32 * k]);
        acc[rr][k] = a;
      }
    }
  }

  arch::cp_async_wait_all();  // no copy outlives the block (the Q tile of a split without keys)

  // Epilogue: every row of the tile is written, also one that saw no key (O = 0, LSE = -inf).
  const MeaOutputNorm finish{m.gamma_o, m.beta_o, m.eps, D};
  STRATA_UNROLL
  for (int rr = 0; rr < R; ++rr) {
    const int pr = row0 + warp * R + rr;
    if (pr >= nrows) continue;
    const float inv = sm[rr].inv_sum();
    float o[E];
    STRATA_UNROLL
    for (int k = 0; k < E; ++k) o[k] = acc[rr][k] * inv;
    attention::store_row<T>(p, split, q0 + pr / H, pr % H, o, sm[rr].lse(), finish);
  }
}

/// The split-KV merge of mea_paged_attention_kernel: block (token, head), D threads; the Output
/// site's GroupNorm runs on the merged row.
template <class T, int D>
__global__ void __launch_bounds__(D)
    mea_paged_merge_kernel(const attention::PagedAttentionParams p, const MeaPagedArgs m) {
  attention::paged_merge_row<T, D>(p, MeaOutputNorm{m.gamma_o, m.beta_o, m.eps, D});
}

STRATA_EXECUTOR_END
}  // namespace strata::variants
