/// \file
/// MEA, Multi-head Explicit Attention (SPEC §4a, §4e, decisions §7.5): the fused token-local pass
/// of a layer, one launch per direction (plus a fixed-order reduction after the backward), and the
/// attention policy of the Output site (further below).
///
/// Site KeyValue (gn = true):
/// forward   K'[h] = sum_c A^K[c,h] K_c[c],  V'[h] = sum_c A^V[c,h] V_c[c]   (HLC, H_c -> H_kv)
///           k_attn = RoPE(GN_k(K')),  v_attn = GN_v(V'),  q_rot = RoPE(q)
///           GN per (token, head) over d with affine gamma, beta [H_kv, d]; positions restart per
///           sequence. fp32 throughout, one rounding to T per output. The attention then runs on
///           (q_rot, k_attn, v_attn); with H_c < H_kv the composite heads are "virtual".
/// backward  from the attention's dq_rot, dk_attn, dv_attn: dq = RoPE^T(dq_rot);
///           dK' = GN_k'(RoPE^T(dk_attn)) with K' recomposed from K_c (never stored);
///           dK_c[c] = sum_h A^K[c,h] dK'[h];  dA^K[c,h] = sum_{t,i} K_c[t,c,i] dK'[t,h,i];
///           dgamma, dbeta; V likewise without RoPE. The parameter gradients (fp32) are block
///           partials in a workspace, summed over blocks in a fixed order by a second kernel:
///           deterministic, no atomics.
/// Site Output (gn = false): the same pass without GroupNorm; RoPE goes on the component heads
/// (HLC commutes with RoPE, SPEC §4a), see MeaLayer::gn.
///
/// Work layout. A block runs `steps` of m tokens each, twice: once for K (with the queries), once
/// for V, so that only one side's gains and dgamma/dbeta partials are live in registers. Lane
/// group g (8 lanes) owns the row (token slot j = g / H_kv, composite head h = g % H_kv) of every
/// step, so its head never changes and those per-head values stay in its registers. The H_c
/// component rows of the step's m tokens are staged once in shared memory (fp32): every composite
/// head of a token reads all of them, and HBM sees each K_c element once. The component-row
/// gradients need a sum over the composite heads, which live in different groups: the groups put
/// dK'[h] in shared memory and then each (token, component) row is summed there. Groups past the
/// m H_kv rows (the block is rounded up to whole warps) compute on a clamped row, store nothing
/// and leave shared memory alone: all 32 lanes of a warp run every shuffle.
/// All operands are contiguous [total, heads, d] (row stride heads d, head stride d).
#pragma once

#include <cstdint>
#include <cstring>

#include "strata/arch/sfu.hpp"
#include "strata/arch/smem.hpp"
#include "strata/attention/variant.hpp"
#include "strata/core/defaults.hpp"
#include "strata/core/group_norm.hpp"
#include "strata/core/numeric.hpp"
#include "strata/core/rope.hpp"
#include "strata/strata.cuh"
#include "strata/variants/lane_row.cuh"
#include "strata/variants/qk_norm_rope.cuh"  // sequence_position

namespace strata::variants {

inline constexpr int kMeaLanes = 8;  ///< lanes per (token, composite head) row
/// Bounds of the pass (validated by the API): they keep the staged rows and A within
/// kMeaSmemBytes and the block within kMeaMaxThreads.
inline constexpr int kMeaMaxComponentHeads = 32;  ///< H_c
inline constexpr int kMeaMaxCompositeHeads = 32;  ///< H_kv
inline constexpr int kMeaRowsPerStep = 16;        ///< target m H_kv rows per step
inline constexpr int kMeaMaxThreads = kMeaLanes * 32;
inline constexpr int kMeaMaxBlocks = 256;  ///< bounds the workspace and the reduction's length
/// A block runs at least this many tokens (when there are that many): its fp32 partials
/// (4 H_kv d + 2 H_c H_kv floats, written once and read once by the reduction) then cost a few
/// percent of the activations' traffic (>= 4 H_kv d bytes a token) instead of doubling it.
inline constexpr int kMeaMinTokensPerBlock = 256;
inline constexpr int kMeaSmemBytes = 48 * 1024;  ///< no opt-in needed on any architecture

/// One layer of the pass (kernel arguments). Pointers are device memory.
struct MeaLayer {
  int total = 0, h = 0, h_kv = 0, h_c = 0;  ///< tokens, query, composite and component heads
  const int* cu_seqlens = nullptr;          ///< [b + 1] (positions); null: fixed-length `seqlen`
  int b = 0, seqlen = 0;
  /// [total] RoPE position of each token (device; decode: its place in the cache), or null:
  /// from cu_seqlens
  const int* positions = nullptr;
  /// true: GroupNorm on K', V' (site KeyValue). false (site Output, GN on the attention output):
  /// the forward writes q_rot and RoPE(K_c) into k_attn ([total, h_c, d]; mea_compose_kernel
  /// then composes K' from it, HLC commuting with RoPE) and nothing into v_attn; the backward
  /// reads kc = RoPE(K_c) as written and dk_attn, dv_attn = dK', dV', and returns
  /// dK_c = RoPE^T(sum_h A^K[c,h] dK'[h]). No GN gains, no dgamma/dbeta partials.
  bool gn = true;
  float eps = defaults::kGroupNormEps;  ///< GroupNorm epsilon
  bool rope = defaults::kRope;
  float rope_theta = paper::kMeaRopeTheta;
  const float* a_k = nullptr;  ///< A^K, A^V [h_c, h_kv] fp32, row-major
  const float* a_v = nullptr;
  const float* gamma_k = nullptr;  ///< GN affine [h_kv, d] fp32
  const float* beta_k = nullptr;
  const float* gamma_v = nullptr;
  const float* beta_v = nullptr;
  // forward
  const void* q = nullptr;   ///< [total, h, d] (T)
  const void* kc = nullptr;  ///< K_c, V_c [total, h_c, d] (T)
  const void* vc = nullptr;
  void* q_rot = nullptr;  ///< outputs (T): [total, h, d], [total, h_kv, d] x 2
  void* k_attn = nullptr;
  void* v_attn = nullptr;
  // backward
  const void* dq_rot = nullptr;  ///< the attention backward's gradients (T)
  const void* dk_attn = nullptr;
  const void* dv_attn = nullptr;
  void* dq = nullptr;  ///< written (T): [total, h, d], [total, h_c, d] x 2
  void* dkc = nullptr;
  void* dvc = nullptr;
  float* partial = nullptr;  ///< workspace [blocks][mea_partial_floats]
};

/// How a layer's rows are spread over blocks: the same on host and device.
struct MeaGeometry {
  int m = 1;       ///< tokens per step
  int groups = 4;  ///< lane groups per block (whole warps)
  int steps = 0, steps_per_block = 1, blocks = 0;
  STRATA_HOST_DEVICE int threads() const { return groups * kMeaLanes; }
};

/// Shared floats of either direction for m tokens a step: one side's staged component rows
/// [m][h_c][D], the backward's dX' rows [m][h_kv][D], then A^K, A^V and the backward's dA^K,
/// dA^V accumulators [h_c][h_kv] each.
STRATA_HOST_DEVICE int64_t mea_smem_floats(int m, int h_kv, int h_c, int d) {
  return int64_t(m) * d * (h_c + h_kv) + 4 * int64_t(h_c) * h_kv;
}

/// fp32 partials per block: dA^K, dA^V [h_c, h_kv] and dgamma_k, dbeta_k, dgamma_v, dbeta_v
/// [h_kv, d], in that order.
STRATA_HOST_DEVICE int64_t mea_partial_floats(int h_kv, int h_c, int d) {
  return 2 * int64_t(h_c) * h_kv + 4 * int64_t(h_kv) * d;
}

STRATA_HOST_DEVICE MeaGeometry mea_geometry(int total, int h_kv, int h_c, int d) {
  MeaGeometry g;
  if (h_kv < 1 || h_c < 1 || d < 1) return g;
  g.m = kMeaRowsPerStep / h_kv > 1 ? kMeaRowsPerStep / h_kv : 1;
  while (g.m > 1 && mea_smem_floats(g.m, h_kv, h_c, d) * 4 > kMeaSmemBytes) --g.m;
  g.groups = (g.m * h_kv + 3) / 4 * 4;
  g.steps = total > 0 ? (total + g.m - 1) / g.m : 0;
  if (g.steps == 0) return g;
  const int min_steps = (kMeaMinTokensPerBlock + g.m - 1) / g.m;
  const int want = g.steps < kMeaMaxBlocks ? g.steps : kMeaMaxBlocks;
  g.steps_per_block = (g.steps + want - 1) / want;
  if (g.steps_per_block < min_steps) g.steps_per_block = min_steps;
  g.blocks = (g.steps + g.steps_per_block - 1) / g.steps_per_block;
  return g;
}

STRATA_EXECUTOR_BEGIN

namespace mea_detail {

template <int D>
using Row = LaneRow<D, kMeaLanes>;
using Sum = arch::LaneGroupSum<kMeaLanes>;

/// Composite head h of token slot j from the staged component rows xs [m][h_c][D]: HLC with the
/// component rows in shared memory (core::head_compose_forward wants them in registers, which a
/// token's H_kv groups cannot share).
template <int D>
STRATA_DEVICE void compose(const float* xs, const float* a, int h_kv, int h_c, int j, int h,
                           const Row<D>& r, float (&x)[D / kMeaLanes]) {
  STRATA_UNROLL
  for (int e = 0; e < D / kMeaLanes; ++e) x[e] = 0.f;
  for (int c = 0; c < h_c; ++c) {
    const float w = a[c * h_kv + h];
    const float* row = xs + (int64_t(j) * h_c + c) * D;
    STRATA_UNROLL
    for (int e = 0; e < D / kMeaLanes; ++e) x[e] += w * row[r.col(e)];
  }
}
/// Stages the component rows of tokens t0 .. t0 + m - 1 (zeros past the end) as fp32.
template <class T, int D>
STRATA_DEVICE void stage_rows(const void* src, int total, int h_c, int t0, int m, float* xs,
                              int threads) {
  const int64_t n = int64_t(m) * h_c * D, per_token = int64_t(h_c) * D;
  const T* p = static_cast<const T*>(src) + int64_t(t0) * per_token;
  for (int64_t i = threadIdx.x; i < n; i += threads)
    xs[i] = t0 + i / per_token < total ? core::to_float(p[i]) : 0.f;
}

/// This lane group's row of every step: (slot j, head h); `active` groups own a real row.
struct Slot {
  bool active;
  int j, h;
};
STRATA_HOST_DEVICE Slot slot(const MeaGeometry& geo, int h_kv, int group) {
  const bool active = group < geo.m * h_kv;
  const int j = group / h_kv < geo.m ? group / h_kv : geo.m - 1;
  return {active, j, group % h_kv};
}

}  // namespace mea_detail

/// Forward pass of one layer: grid mea_geometry(...).blocks, block geometry.threads(), dynamic
/// shared memory mea_smem_floats(geometry.m, ...) floats. Launch bounds (256, 1): without the
/// explicit 1, ptxas capped the d = 128 forward at 128 registers and spilled (CUDA 13, sm_80). The
/// block runs its steps twice, once per side (K with the queries, then V), so that only one side's
/// gains are live in registers.
template <class T, int D>
__global__ void __launch_bounds__(kMeaMaxThreads, 1) mea_forward_kernel(const MeaLayer p) {
  using namespace mea_detail;
  constexpr int N = D / kMeaLanes;
  STRATA_DYNAMIC_SMEM(float, smem);
  const MeaGeometry geo = mea_geometry(p.total, p.h_kv, p.h_c, D);
  const int threads = geo.threads(), na = p.h_c * p.h_kv;
  float* xc_s = smem;                                         // [m][h_c][D]: K_c, then V_c
  float* a_s = smem + int64_t(geo.m) * D * (p.h_c + p.h_kv);  // A^K, A^V [h_c][h_kv]
  for (int i = int(threadIdx.x); i < na; i += threads) a_s[i] = p.a_k[i], a_s[na + i] = p.a_v[i];

  const Slot sl = slot(geo, p.h_kv, int(threadIdx.x) / kMeaLanes);
  const Row<D> r{int(threadIdx.x % kMeaLanes) * (D / (2 * kMeaLanes))};
  const int G = p.h / p.h_kv;
  const int s0 = int(blockIdx.x) * geo.steps_per_block;
  const int s1 = s0 + geo.steps_per_block < geo.steps ? s0 + geo.steps_per_block : geo.steps;
  for (int side = 0; side < (p.gn ? 2 : 1); ++side) {
    const bool is_k = side == 0;
    float g[N] = {}, bt[N] = {};  // this group's head never changes: its gains stay in registers
    if (p.gn) {
      lane_gather((is_k ? p.gamma_k : p.gamma_v) + int64_t(sl.h) * D, r, g);
      lane_gather((is_k ? p.beta_k : p.beta_v) + int64_t(sl.h) * D, r, bt);
    }
    for (int s = s0; s < s1; ++s) {  // uniform over the block
      const int t0 = s * geo.m;
      __syncthreads();  // the previous step's readers are done with the staged rows (and A)
      stage_rows<T, D>(is_k ? p.kc : p.vc, p.total, p.h_c, t0, geo.m, xc_s, threads);
      __syncthreads();
      const int t = t0 + sl.j;
      const bool valid = sl.active && t < p.total;
      const int tc = t < p.total ? t : p.total - 1;  // clamped: positions of a real token
      const float pos = float(sequence_position(p.positions, p.cu_seqlens, p.b, p.seqlen, tc));
      float x[N];
      if (p.gn) {
        compose<D>(xc_s, a_s + side * na, p.h_kv, p.h_c, sl.j, sl.h, r, x);
        core::group_norm_forward(x, g, bt, D, p.eps, x, Sum{});
        if (is_k && p.rope) lane_rope<false>(x, r, pos, p.rope_theta);
        store_dense<T, D>(valid, is_k ? p.k_attn : p.v_attn, p.h_kv, t, sl.h, r, x);
      } else {  // site Output: RoPE(K_c), one (slot, component) row per group at a time
        for (int row = int(threadIdx.x) / kMeaLanes; row < geo.m * p.h_c; row += geo.groups) {
          const int j = row / p.h_c, c = row % p.h_c, tj = t0 + j < p.total ? t0 + j : p.total - 1;
          const float* xr = xc_s + int64_t(row) * D;
          STRATA_UNROLL
          for (int e = 0; e < N; ++e) x[e] = xr[r.col(e)];
          if (p.rope)
            lane_rope<false>(x, r,
                             float(sequence_position(p.positions, p.cu_seqlens, p.b, p.seqlen, tj)),
                             p.rope_theta);
          store_dense<T, D>(t0 + j < p.total, p.k_attn, p.h_c, t0 + j, c, r, x);
        }
      }
      for (int gi = 0; is_k && gi < G; ++gi) {  // the G query heads of this KV head
        load_dense<T, D>(valid, p.q, p.h, tc, sl.h * G + gi, r, x);
        if (p.rope) lane_rope<false>(x, r, pos, p.rope_theta);
        store_dense<T, D>(valid, p.q_rot, p.h, t, sl.h * G + gi, r, x);
      }
    }
  }
}

/// Backward pass of one layer (after the attention backward of the same layer); the same grid,
/// block and shared memory as the forward. Writes dq, dK_c, dV_c and the block's partials. Like
/// the forward, one side after the other: one side's gain and dgamma, dbeta live in registers.
template <class T, int D>
__global__ void __launch_bounds__(kMeaMaxThreads, 1) mea_backward_kernel(const MeaLayer p) {
  using namespace mea_detail;
  constexpr int N = D / kMeaLanes;
  STRATA_DYNAMIC_SMEM(float, smem);
  const MeaGeometry geo = mea_geometry(p.total, p.h_kv, p.h_c, D);
  const int threads = geo.threads(), hkv_d = p.h_kv * D, na = p.h_c * p.h_kv;
  float* xc_s = smem;                                         // [m][h_c][D]: K_c, then V_c
  float* dx_s = xc_s + int64_t(geo.m) * p.h_c * D;            // [m][h_kv][D]: dK', then dV'
  float* a_s = smem + int64_t(geo.m) * D * (p.h_c + p.h_kv);  // A^K, A^V [h_c][h_kv]
  float* da_s = a_s + 2 * na;                                 // the block's dA^K, dA^V
  for (int i = int(threadIdx.x); i < na; i += threads) {
    a_s[i] = p.a_k[i], a_s[na + i] = p.a_v[i];
    da_s[i] = 0.f, da_s[na + i] = 0.f;
  }

  const int group = int(threadIdx.x) / kMeaLanes;
  const Slot sl = slot(geo, p.h_kv, group);
  const Row<D> r{int(threadIdx.x % kMeaLanes) * (D / (2 * kMeaLanes))};
  const int G = p.h / p.h_kv;
  const int s0 = int(blockIdx.x) * geo.steps_per_block;
  const int s1 = s0 + geo.steps_per_block < geo.steps ? s0 + geo.steps_per_block : geo.steps;
  float* out = p.partial + int64_t(blockIdx.x) * mea_partial_floats(p.h_kv, p.h_c, D);
  for (int side = 0; side < 2; ++side) {
    const bool is_k = side == 0;
    const float* a = a_s + side * na;
    float g[N] = {};
    if (p.gn) lane_gather((is_k ? p.gamma_k : p.gamma_v) + int64_t(sl.h) * D, r, g);
    float dg[N] = {}, db[N] = {};    // this group's head over its rows
    for (int s = s0; s < s1; ++s) {  // uniform over the block
      const int t0 = s * geo.m;
      const int t = t0 + sl.j;
      const bool valid = sl.active && t < p.total;
      const int tc = t < p.total ? t : p.total - 1;
      const float pos = float(sequence_position(p.positions, p.cu_seqlens, p.b, p.seqlen, tc));
      __syncthreads();  // the previous readers of xc_s, dx_s are done
      stage_rows<T, D>(is_k ? p.kc : p.vc, p.total, p.h_c, t0, geo.m, xc_s, threads);
      __syncthreads();
      // dX' of this group's row: RoPE^T (K only), then the GN backward on the recomposed X'
      // (site Output: the attention's dK', dV' are dX' already)
      float dy[N], x[N];
      load_dense<T, D>(valid, is_k ? p.dk_attn : p.dv_attn, p.h_kv, tc, sl.h, r, dy);
      if (p.gn) {
        if (is_k && p.rope) lane_rope<true>(dy, r, pos, p.rope_theta);
        compose<D>(xc_s, a, p.h_kv, p.h_c, sl.j, sl.h, r, x);
        core::group_norm_backward(x, g, dy, D, p.eps, dy, dg, db, Sum{});
      }
      if (sl.active) {  // rows past the end hold dX' = 0 (dy was 0)
        float* row = dx_s + (int64_t(sl.j) * p.h_kv + sl.h) * D;
        STRATA_UNROLL
        for (int e = 0; e < N; ++e) row[r.col(e)] = dy[e];
      }
      for (int gi = 0; is_k && gi < G; ++gi) {  // dq = RoPE^T(dq_rot)
        load_dense<T, D>(valid, p.dq_rot, p.h, tc, sl.h * G + gi, r, x);
        if (p.rope) lane_rope<true>(x, r, pos, p.rope_theta);
        store_dense<T, D>(valid, p.dq, p.h, t, sl.h * G + gi, r, x);
      }
      __syncthreads();
      // dX_c[c] = sum_h A[c,h] dX'[h], one (slot, component) row per group at a time
      for (int row = group; row < geo.m * p.h_c; row += geo.groups) {
        const int j = row / p.h_c, c = row % p.h_c;
        float acc[N] = {};
        for (int hh = 0; hh < p.h_kv; ++hh) {
          const float w = a[c * p.h_kv + hh];
          const float* dxr = dx_s + (int64_t(j) * p.h_kv + hh) * D;
          STRATA_UNROLL
          for (int e = 0; e < N; ++e) acc[e] += w * dxr[r.col(e)];
        }
        if (is_k && !p.gn && p.rope) {  // site Output: the components were rotated
          const int tj = t0 + j < p.total ? t0 + j : p.total - 1;
          lane_rope<true>(acc, r,
                          float(sequence_position(p.positions, p.cu_seqlens, p.b, p.seqlen, tj)),
                          p.rope_theta);
        }
        store_dense<T, D>(t0 + j < p.total, is_k ? p.dkc : p.dvc, p.h_c, t0 + j, c, r, acc);
      }
      // dA[c,h] += sum_{j,i} X_c[j,c,i] dX'[j,h,i]: each element owned by one thread
      for (int i = int(threadIdx.x); i < na; i += threads) {
        const int c = i / p.h_kv, hh = i % p.h_kv;
        float acc = 0.f;
        for (int j = 0; j < geo.m; ++j) {
          const float* xr = xc_s + (int64_t(j) * p.h_c + c) * D;
          const float* dxr = dx_s + (int64_t(j) * p.h_kv + hh) * D;
          for (int e = 0; e < D; ++e) acc += xr[e] * dxr[e];
        }
        da_s[side * na + i] += acc;
      }
    }
    // this side's dgamma, dbeta: summed over the groups of each head in slot order (dx_s as the
    // staging area), one at a time
    float* dg_out = out + 2 * na + int64_t(2 * side) * hkv_d;
    for (int q = 0; q < (p.gn ? 2 : 0); ++q) {
      __syncthreads();  // dx_s is free
      if (sl.active) {
        float* row = dx_s + (int64_t(sl.j) * p.h_kv + sl.h) * D;
        STRATA_UNROLL
        for (int e = 0; e < N; ++e) row[r.col(e)] = q == 0 ? dg[e] : db[e];
      }
      __syncthreads();
      for (int i = int(threadIdx.x); i < hkv_d; i += threads) {
        float acc = 0.f;
        for (int j = 0; j < geo.m; ++j) acc += dx_s[int64_t(j) * hkv_d + i];
        dg_out[int64_t(q) * hkv_d + i] = acc;
      }
    }
  }
  __syncthreads();
  for (int i = int(threadIdx.x); i < 2 * na; i += threads) out[i] = da_s[i];
}

/// The parameter gradients from the blocks' partials [blocks][mea_partial_floats], in block
/// order: dA^K, dA^V [h_c, h_kv] and dgamma_k, dbeta_k, dgamma_v, dbeta_v [h_kv, d]. Grid
/// ceil(mea_partial_floats / 256) blocks of 256; zero blocks write zeros.
struct MeaReduce {
  const float* partial = nullptr;
  int blocks = 0, h_kv = 0, h_c = 0, d = 0;
  bool gn = true;  ///< false (site Output): dA^K, dA^V only
  float* da_k = nullptr;
  float* da_v = nullptr;
  float* dgamma_k = nullptr;
  float* dbeta_k = nullptr;
  float* dgamma_v = nullptr;
  float* dbeta_v = nullptr;
};
inline constexpr int kMeaReduceThreads = 256;

/// A template (like fill_zero_kernel) so that every translation unit may define it.
template <int Threads = kMeaReduceThreads>
__global__ void __launch_bounds__(Threads) mea_reduce_kernel(const MeaReduce p) {
  const int64_t n = mea_partial_floats(p.h_kv, p.h_c, p.d);  // the partials' row length
  const int64_t i = int64_t(blockIdx.x) * Threads + threadIdx.x;
  if (i >= (p.gn ? n : 2 * int64_t(p.h_c) * p.h_kv)) return;  // no collective below
  float acc = 0.f;
  for (int b = 0; b < p.blocks; ++b) acc += p.partial[int64_t(b) * n + i];
  const int64_t na = int64_t(p.h_c) * p.h_kv, nd = int64_t(p.h_kv) * p.d;
  if (i < na)
    p.da_k[i] = acc;
  else if (i < 2 * na)
    p.da_v[i - na] = acc;
  else {  // an if chain, not an array of pointers (which would live in local memory)
    const int64_t k = i - 2 * na, q = k / nd;
    float* dst = q == 0 ? p.dgamma_k : q == 1 ? p.dbeta_k : q == 2 ? p.dgamma_v : p.dbeta_v;
    dst[k % nd] = acc;
  }
}

// ---------------------------------------------------------------------------------------------
// Site Output (GroupNorm on each head's attention output, SPEC §4a reading B):
//   forward   the pass above (gn = false) writes q_rot = RoPE(q) and RoPE(K_c);
//             mea_compose_kernel writes the composite rows K'[h] = sum_c A^K[c,h] RoPE(K_c)[c],
//             V'[h] = sum_c A^V[c,h] V_c[c] (fp32, one rounding to T; for K' a second rounding:
//             RoPE(K_c) is itself stored in T, and dA^K uses it as stored) into the attention's
//             K and V; the attention runs with MeaOutputAttention on them, with cp.async tile
//             loads. (Composing inside each tile load instead would keep virtual heads out of
//             memory but move H_c times the K/V bytes through L2 for every query tile: the
//             performance model's L2 term put that at 27-60 TFLOP/s on an A100.) Its store_o
//             writes the attention output O (pre-GN, rounded to T: the operand of
//             FlashAttention's backward, D = rowsum(dO o O), and the input of the GN backward)
//             and out = GN(O as stored) with the quad's row reducer.
//   backward  preprocess (one thread per (token, head) row) turns dL/dout into dO = GN'(O) dL/dout,
//             written to the dO workspace the dQ and dK/dV kernels read, stores the row's
//             (mu, 1/sigma) and returns D = rowsum(dO o O) (dO as stored); the flash backward
//             writes dK', dV' per composite head (vanilla store_dk_dv), then the pass (gn = false)
//             gives dK_c, dV_c, dA^K, dA^V, and mea_output_gn_partial_kernel + mea_sum_kernel give
//             dgamma_o, dbeta_o from O, dL/dout and the stored row statistics.
// Why O is stored pre-GN (and out separately): the GN backward needs its input, and rebuilding O
// from out = gamma x^ + beta would divide by gamma (zero or tiny gains) and amplify out's rounding;
// the flash backward needs O anyway for D. The preprocess has one thread per row and no
// block-level hook, so the cross-token sums dgamma_o, dbeta_o are a separate deterministic pass.

/// The Output site's composition: K', V' [total, h_kv, d] (the attention's K and V, with their
/// strides) from RoPE(K_c), V_c [total, h_c, d] contiguous. One thread per (token, composite
/// head, 16-byte chunk), K' first, then V'; the components in order, fp32, one rounding to T.
struct MeaCompose {
  const void* kc_rot = nullptr;
  const void* vc = nullptr;
  const float* a_k = nullptr;  ///< A^K, A^V [h_c, h_kv] fp32
  const float* a_v = nullptr;
  int total = 0, h_kv = 0, h_c = 0;
  void* k = nullptr;
  void* v = nullptr;
  int64_t k_row_stride = 0, k_head_stride = 0, v_row_stride = 0, v_head_stride = 0;
};
inline constexpr int kMeaComposeThreads = 256;

template <class T, int D, int Threads = kMeaComposeThreads>
__global__ void __launch_bounds__(Threads) mea_compose_kernel(const MeaCompose p) {
  constexpr int kChunks = D / 8;
  const int64_t side = int64_t(p.total) * p.h_kv * kChunks;
  const int64_t idx = int64_t(blockIdx.x) * Threads + threadIdx.x;
  if (idx >= 2 * side) return;
  const bool is_v = idx >= side;
  const int64_t i = is_v ? idx - side : idx, row = i / kChunks;
  const int col = int(i % kChunks) * 8, h = int(row % p.h_kv);
  const int64_t t = row / p.h_kv;
  const T* x = static_cast<const T*>(is_v ? p.vc : p.kc_rot) + t * p.h_c * D + col;
  const float* a = is_v ? p.a_v : p.a_k;
  float acc[8] = {};
  for (int c = 0; c < p.h_c; ++c) {
    const float w = a[c * p.h_kv + h];
    const uint4 raw = *reinterpret_cast<const uint4*>(x + int64_t(c) * D);
    T v[8];
    memcpy(static_cast<void*>(v), &raw, 16);  // T is a class: copy its bits
    STRATA_UNROLL
    for (int e = 0; e < 8; ++e) acc[e] += w * core::to_float(v[e]);
  }
  T mixed[8];
  STRATA_UNROLL
  for (int e = 0; e < 8; ++e) mixed[e] = core::from_float<T>(acc[e]);
  uint4 o;
  memcpy(&o, mixed, 16);
  T* dst = static_cast<T*>(is_v ? p.v : p.k) + t * (is_v ? p.v_row_stride : p.k_row_stride) +
           int64_t(h) * (is_v ? p.v_head_stride : p.k_head_stride) + col;
  *reinterpret_cast<uint4*>(dst) = o;
}

/// The attention policy of the Output site (K' and V' composed before it). Operands are
/// contiguous [total, heads, d].
struct MeaOutputAttention : attention::VanillaAttention {
  const float* gamma = nullptr;  ///< GN affine [h, d] fp32
  const float* beta = nullptr;
  float eps = defaults::kGroupNormEps;
  void* out = nullptr;  ///< GN(O) [total, h, d] (T), written by the forward
  // backward
  const void* dy = nullptr;  ///< dL/dout [total, h, d] (T)
  float* stats = nullptr;    ///< [total, h, 2] fp32: mu and 1/sqrt(var + eps) of each O row
  /// The attention's dO (T), written by the preprocess in p.dout's strides: the API's workspace,
  /// at which it points p.dout for the dQ and dK/dV kernels that read it.
  void* dout_ws = nullptr;

  /// O (rounded to T, as stored) to p.o and out = GN(O) to `out`. Every lane of the quad runs
  /// the row sums, valid row or not.
  template <class T, int N, class Sum>
  STRATA_HOST_DEVICE void store_o(const float (&o)[N], const attention::FlashFwdParams& p,
                                  const attention::RowSite& r, Sum sum) const {
    float x[N], g[N], b[N], y[N];
    STRATA_UNROLL
    for (int j = 0; j < N; ++j) {
      x[j] = core::to_float(core::from_float<T>(o[j]));
      g[j] = gamma[int64_t(r.head) * p.d + r.col(j)];
      b[j] = beta[int64_t(r.head) * p.d + r.col(j)];
    }
    core::group_norm_forward(x, g, b, p.d, eps, y, sum);
    if (!r.valid) return;
    VanillaAttention::store_o<T>(o, p, r, sum);
    store_fragment_row(static_cast<T*>(out), int64_t(p.h) * p.d, p.d, y, r);
  }

  /// dO = GN backward of the row into dout_ws (the workspace), the row's statistics into `stats`,
  /// and D = rowsum(dO o O) with dO as the dQ and dK/dV kernels will read it.
  template <class T, int D>
  STRATA_HOST_DEVICE float preprocess(const attention::FlashBwdParams& p, int64_t token,
                                      int h) const {
    const T* o = static_cast<const T*>(p.o) + token * p.o_row_stride + int64_t(h) * p.o_head_stride;
    const T* d_y = static_cast<const T*>(dy) + (token * p.h + h) * D;
    T* d_o = static_cast<T*>(dout_ws) + token * p.do_row_stride + int64_t(h) * p.do_head_stride;
    const float* g = gamma + int64_t(h) * D;
    float mu = 0.f;
    STRATA_UNROLL_N(8)
    for (int e = 0; e < D; ++e) mu += core::to_float(o[e]);
    mu /= float(D);
    float var = 0.f;
    STRATA_UNROLL_N(8)
    for (int e = 0; e < D; ++e) {
      const float c = core::to_float(o[e]) - mu;
      var += c * c;
    }
    const float rs = arch::rsqrt_rn(var / float(D) + eps);
    float su = 0.f, sux = 0.f;
    STRATA_UNROLL_N(8)
    for (int e = 0; e < D; ++e) {
      const float u = g[e] * core::to_float(d_y[e]);
      su += u;
      sux += u * ((core::to_float(o[e]) - mu) * rs);
    }
    const float mean_u = su / float(D), mean_ux = sux / float(D);
    float dsum = 0.f;
    STRATA_UNROLL_N(8)
    for (int e = 0; e < D; ++e) {
      const float oe = core::to_float(o[e]), xh = (oe - mu) * rs;
      const T de =
          core::from_float<T>(rs * (g[e] * core::to_float(d_y[e]) - mean_u - xh * mean_ux));
      d_o[e] = de;
      dsum += core::to_float(de) * oe;
    }
    stats[2 * (token * p.h + h)] = mu;
    stats[2 * (token * p.h + h) + 1] = rs;
    return dsum;
  }
};

/// dgamma_o, dbeta_o partials of a chunk of tokens: grid (ceil(h d / Threads), chunks), thread
/// per column (head, i); partial [chunks][2][h d].
struct MeaOutputGnGrad {
  const void* o = nullptr;   ///< O as stored [total, h, d]
  const void* dy = nullptr;  ///< dL/dout [total, h, d]
  const float* stats = nullptr;
  int total = 0, h = 0, d = 0, tokens_per_chunk = 1;
  float* partial = nullptr;
};
inline constexpr int kMeaColumnThreads = 256;

template <class T, int Threads = kMeaColumnThreads>
__global__ void __launch_bounds__(Threads) mea_output_gn_partial_kernel(const MeaOutputGnGrad p) {
  const int64_t hd = int64_t(p.h) * p.d;
  const int64_t col = int64_t(blockIdx.x) * Threads + threadIdx.x;
  // h d is a multiple of 32 (d is 64, 96 or 128): whole warps leave here, and each warp's 32
  // columns lie in one head, whose row statistics lanes 0 and 1 load and share (read once per
  // warp, not once per column)
  if (col >= hd) return;
  const int hh = int(col / p.d), lane = int(threadIdx.x % 32);
  const int t0 = int(blockIdx.y) * p.tokens_per_chunk;
  const int t1 = t0 + p.tokens_per_chunk < p.total ? t0 + p.tokens_per_chunk : p.total;
  const T* o = static_cast<const T*>(p.o);
  const T* dy = static_cast<const T*>(p.dy);
  float dg = 0.f, db = 0.f;
  for (int t = t0; t < t1; ++t) {
    const int64_t row = int64_t(t) * p.h + hh;
    const float st = lane < 2 ? p.stats[2 * row + lane] : 0.f;
    const float mu = arch::shfl(st, 0), rs = arch::shfl(st, 1);
    const float xh = (core::to_float(o[int64_t(t) * hd + col]) - mu) * rs;
    const float g = core::to_float(dy[int64_t(t) * hd + col]);
    dg += g * xh;
    db += g;
  }
  p.partial[int64_t(blockIdx.y) * 2 * hd + col] = dg;
  p.partial[int64_t(blockIdx.y) * 2 * hd + hd + col] = db;
}

/// out[i] = sum_b partial[b stride + i] for i < n, in block order (zero blocks: zeros).
template <int Threads = kMeaColumnThreads>
__global__ void __launch_bounds__(Threads)
    mea_sum_kernel(const float* partial, int64_t stride, int blocks, int64_t n, float* out) {
  const int64_t i = int64_t(blockIdx.x) * Threads + threadIdx.x;
  if (i >= n) return;
  float acc = 0.f;
  for (int b = 0; b < blocks; ++b) acc += partial[int64_t(b) * stride + i];
  out[i] = acc;
}

STRATA_EXECUTOR_END
}  // namespace strata::variants

/// GroupNorm acts in store_o only (K' and V' are composed before the attention): the sm_90a
/// forward runs it.
template <>
struct strata::attention::Sm90Variant<strata::variants::MeaOutputAttention> : std::true_type {};
