/// \file
/// Depth-Attention's fused token-local pass (SPEC §1a, §1e, decisions §7.2), one launch per layer
/// and direction, a group of 8 lanes per (token, KV head):
///
/// forward   q_rot = RoPE(RMSNorm_gq(q)) for the G query heads of the group, their mean q^;
///           k^ = RMSNorm_gk(RoPE(k)) (k-norm after RoPE, the official SDPA path);
///           alpha = softmax_c(q^ . kappa_c / sqrt d) over the sources' (k^_j, v^_j) in ascending
///           order and then self (k^_l, raw v_l), in fp32; v^ = sum_c alpha_c nu_c.
///           The attention then runs on (q_rot, k^, v^), and v^ is what later layers read.
/// backward  g = dv^ (attention) + this layer's fp32 accumulator; dq^, dkappa_c, dnu_c; the
///           sources' gradients are added to their fp32 accumulators (each element owned by one
///           lane group, layers run one after the other: deterministic, no atomics); then back
///           through k-norm and RoPE for dk, RoPE and q-norm for dq (dq^ reaches every query head
///           of the group as dq^ / G); dgamma_q, dgamma_k reduced in a fixed order.
/// All operands are contiguous [total, heads, d] (row stride heads d, head stride d).
#pragma once

#include <cstdint>

#include "strata/core/depth_softmax.hpp"
#include "strata/core/numeric.hpp"
#include "strata/core/rmsnorm.hpp"
#include "strata/core/rope.hpp"
#include "strata/strata.cuh"
#include "strata/variants/lane_row.cuh"
#include "strata/variants/qk_norm_rope.cuh"

namespace strata::variants {

/// One layer of the depth pass (kernel arguments). Pointers are device memory.
struct DepthLayer {
  int total = 0, h = 0, h_k = 0;    ///< tokens, query heads, KV heads
  const int* cu_seqlens = nullptr;  ///< [b + 1] (positions); null: fixed-length `seqlen`
  int b = 0, seqlen = 0;
  /// [total] RoPE position of each token (device; decode: its place in the cache), or null:
  /// from cu_seqlens
  const int* positions = nullptr;
  /// QK-norm (off unless asked; the paper's Qwen3-style model turns it on) and RoPE
  QkNormRopeOptions local;
  // forward
  const void* q = nullptr;  ///< raw projections (T): q [total, h, d]; k, v [total, h_k, d]
  const void* k = nullptr;
  const void* v = nullptr;
  void* q_rot = nullptr;  ///< outputs (T): the attention's q, k^ and v^
  void* khat = nullptr;
  void* vhat = nullptr;  ///< may equal v for inference (each group reads its row first)
  const float* gamma_q = nullptr;
  const float* gamma_k = nullptr;
  int num_sources = 0;                           ///< <= core::kMaxSources
  const void* src_khat[core::kMaxSources] = {};  ///< the sources' k^_j and v^_j (T)
  const void* src_vhat[core::kMaxSources] = {};
  // backward
  const void* dq_rot = nullptr;  ///< the attention backward's dq, dk^, dv^ (T)
  const void* dkhat = nullptr;
  const void* dvhat = nullptr;
  const float* dkhat_acc = nullptr;  ///< this layer's fp32 accumulators (null: not a source)
  const float* dvhat_acc = nullptr;
  float* src_dkhat_acc[core::kMaxSources] = {};  ///< the sources' fp32 accumulators (+=)
  float* src_dvhat_acc[core::kMaxSources] = {};
  void* dq = nullptr;  ///< raw gradients (T), written
  void* dk = nullptr;
  void* dv = nullptr;
  float* partial = nullptr;  ///< workspace [blocks, 2, d]: dgamma_q, dgamma_k per block
  float* dgamma_q = nullptr;
  float* dgamma_k = nullptr;
};

inline constexpr int kDepthLanes = 8;      ///< lanes per (token, KV head)
inline constexpr int kDepthThreads = 128;  ///< 16 groups per block
inline constexpr int kDepthRowsPerGroup = 8;
inline constexpr int kDepthGroups = kDepthThreads / kDepthLanes;
inline constexpr int kDepthRowsPerBlock = kDepthGroups * kDepthRowsPerGroup;

STRATA_EXECUTOR_BEGIN

namespace depth_detail {

template <int D>
using Row = LaneRow<D, kDepthLanes>;
using Sum = arch::LaneGroupSum<kDepthLanes>;

/// Iteration i of a lane group: its (token, KV head) row, clamped past the end.
struct Step {
  bool valid;
  int t, g;
};
STRATA_HOST_DEVICE Step step(const DepthLayer& p, int64_t r0, int i) {
  const int64_t rows = int64_t(p.total) * p.h_k;
  const bool valid = r0 + i < rows;
  const int64_t row = valid ? r0 + i : rows - 1;
  return {valid, int(row / p.h_k), int(row % p.h_k)};
}

/// q_rot of query head h from the raw q (norm, then RoPE).
template <class T, int D>
STRATA_DEVICE void q_rotated(const DepthLayer& p, bool valid, int t, int h, const Row<D>& r,
                             const float* gq_s, float pos, float (&x)[D / kDepthLanes]) {
  load_dense<T, D>(valid, p.q, p.h, t, h, r, x);
  if (p.local.qk_norm) {
    float g[D / kDepthLanes];
    lane_gather(gq_s, r, g);
    core::rmsnorm_forward(x, g, D, p.local.eps, x, Sum{});
  }
  if (p.local.rope) lane_rope<false>(x, r, pos, p.local.rope_theta);
}

/// RoPE(k) (the k-norm's input).
template <class T, int D>
STRATA_DEVICE void k_rotated(const DepthLayer& p, bool valid, int t, int g, const Row<D>& r,
                             float pos, float (&x)[D / kDepthLanes]) {
  load_dense<T, D>(valid, p.k, p.h_k, t, g, r, x);
  if (p.local.rope) lane_rope<false>(x, r, pos, p.local.rope_theta);
}

template <int D>
STRATA_DEVICE void stage_gains(const DepthLayer& p, float* gq_s, float* gk_s) {
  for (int j = int(threadIdx.x); j < D; j += kDepthThreads) {
    gq_s[j] = p.local.qk_norm ? p.gamma_q[j] : 1.f;
    gk_s[j] = p.local.qk_norm ? p.gamma_k[j] : 1.f;
  }
  __syncthreads();
}

}  // namespace depth_detail

/// Forward pass of one layer. Every lane runs every iteration (group sums are warp shuffles);
/// rows past the end compute on zeros and store nothing.
template <class T, int D>
__global__ void __launch_bounds__(kDepthThreads) depth_forward_kernel(const DepthLayer p) {
  using namespace depth_detail;
  constexpr int N = D / kDepthLanes;
  __shared__ float gq_s[D], gk_s[D];
  stage_gains<D>(p, gq_s, gk_s);
  const Row<D> r{int(threadIdx.x % kDepthLanes) * (D / (2 * kDepthLanes))};
  const int G = p.h / p.h_k;
  const float scale = core::depth_scale(D), inv_g = 1.f / float(G);
  const int64_t r0 =
      int64_t(blockIdx.x) * kDepthRowsPerBlock + (threadIdx.x / kDepthLanes) * kDepthRowsPerGroup;
  for (int i = 0; i < kDepthRowsPerGroup; ++i) {
    const Step st = step(p, r0, i);
    const float pos = float(sequence_position(p.positions, p.cu_seqlens, p.b, p.seqlen, st.t));
    float qbar[N] = {};
    for (int gi = 0; gi < G; ++gi) {
      float x[N];
      q_rotated<T, D>(p, st.valid, st.t, st.g * G + gi, r, gq_s, pos, x);
      store_dense<T, D>(st.valid, p.q_rot, p.h, st.t, st.g * G + gi, r, x);
      lane_round<T>(x);  // q^ from q_rot as stored, the same q^ the backward rebuilds
      core::depth_query_add(x, inv_g, qbar);
    }
    float kh[N];
    k_rotated<T, D>(p, st.valid, st.t, st.g, r, pos, kh);
    if (p.local.qk_norm) {
      float g[N];
      lane_gather(gk_s, r, g);
      core::rmsnorm_forward(kh, g, D, p.local.eps, kh, Sum{});
    }
    store_dense<T, D>(st.valid, p.khat, p.h_k, st.t, st.g, r, kh);
    lane_round<T>(kh);  // the self key as the attention and later layers read it
    core::DepthMix<N> mix;
    for (int s = 0; s < p.num_sources && s < core::kMaxSources; ++s) {
      float kap[N], nu[N];
      load_dense<T, D>(st.valid, p.src_khat[s], p.h_k, st.t, st.g, r, kap);
      load_dense<T, D>(st.valid, p.src_vhat[s], p.h_k, st.t, st.g, r, nu);
      mix.add(qbar, kap, nu, scale, Sum{});
    }
    float v[N];
    load_dense<T, D>(st.valid, p.v, p.h_k, st.t, st.g, r, v);
    mix.add(qbar, kh, v, scale, Sum{});
    mix.finalize(v);
    store_dense<T, D>(st.valid, p.vhat, p.h_k, st.t, st.g, r, v);
  }
}

/// Backward pass of one layer (after the attention backward of the same layer).
template <class T, int D>
__global__ void __launch_bounds__(kDepthThreads) depth_backward_kernel(const DepthLayer p) {
  using namespace depth_detail;
  constexpr int N = D / kDepthLanes;
  __shared__ float gq_s[D], gk_s[D];
  __shared__ float group_dg[kDepthGroups][2][D];
  stage_gains<D>(p, gq_s, gk_s);
  const Row<D> r{int(threadIdx.x % kDepthLanes) * (D / (2 * kDepthLanes))};
  const int G = p.h / p.h_k;
  const float scale = core::depth_scale(D), inv_g = 1.f / float(G);
  const int64_t r0 =
      int64_t(blockIdx.x) * kDepthRowsPerBlock + (threadIdx.x / kDepthLanes) * kDepthRowsPerGroup;
  float dgq[N] = {}, dgk[N] = {};
  for (int i = 0; i < kDepthRowsPerGroup; ++i) {
    const Step st = step(p, r0, i);
    const float pos = float(sequence_position(p.positions, p.cu_seqlens, p.b, p.seqlen, st.t));
    // g = dL/dv^: the attention's dv^ and what later layers sent
    float g[N];
    load_dense<T, D>(st.valid, p.dvhat, p.h_k, st.t, st.g, r, g);
    add_dense<D>(st.valid, p.dvhat_acc, p.h_k, st.t, st.g, r, g);
    float qbar[N] = {};
    for (int gi = 0; gi < G; ++gi) {
      float x[N];
      load_dense<T, D>(st.valid, p.q_rot, p.h, st.t, st.g * G + gi, r, x);
      core::depth_query_add(x, inv_g, qbar);
    }
    float kh[N], v[N];
    load_dense<T, D>(st.valid, p.khat, p.h_k, st.t, st.g, r, kh);
    load_dense<T, D>(st.valid, p.v, p.h_k, st.t, st.g, r, v);
    // Pass 1 reads each candidate once: logits, g . nu, and dq^ accumulated online.
    core::DepthMixGrad<> dm;
    core::DepthQueryGrad<N> dqg;
    for (int s = 0; s < p.num_sources && s < core::kMaxSources; ++s) {
      float kap[N], nu[N];
      load_dense<T, D>(st.valid, p.src_khat[s], p.h_k, st.t, st.g, r, kap);
      load_dense<T, D>(st.valid, p.src_vhat[s], p.h_k, st.t, st.g, r, nu);
      dm.add(qbar, kap, nu, g, scale, Sum{});
      dqg.add(dm.logit(s), dm.g_dot_nu(s), kap);
    }
    dm.add(qbar, kh, v, g, scale, Sum{});
    dqg.add(dm.logit(p.num_sources), dm.g_dot_nu(p.num_sources), kh);
    dm.finish();
    float dqbar[N] = {};
    dqg.finish(dm.delta_bar, scale, dqbar);
    // Pass 2 needs no operand again: dkappa_c = dz_c scale q^, dnu_c = alpha_c g.
    for (int s = 0; s < p.num_sources && s < core::kMaxSources; ++s) {
      const float dzs = dm.dz(s) * scale, a = dm.alpha(s);
      float dkap[N], dnu[N];
      STRATA_UNROLL
      for (int e = 0; e < N; ++e) dkap[e] = dzs * qbar[e], dnu[e] = a * g[e];
      accumulate_dense<D>(st.valid, p.src_dkhat_acc[s], p.h_k, st.t, st.g, r, dkap);
      accumulate_dense<D>(st.valid, p.src_dvhat_acc[s], p.h_k, st.t, st.g, r, dnu);
    }
    {  // self: dk^_l gets the depth share next to the attention's and the later layers'
      const float dzs = dm.dz(p.num_sources) * scale, a = dm.alpha(p.num_sources);
      float dkap[N], dnu[N];
      STRATA_UNROLL
      for (int e = 0; e < N; ++e) dkap[e] = dzs * qbar[e], dnu[e] = a * g[e];
      store_dense<T, D>(st.valid, p.dv, p.h_k, st.t, st.g, r, dnu);
      float dkh[N];
      load_dense<T, D>(st.valid, p.dkhat, p.h_k, st.t, st.g, r, dkh);
      add_dense<D>(st.valid, p.dkhat_acc, p.h_k, st.t, st.g, r, dkh);
      STRATA_UNROLL
      for (int e = 0; e < N; ++e) dkh[e] += dkap[e];
      if (p.local.qk_norm) {  // k^ = RMSNorm(RoPE(k)): the norm's input is RoPE(k)
        float kr[N], gk[N];
        k_rotated<T, D>(p, st.valid, st.t, st.g, r, pos, kr);
        lane_gather(gk_s, r, gk);
        core::rmsnorm_backward(kr, gk, dkh, D, p.local.eps, dkh, dgk, Sum{});
      }
      if (p.local.rope) lane_rope<true>(dkh, r, pos, p.local.rope_theta);
      store_dense<T, D>(st.valid, p.dk, p.h_k, st.t, st.g, r, dkh);
    }
    for (int gi = 0; gi < G; ++gi) {  // dq_rot + dq^ / G, back through RoPE and the q-norm
      const int h = st.g * G + gi;
      float dqr[N];
      load_dense<T, D>(st.valid, p.dq_rot, p.h, st.t, h, r, dqr);
      STRATA_UNROLL
      for (int e = 0; e < N; ++e) dqr[e] += dqbar[e] * inv_g;
      if (p.local.rope) lane_rope<true>(dqr, r, pos, p.local.rope_theta);
      if (p.local.qk_norm) {
        float x[N], gq[N];
        load_dense<T, D>(st.valid, p.q, p.h, st.t, h, r, x);
        lane_gather(gq_s, r, gq);
        core::rmsnorm_backward(x, gq, dqr, D, p.local.eps, dqr, dgq, Sum{});
      }
      store_dense<T, D>(st.valid, p.dq, p.h, st.t, h, r, dqr);
    }
  }
  if (!p.local.qk_norm) return;  // uniform over the block
  const int grp = int(threadIdx.x) / kDepthLanes;
  STRATA_UNROLL
  for (int e = 0; e < N; ++e) {
    group_dg[grp][0][r.col(e)] = dgq[e];
    group_dg[grp][1][r.col(e)] = dgk[e];
  }
  __syncthreads();
  for (int j = int(threadIdx.x); j < 2 * D; j += kDepthThreads) {
    float acc = 0.f;
    for (int w = 0; w < kDepthGroups; ++w) acc += group_dg[w][j / D][j % D];
    p.partial[int64_t(blockIdx.x) * 2 * D + j] = acc;
  }
}

/// dgamma_q, dgamma_k from the blocks' partials [blocks, 2, D], in block order.
template <int D>
__global__ void __launch_bounds__(2 * D)
    depth_dgamma_reduce_kernel(const float* partial, int blocks, float* dgamma_q, float* dgamma_k) {
  const int j = int(threadIdx.x);
  float acc = 0.f;
  for (int c = 0; c < blocks; ++c) acc += partial[int64_t(c) * 2 * D + j];
  (j < D ? dgamma_q[j] : dgamma_k[j - D]) = acc;
}

STRATA_EXECUTOR_END
}  // namespace strata::variants
