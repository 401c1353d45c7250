/// \file
/// Flash-attention backward on tensor cores (sm_80 path). Two modes
/// (FlashBwdParams::deterministic):
///
/// Deterministic (the default): every gradient element is accumulated in registers of one thread
/// in a fixed order and written once, so results are bitwise identical from run to run and with
/// any number of simulator workers. Three kernels, seven matrix products per tile pair:
///  1. preprocess: D = rowsum(dO o O) per (query, head), fp32 (the softmax backward's correction);
///  2. dQ: one block per query tile (kBlockM) streams the key tiles, computes dP = dO V^T, then
///     recomputes P = exp2(S log2e - LSE log2e) from S = Q K^T and the LSE, dS = P o (dP - D),
///     stages dS in shared memory and accumulates dQ = scale dS K in fp32 registers, converted
///     once at the end;
///  3. dK/dV: one block per key tile of one KV head streams the query tiles of the G query heads
///     of its group (GQA: the sum over the group happens in registers), recomputes S = Q K^T, P,
///     dP = dO V^T and dS, stages P and dS in shared memory (bf16/fp16, as mma operands) and
///     accumulates dV += P^T dO and dK += dS^T Q.
/// Both kernels put their 4 warps in a 2 x 2 grid over every product (FlashBwdTraits).
///
/// Fast (deterministic = false, FlashAttention-2's structure): the dK/dV kernel also computes
/// dQ += dS K for its tile pair (five products in all) and adds it to an fp32 workspace with
/// atomics; the preprocess zeroes the workspace and a last kernel scales and stores it. The order
/// of the atomic additions varies from run to run, so dQ may differ in its last bits.
///
/// All matrix products run on mma.sync m16n8k16 with ldmatrix fragments; P and dS are rounded to
/// the storage type as mma operands, as in FlashAttention.
#pragma once

#include <algorithm>
#include <cstdint>

#include "strata/attention/mask.hpp"
#include "strata/attention/params.hpp"
#include "strata/attention/tile_io.cuh"
#include "strata/attention/variant.hpp"
#include "strata/attention/warp_gemm.cuh"
#include "strata/core/numeric.hpp"
#include "strata/core/online_softmax.hpp"

namespace strata::attention {

/// Tile shapes of the backward kernels for head dimension D. Both kernels put 4 warps in a 2 x 2
/// grid over every product's tile, so each warp tile is at least 32 x 32 and every ldmatrix
/// fragment feeds two or more mma (with 16-row warp tiles the fragments of the other operand
/// alone cost one shared-memory wavefront per 2,048 FLOP, an A100 SM's whole shared-memory
/// bandwidth at its mma.sync rate).
template <int D>
struct FlashBwdTraits {
  static_assert(D % 16 == 0 && D >= 16 && D <= 256, "head dimension: a multiple of 16");
  static constexpr int kWarps = 4;
  static constexpr int kThreads = 32 * kWarps;
  /// Queries per tile: 128 at d = 64, where the [keys, d] and [queries, d] accumulators are small
  /// enough to give S and dP 64 x 32 warp tiles; 64 above.
  static constexpr int kBlockM = D <= 64 ? 128 : 64;
  static constexpr int kBlockN = 64;        ///< keys per tile
  static constexpr int kLd = D + 8;         ///< row pitch of the Q, dO, K and V tiles
  static constexpr int kLdP = kBlockN + 8;  ///< row pitch of the P / dS tile [query][key]
  /// m16 and n8 tiles of one warp in S = Q K^T and dP = dO V^T ([kBlockM, kBlockN]), in
  /// dK = dS^T Q and dV = P^T dO ([kBlockN, D]) and in dQ = dS K ([kBlockM, D]).
  static constexpr int kSdpMT = kBlockM / 32, kSdpNT = kBlockN / 16;
  static constexpr int kKvMT = kBlockN / 32, kKvNT = D / 16;
  static constexpr int kDqMT = kBlockM / 32, kDqNT = D / 16;
  /// Row pitch (fp32) of the gradient rows the epilogues stage for the store hooks: 8-byte stores
  /// and loads of 4 rows per half-warp land in distinct banks.
  static constexpr int kEpilogueLd = D + 8;
  /// Q, dO, K and V tiles and one P / dS tile (in the dK/dV kernel P is dead once dV has read it,
  /// so dS takes its place); each epilogue reuses it all for its fp32 rows.
  template <class T>
  static constexpr size_t kSmemTiles = size_t(2 * kBlockN + 2 * kBlockM) * kLd * sizeof(T) +
                                       size_t(kBlockM) * kLdP * sizeof(T);
  template <class T>
  static constexpr size_t kSmemDq = std::max(kSmemTiles<T>,
                                             size_t(kBlockM) * kEpilogueLd * sizeof(float));
  template <class T>
  static constexpr size_t kSmemDkDv = std::max(kSmemTiles<T>,
                                               size_t(2 * kBlockN) * kEpilogueLd * sizeof(float));
  /// mma.sync per warp and (query tile, key tile) pair, by product: S and dP; dV and dK; dQ.
  static constexpr int kMmaSdP = 2 * kSdpMT * kSdpNT * (D / 16);
  static constexpr int kMmaDqFused = kDqMT * kDqNT * (kBlockN / 16);
  /// ... by kernel: the dQ kernel (S, dP, dQ) and the dK/dV kernel (S, dP, dV, dK; plus
  /// kMmaDqFused in the fast mode).
  static constexpr int kMmaDq = kMmaSdP + kMmaDqFused;
  static constexpr int kMmaDkDv = kMmaSdP + 2 * kKvMT * kKvNT * (kBlockM / 16);
};

/// log2(e) * LSE of a row, or +inf for a row without keys (LSE = -inf) or past the sequence, so
/// that exp2(s - it) is 0 there instead of inf.
STRATA_HOST_DEVICE float lse_log2(float lse, bool valid) {
  return valid && lse != -INFINITY ? lse * core::kLog2e : INFINITY;
}

STRATA_EXECUTOR_BEGIN

/// D[h, row] = sum_d dO[row, h, d] O[row, h, d], one thread per (row, head).
/// The variant's preprocess hook computes it (and, e.g., a gate's backward). In the fast mode each
/// block also zeroes the dQ accumulator rows of its (row, head) pairs.
template <class T, int D, class Variant = VanillaAttention>
__global__ void __launch_bounds__(128)
    flash_bwd_preprocess_kernel(const FlashBwdParams p, const Variant var) {
  static_assert(AttentionVariant<Variant, T, D>, "the variant policy misses a hook (variant.hpp)");
  const int64_t rows = int64_t(p.total_q) * p.h, first = int64_t(blockIdx.x) * 128;
  if (!p.deterministic) {
    // The fast mode's dQ accumulator starts at 0: the block's 128 (row, head) pairs are one
    // contiguous run of 128 D floats, zeroed by all threads together in coalesced 4-byte stores.
    const int64_t n = (rows - first < 128 ? rows - first : 128) * D;
    float* acc = p.dq_accum + first * D;
    for (int64_t e = threadIdx.x; e < n; e += 128) acc[e] = 0.f;
  }
  const int64_t idx = first + threadIdx.x;
  if (idx >= rows) return;
  const int64_t row = idx / p.h;
  const int h = int(idx % p.h);
  p.dsum[int64_t(h) * p.total_q + row] = var.template preprocess<T, D>(p, row, h);
}

/// P of one connected score s (raw Q K^T): exp2(s scale log2e - LSE log2e) as the forward rounds
/// it (core::exp2_scaled), through the variant's logit transform where it has one. A
/// row without keys has lse2 = +inf (lse_log2), so its P is ex2(-inf) = 0.
template <class Variant>
STRATA_DEVICE float bwd_prob(const Variant& var, const FlashBwdParams& p, float s, float lse2,
                             float scale_log2, int qi, int kj, int h) {
  if constexpr (Variant::kTransformsLogits)
    return arch::ex2_ftz(var.logit(s * p.softmax_scale, qi, kj, h) * core::kLog2e - lse2);
  else
    return core::exp2_scaled(s, scale_log2, lse2);
}

/// dS = P o (dP - D), times the logit transform's derivative at the raw score s where there is one.
template <class Variant>
STRATA_DEVICE float bwd_dscore(const Variant& var, const FlashBwdParams& p, float s, float pr,
                               float dp, float dsum, int qi, int kj, int h) {
  if constexpr (Variant::kTransformsLogits)
    return pr * (dp - dsum) * var.logit_grad(s * p.softmax_scale, qi, kj, h);
  else
    return pr * (dp - dsum);
}

/// The softmax backward of a warp's S / dP tile (queries q0 + r, keys k0 + c, as warp_gemm leaves
/// them): dS = P o (dP - D) in place of dp and, with kKeepP, P in place of s (the dK/dV kernel's
/// dV reads it).
template <bool kKeepP, class Variant, int MT, int NT>
STRATA_DEVICE void softmax_bwd_tile(const Variant& var, const FlashBwdParams& p, const Mask& mask,
                                    bool full, int q0, int k0, int h, const float (&lse2)[MT][2],
                                    const float (&dsum)[MT][2], float (&s)[MT][NT][4],
                                    float (&dp)[MT][NT][4], int lane) {
  const float scale_log2 = p.softmax_scale * core::kLog2e;
  if constexpr (Variant::kTransformsLogits) {  // a logit of -inf need not be -inf: test the mask
    for_each_score<MT, NT>(
        mask, full, q0, k0, lane, [&](int mt, int nt, int i, int qi, int kj, bool on) {
          const float pr =
              on ? bwd_prob(var, p, s[mt][nt][i], lse2[mt][i / 2], scale_log2, qi, kj, h) : 0.f;
          dp[mt][nt][i] =
              bwd_dscore(var, p, s[mt][nt][i], pr, dp[mt][nt][i], dsum[mt][i / 2], qi, kj, h);
          if constexpr (kKeepP) s[mt][nt][i] = pr;
        });
  } else {
    if (!full) mask_scores(mask, q0, k0, s, lane);  // then P = ex2(-inf) = 0 and dS = 0
    for_each_c<MT, NT>(lane, [&](int mt, int nt, int i, int r, int c) {
      const float pr =
          bwd_prob(var, p, s[mt][nt][i], lse2[mt][i / 2], scale_log2, q0 + r, k0 + c, h);
      dp[mt][nt][i] =
          bwd_dscore(var, p, s[mt][nt][i], pr, dp[mt][nt][i], dsum[mt][i / 2], q0 + r, k0 + c, h);
      if constexpr (kKeepP) s[mt][nt][i] = pr;
    });
  }
}

/// dQ of one query tile (kBlockM) of one (sequence, head), streaming its key tiles. The warps
/// compute dP = dO V^T first, so that V's next tile loads while S = Q K^T, dS and dQ += dS K run
/// and K's next tile while the next dP does (FlashAttention-2's forward overlap); dS is staged in
/// shared memory for dQ's 2 x 2 warp grid.
template <class T, int D, class Variant = VanillaAttention>
__global__ void __launch_bounds__(FlashBwdTraits<D>::kThreads)
    flash_bwd_dq_kernel(const FlashBwdParams p, const Variant var) {
  static_assert(AttentionVariant<Variant, T, D>, "the variant policy misses a hook (variant.hpp)");
  using Tr = FlashBwdTraits<D>;
  static_assert(Tr::template kSmemDq<T> <= 99 * 1024, "shared memory above 99 KB");
  constexpr int BM = Tr::kBlockM, BN = Tr::kBlockN, LD = Tr::kLd, LDP = Tr::kLdP;
  constexpr int SMT = Tr::kSdpMT, SNT = Tr::kSdpNT, QMT = Tr::kDqMT, QNT = Tr::kDqNT;
  STRATA_DYNAMIC_SMEM(T, Qs);  // [BM][LD]
  T* dOs = Qs + BM * LD;       // [BM][LD]
  T* Ks = dOs + BM * LD;       // [BN][LD]
  T* Vs = Ks + BN * LD;        // [BN][LD]
  T* dSs = Vs + BN * LD;       // [BM][LDP]

  const int tid = int(threadIdx.x), warp = tid / 32, lane = tid % 32;
  // The warp's place in the 2 x 2 grid of every product: rows half wr, columns half wc.
  const int wr = warp % 2, wc = warp / 2;
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
  const int k_lo = mask.key_begin(m0), k_hi = mask.key_end(m1);
  const int n_first = k_lo / BN, n_end = k_hi > k_lo ? (k_hi + BN - 1) / BN : n_first;
  const auto load_v = [&](int n) {
    var.template load_v<D, Tr::kThreads>(Vs, LD, p, TileSite{sb, h, h_k, n * BN}, BN, tid);
    arch::cp_async_commit();
  };
  const auto load_k = [&](int n) {
    var.template load_k<D, Tr::kThreads>(Ks, LD, p, TileSite{sb, h, h_k, n * BN}, BN, tid);
    arch::cp_async_commit();
  };
  if (n_first < n_end) {
    load_v(n_first);
    load_k(n_first);
  }

  // LSE (log2 units) and D of this thread's 2 SMT rows: queries q0 + 16 mt + lane / 4 + 8 hf.
  const int q0 = m0 + wr * (BM / 2);
  float lse2[SMT][2], dsum[SMT][2];
  STRATA_UNROLL
  for (int mt = 0; mt < SMT; ++mt) {
    STRATA_UNROLL
    for (int hf = 0; hf < 2; ++hf) {
      const int row = q0 + mt * 16 + lane / 4 + 8 * hf;
      const bool valid = row < sb.tq;
      const int64_t at = int64_t(h) * p.total_q + sb.q_begin + row;
      lse2[mt][hf] = lse_log2(valid ? p.lse[at] : 0.f, valid);
      dsum[mt][hf] = valid ? p.dsum[at] : 0.f;
    }
  }

  // dQ of queries q0 + ..., columns wc * D / 2 + ... (unscaled until the epilogue).
  float dq[QMT][QNT][4] = {};
  for (int n = n_first; n < n_end; ++n) {
    const int n0 = n * BN, k0 = n0 + wc * (BN / 2);
    arch::cp_async_wait<1>();  // V's tile (and Q, dO); K's may still be in flight
    __syncthreads();
    float dp[SMT][SNT][4] = {};
    warp_gemm<T, SMT, SNT, D, false, false>(dp, dOs, LD, wr * (BM / 2), Vs, LD, wc * (BN / 2),
                                            lane);
    arch::cp_async_wait<0>();
    __syncthreads();  // K's tile has landed, and every warp is done with V's
    if (n + 1 < n_end) load_v(n + 1);
    float s[SMT][SNT][4] = {};
    warp_gemm<T, SMT, SNT, D, false, false>(s, Qs, LD, wr * (BM / 2), Ks, LD, wc * (BN / 2), lane);
    const bool full = mask.all_connected(m0, m1, n0, n0 + BN);
    softmax_bwd_tile<false>(var, p, mask, full, q0, k0, h, lse2, dsum, s, dp, lane);
    store_c_tile<T>(dSs, LDP, wr * (BM / 2), wc * (BN / 2), dp, lane);
    __syncthreads();
    // dQ += dS K: k = the tile's keys.
    warp_gemm<T, QMT, QNT, BN, false, true>(dq, dSs, LDP, wr * (BM / 2), Ks, LD, wc * (D / 2),
                                            lane);
    __syncthreads();  // every warp is done with K's tile and dS
    if (n + 1 < n_end) load_k(n + 1);
  }
  arch::cp_async_wait<0>();  // Q and dO were loaded even without key tiles (then dQ = 0)
  __syncthreads();

  // Epilogue: the store hook takes whole rows (a quad of lanes per row), so the warps' quarters
  // meet in shared memory as fp32 rows (over Q and dO).
  constexpr int ELD = Tr::kEpilogueLd;
  float* dq_s = reinterpret_cast<float*>(Qs);  // [BM][ELD]
  stage_c_tile(dq_s, ELD, wr * (BM / 2), wc * (D / 2), dq, p.softmax_scale, lane);
  __syncthreads();
  STRATA_UNROLL_N(1)
  for (int row = tid / 4; row < BM; row += Tr::kThreads / 4) {
    const int col0 = 2 * (tid % 4);
    float dq_row[D / 4];
    load_row_pairs<D>(&dq_s[row * ELD], col0, dq_row);
    const RowSite rs{int64_t(sb.q_begin) + m0 + row, h, col0, m0 + row < sb.tq};
    var.template store_dq<T>(dq_row, p, rs, arch::LaneGroupSum<4>{});
  }
}

/// dK and dV of one key tile of one (sequence, KV head), summed over its query heads; with
/// kAtomicDq (the fast mode) also each tile pair's dQ += dS K, added to p.dq_accum with atomics.
template <class T, int D, class Variant = VanillaAttention, bool kAtomicDq = false>
__global__ void __launch_bounds__(FlashBwdTraits<D>::kThreads)
    flash_bwd_dkdv_kernel(const FlashBwdParams p, const Variant var) {
  static_assert(AttentionVariant<Variant, T, D>, "the variant policy misses a hook (variant.hpp)");
  using Tr = FlashBwdTraits<D>;
  static_assert(Tr::template kSmemDkDv<T> <= 99 * 1024, "shared memory above 99 KB");
  constexpr int BM = Tr::kBlockM, BN = Tr::kBlockN, LD = Tr::kLd, LDP = Tr::kLdP;
  constexpr int SMT = Tr::kSdpMT, SNT = Tr::kSdpNT, KMT = Tr::kKvMT, KNT = Tr::kKvNT;
  STRATA_DYNAMIC_SMEM(T, Ks);  // [BN][LD]
  T* Vs = Ks + BN * LD;        // [BN][LD]
  T* Qs = Vs + BN * LD;        // [BM][LD]
  T* dOs = Qs + BM * LD;       // [BM][LD]
  T* PdSs = dOs + BM * LD;     // [BM][LDP]: P, then dS

  const int tid = int(threadIdx.x), warp = tid / 32, lane = tid % 32;
  // The warp's place in the 2 x 2 grid of every product: rows half wr, columns half wc.
  const int wr = warp % 2, wc = warp / 2;
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
  // dK and dV of keys n0 + wr * BN / 2 + [0, BN / 2), columns wc * D / 2 + [0, D / 2).
  float dk[KMT][KNT][4] = {}, dv[KMT][KNT][4] = {};

  for (int g = 0; g < G; ++g) {
    const int h = h_k * G + g;
    for (int m0 = (q_lo / BM) * BM; m0 < q_hi; m0 += BM) {
      const TileSite at_q{sb, h, h_k, m0};
      var.template load_q<D, Tr::kThreads>(Qs, LD, p, at_q, BM, tid);
      var.template load_do<D, Tr::kThreads>(dOs, LD, p, at_q, BM, tid);
      arch::cp_async_commit();
      // LSE (log2 units) and D of this thread's 2 SMT query rows go straight into registers
      // (staging them in shared memory would cost wavefronts every product pays).
      const auto row_stat = [&](const float* x, int mt, int hf, float& out, bool log2_lse) {
        const int row = m0 + wr * (BM / 2) + mt * 16 + lane / 4 + 8 * hf;
        const bool valid = row < sb.tq;
        const float v = valid ? x[int64_t(h) * p.total_q + sb.q_begin + row] : 0.f;
        out = log2_lse ? lse_log2(v, valid) : v;
      };
      // Where D is loaded is chosen by the ptxas budgets: with the loads beside the LSE's, the
      // d = 128 instantiations spilled; issued just before dP = dO V^T, the d = 64 ones (whose
      // 64 x 32 warp tiles hold twice the scores) did.
      constexpr bool kEarlyD = SMT > 2;
      float lse2[SMT][2], dsum[SMT][2];
      STRATA_UNROLL
      for (int mt = 0; mt < SMT; ++mt) {
        row_stat(p.lse, mt, 0, lse2[mt][0], true);
        row_stat(p.lse, mt, 1, lse2[mt][1], true);
        if constexpr (kEarlyD || Variant::kTransformsLogits) {
          row_stat(p.dsum, mt, 0, dsum[mt][0], false);
          row_stat(p.dsum, mt, 1, dsum[mt][1], false);
        }
      }
      arch::cp_async_wait<0>();
      __syncthreads();

      // S = Q K^T and dP = dO V^T: queries wr * BM / 2 + ..., keys wc * BN / 2 + ...; then P,
      // and dS = P o (dP - D) in place of dp.
      const int m1 = m0 + BM < sb.tq ? m0 + BM : sb.tq;
      const bool full = mask.all_connected(m0, m1, n0, n0 + BN);
      const int q0 = m0 + wr * (BM / 2), k0 = n0 + wc * (BN / 2);
      float dp[SMT][SNT][4] = {};
      if constexpr (Variant::kTransformsLogits) {  // logit_grad needs the raw score: S stays
        float s[SMT][SNT][4] = {};
        warp_gemm<T, SMT, SNT, D, false, false>(s, Qs, LD, wr * (BM / 2), Ks, LD, wc * (BN / 2),
                                                lane);
        warp_gemm<T, SMT, SNT, D, false, false>(dp, dOs, LD, wr * (BM / 2), Vs, LD, wc * (BN / 2),
                                                lane);
        softmax_bwd_tile<true>(var, p, mask, full, q0, k0, h, lse2, dsum, s, dp, lane);
        store_c_tile<T>(PdSs, LDP, wr * (BM / 2), wc * (BN / 2), s, lane);
      } else {
        // P leaves S's registers as pairs rounded to T (the mma operand dV reads, and the P that
        // dS is formed from) before dP is computed: with S and dP both live in fp32 next to the
        // dK and dV accumulators, the d = 128 kernel of a value-residual store hook spilled.
        uint32_t pk[SMT][SNT][2];
        {
          float s[SMT][SNT][4] = {};
          warp_gemm<T, SMT, SNT, D, false, false>(s, Qs, LD, wr * (BM / 2), Ks, LD, wc * (BN / 2),
                                                  lane);
          for_each_c<SMT, SNT>(lane, [&](int mt, int nt, int i, int r, int c) {
            const float pr =
                bwd_prob(var, p, s[mt][nt][i], lse2[mt][i / 2], scale_log2, q0 + r, k0 + c, h);
            // A select per score rather than mask_scores on S first: that pass, live beside
            // the dK and dV accumulators, spilled 4 bytes in the fast mode's fp16 d = 128 and
            // bf16 d = 64 kernels on sm_90a. `full` is uniform over the block.
            s[mt][nt][i] = full || mask.connected(q0 + r, k0 + c) ? pr : 0.f;
          });
          for_each_c_pair<SMT, SNT>(lane, [&](int mt, int nt, int hf, int, int) {
            pk[mt][nt][hf] = pack2<T>(s[mt][nt][2 * hf], s[mt][nt][2 * hf + 1]);
          });
        }
        store_packed_tile<T>(PdSs, LDP, wr * (BM / 2), wc * (BN / 2), pk, lane);
        if constexpr (!kEarlyD) {
          STRATA_UNROLL
          for (int mt = 0; mt < SMT; ++mt) {  // D: issued before dP, used after it
            row_stat(p.dsum, mt, 0, dsum[mt][0], false);
            row_stat(p.dsum, mt, 1, dsum[mt][1], false);
          }
        }
        warp_gemm<T, SMT, SNT, D, false, false>(dp, dOs, LD, wr * (BM / 2), Vs, LD, wc * (BN / 2),
                                                lane);
        for_each_c_pair<SMT, SNT>(lane, [&](int mt, int nt, int hf, int, int) {
          float pr[2];
          unpack2<T>(pk[mt][nt][hf], pr[0], pr[1]);
          STRATA_UNROLL
          for (int j = 0; j < 2; ++j) {
            float& x = dp[mt][nt][2 * hf + j];
            x = bwd_dscore(var, p, 0.f, pr[j], x, dsum[mt][hf], 0, 0, h);  // s, qi, kj unused
          }
        });
      }
      __syncthreads();
      // dV += P^T dO: keys wr * BN / 2 + ..., columns wc * D / 2 + ... (k = the tile's queries).
      warp_gemm<T, KMT, KNT, BM, true, true>(dv, PdSs, LDP, wr * (BN / 2), dOs, LD, wc * (D / 2),
                                             lane);
      __syncthreads();  // every warp has read P
      store_c_tile<T>(PdSs, LDP, wr * (BM / 2), wc * (BN / 2), dp, lane);
      __syncthreads();
      if constexpr (kAtomicDq) {
        // dQ += dS K: queries wr * BM / 2 + ..., columns wc * D / 2 + ... (k = the block's keys),
        // unscaled; the convert kernel applies the softmax scale. Before dK += dS^T Q: in the
        // other order the d = 128 instantiation spilled (ptxas budgets).
        constexpr int QMT = Tr::kDqMT, QNT = Tr::kDqNT;
        float dq[QMT][QNT][4] = {};
        warp_gemm<T, QMT, QNT, BN, false, true>(dq, PdSs, LDP, wr * (BM / 2), Ks, LD, wc * (D / 2),
                                                lane);
        STRATA_UNROLL
        for (int mt = 0; mt < QMT; ++mt) {
          STRATA_UNROLL
          for (int i = 0; i < 4; i += 2) {
            int r, c;
            arch::mma_c_coord(lane, i, r, c);
            const int row = m0 + wr * (BM / 2) + mt * 16 + r;
            if (row >= sb.tq) continue;
            float* out = p.dq_accum + (int64_t(sb.q_begin) + row) * (int64_t(p.h) * D) +
                         int64_t(h) * D + wc * (D / 2) + c;
            STRATA_UNROLL
            for (int nt = 0; nt < QNT; ++nt) {
              atomicAdd(out + nt * 8, dq[mt][nt][i]);
              atomicAdd(out + nt * 8 + 1, dq[mt][nt][i + 1]);
            }
          }
        }
      }
      // dK += dS^T Q.
      warp_gemm<T, KMT, KNT, BM, true, true>(dk, PdSs, LDP, wr * (BN / 2), Qs, LD, wc * (D / 2),
                                             lane);
      __syncthreads();  // the next query tile overwrites Qs, dOs and PdSs
    }
  }
  arch::cp_async_wait<0>();  // K / V were loaded even when no query attends to this tile
  __syncthreads();

  // Epilogue: the store hooks take whole rows (a quad of lanes per row, as in the forward), so
  // the warps' [BN / 2, D / 2] quarters meet in shared memory as fp32 rows (kEpilogueLd apart:
  // 8-byte stores and loads of 4 rows per half-warp land in distinct banks).
  constexpr int ELD = Tr::kEpilogueLd;
  float* dk_s = reinterpret_cast<float*>(Ks);  // [BN][ELD]
  float* dv_s = dk_s + BN * ELD;               // [BN][ELD]
  stage_c_tile(dk_s, ELD, wr * (BN / 2), wc * (D / 2), dk, p.softmax_scale, lane);
  stage_c_tile(dv_s, ELD, wr * (BN / 2), wc * (D / 2), dv, 1.f, lane);
  __syncthreads();
  STRATA_UNROLL_N(1)
  for (int row = tid / 4; row < BN; row += Tr::kThreads / 4) {
    const int col0 = 2 * (tid % 4);
    float dk_row[D / 4], dv_row[D / 4];
    load_row_pairs<D>(&dk_s[row * ELD], col0, dk_row);
    load_row_pairs<D>(&dv_s[row * ELD], col0, dv_row);
    const RowSite rs{int64_t(sb.k_begin) + n0 + row, h_k, col0, n0 + row < sb.tk};
    var.template store_dk_dv<T>(dk_row, dv_row, p, rs, arch::LaneGroupSum<4>{});
  }
}

/// The fast mode's last step: dQ = softmax_scale * dq_accum, one row per quad of lanes through
/// the variant's store_dq hook (the same fragment rows the dQ kernel hands it). The sm_90
/// backward's too, with `slices` accumulators `slice` floats apart summed in order first (its
/// deterministic mode's per-block slices).
template <class T, int D, class Variant = VanillaAttention>
__global__ void __launch_bounds__(128)
    flash_bwd_dq_convert_kernel(const FlashBwdParams p, const Variant var, int slices,
                                int64_t slice) {
  static_assert(AttentionVariant<Variant, T, D>, "the variant policy misses a hook (variant.hpp)");
  const int tid = int(threadIdx.x);
  const int64_t idx = int64_t(blockIdx.x) * 32 + tid / 4;  // (row, head)
  const bool valid = idx < int64_t(p.total_q) * p.h;
  const int64_t row = valid ? idx / p.h : 0;
  const int h = valid ? int(idx % p.h) : 0;
  const int col0 = 2 * (tid % 4);
  float dq_row[D / 4] = {};
  for (int s = 0; valid && s < slices; ++s) {
    const float* acc = p.dq_accum + s * slice + idx * D;
    STRATA_UNROLL
    for (int t = 0; t < D / 8; ++t) {
      // the first slice as it is (not 0 + it: a -0 stays -0)
      dq_row[2 * t] = s ? dq_row[2 * t] + acc[t * 8 + col0] : acc[t * 8 + col0];
      dq_row[2 * t + 1] = s ? dq_row[2 * t + 1] + acc[t * 8 + col0 + 1] : acc[t * 8 + col0 + 1];
    }
  }
  STRATA_UNROLL
  for (int j = 0; j < D / 4; ++j) dq_row[j] *= p.softmax_scale;
  const RowSite rs{row, h, col0, valid};
  var.template store_dq<T>(dq_row, p, rs, arch::LaneGroupSum<4>{});
}

STRATA_EXECUTOR_END

/// Grids of the backward kernels.
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
  constexpr int BN = FlashBwdTraits<D>::kBlockN;
  return dim3(unsigned((p.seqlen_k + BN - 1) / BN), unsigned(p.h_k), unsigned(p.b));
}
inline dim3 flash_bwd_dq_convert_grid(const FlashBwdParams& p) {
  return dim3(unsigned((int64_t(p.total_q) * p.h + 31) / 32));
}

}  // namespace strata::attention
