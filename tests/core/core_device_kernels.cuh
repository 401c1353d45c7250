// strata/core functions as device code: token-local kernels in the shape the fused passes will
// have — a head row of d = 64 split over a group of 8 lanes, reductions through
// arch::LaneGroupSum. Compiled by nvcc in the ptxas gate (tests/static) and executed in the
// simulator against the host functions (tests/sim/test_core_device.cpp).
//
// Lane j of a group owns elements 4j..4j+3 and 32+4j..32+4j+3 of the row: the two halves that
// rotate-half RoPE pairs are in the same lane, so RoPE needs no shuffle.
#pragma once

#include <strata/strata.cuh>

namespace core_device {

inline constexpr int kD = 64;                       ///< head dimension of the probes
inline constexpr int kLanes = 8;                    ///< lanes per row
inline constexpr int kN = kD / kLanes;              ///< elements per lane
inline constexpr int kRowsPerBlock = 128 / kLanes;  ///< rows per 128-thread block
inline constexpr int kMaxCandidates = 9;            ///< kMaxSources = 8, plus self

/// Element of the row held in register t of lane j.
STRATA_HOST_DEVICE int element(int j, int t) {
  return t < kN / 2 ? (kN / 2) * j + t : kD / 2 + (kN / 2) * j + (t - kN / 2);
}

template <class T>
STRATA_DEVICE void load(const T* row, int j, float (&x)[kN]) {
  STRATA_UNROLL
  for (int t = 0; t < kN; ++t) x[t] = strata::core::to_float(row[element(j, t)]);
}
template <class T>
STRATA_DEVICE void store(const float (&x)[kN], int j, T* row) {
  STRATA_UNROLL
  for (int t = 0; t < kN; ++t) row[element(j, t)] = strata::core::from_float<T>(x[t]);
}
template <class T>
STRATA_DEVICE void store_f32(const float (&x)[kN], int j, T* row) {
  STRATA_UNROLL
  for (int t = 0; t < kN; ++t) row[element(j, t)] = x[t];
}

/// This thread's row (clamped so that every lane takes part in the reductions) and lane.
struct RowLane {
  int row, lane;
  bool valid;
  STRATA_DEVICE RowLane(int rows) {
    const int r = int(blockIdx.x) * kRowsPerBlock + int(threadIdx.x) / kLanes;
    valid = r < rows;
    row = valid ? r : rows - 1;
    lane = int(threadIdx.x) % kLanes;
  }
};

/// QK-norm then RoPE (Qwen3's order) of rows [tokens*heads, d]; position = token index.
template <class T>
__global__ void qk_norm_rope(const T* x, const T* gamma, T* y, int rows, int heads, float eps,
                             float theta) {
  const RowLane rl(rows);
  float v[kN], g[kN];
  load(x + size_t(rl.row) * kD, rl.lane, v);
  load(gamma, rl.lane, g);
  strata::core::rmsnorm_forward(v, g, kD, eps, v, strata::arch::LaneGroupSum<kLanes>{});
  const float pos = float(rl.row / heads);
  STRATA_UNROLL
  for (int t = 0; t < kN / 2; ++t) {
    float c, s;
    strata::core::rope_cos_sin(pos, element(rl.lane, t), kD, theta, c, s);
    strata::core::rope_rotate(v[t], v[t + kN / 2], c, s);
  }
  if (rl.valid) store(v, rl.lane, y + size_t(rl.row) * kD);
}

/// Depth softmax forward of rows [tokens*kv_heads]: group-mean query over G = heads/kv_heads,
/// candidates kappa[c], nu[c] ([tokens, kv_heads, d] each), v^ out.
template <class T>
__global__ void depth_mix(const T* q, const T* const* kappa, const T* const* nu, int n_cand,
                          T* vhat, int rows, int heads, int kv_heads) {
  const RowLane rl(rows);
  const int token = rl.row / kv_heads, group = rl.row % kv_heads, G = heads / kv_heads;
  const strata::arch::LaneGroupSum<kLanes> sum;
  float qbar[kN] = {};
  for (int h = 0; h < G; ++h) {
    float qh[kN];
    load(q + (size_t(token) * heads + size_t(group * G + h)) * kD, rl.lane, qh);
    strata::core::depth_query_add(qh, 1.f / float(G), qbar);
  }
  strata::core::DepthMix<kN> mix;
  for (int c = 0; c < n_cand; ++c) {
    float k[kN], v[kN];
    load(kappa[c] + size_t(rl.row) * kD, rl.lane, k);
    load(nu[c] + size_t(rl.row) * kD, rl.lane, v);
    mix.add(qbar, k, v, strata::core::depth_scale(kD), sum);
  }
  float out[kN];
  mix.finalize(out);
  if (rl.valid) store(out, rl.lane, vhat + size_t(rl.row) * kD);
}

/// Depth softmax backward: dq^ (fp32, [rows, d]) and dkappa, dnu of every candidate (fp32).
template <class T>
__global__ void depth_mix_backward(const T* q, const T* const* kappa, const T* const* nu,
                                   int n_cand, const T* g, float* dqbar, float* const* dkappa,
                                   float* const* dnu, int rows, int heads, int kv_heads) {
  const RowLane rl(rows);
  const int token = rl.row / kv_heads, group = rl.row % kv_heads, G = heads / kv_heads;
  const strata::arch::LaneGroupSum<kLanes> sum;
  const float scale = strata::core::depth_scale(kD);
  float qbar[kN] = {}, gr[kN];
  for (int h = 0; h < G; ++h) {
    float qh[kN];
    load(q + (size_t(token) * heads + size_t(group * G + h)) * kD, rl.lane, qh);
    strata::core::depth_query_add(qh, 1.f / float(G), qbar);
  }
  load(g + size_t(rl.row) * kD, rl.lane, gr);
  strata::core::DepthMixGrad<kMaxCandidates> grad;
  for (int c = 0; c < n_cand; ++c) {
    float k[kN], v[kN];
    load(kappa[c] + size_t(rl.row) * kD, rl.lane, k);
    load(nu[c] + size_t(rl.row) * kD, rl.lane, v);
    grad.add(qbar, k, v, gr, scale, sum);
  }
  grad.finish();
  float dq[kN] = {};
  for (int c = 0; c < n_cand; ++c) {
    float k[kN], dk[kN], dn[kN];
    load(kappa[c] + size_t(rl.row) * kD, rl.lane, k);
    grad.candidate_grads(c, qbar, k, gr, scale, dq, dk, dn);
    if (rl.valid) {
      store_f32(dk, rl.lane, dkappa[c] + size_t(rl.row) * kD);
      store_f32(dn, rl.lane, dnu[c] + size_t(rl.row) * kD);
    }
  }
  if (rl.valid) store_f32(dq, rl.lane, dqbar + size_t(rl.row) * kD);
}

/// ExoFormer's stream of q: anchor RMSNorm, elementwise-lambda mix with the token's scales,
/// QK-norm; then the output gate of the same rows: out = mixed * sigmoid(gate).
template <class T>
__global__ void anchor_mix_norm_gate(const T* anchor, const T* p, const T* gate_logits,
                                     const float* gamma_anchor, const float* gamma,
                                     const float* lambda1, const float* lambda2, const float* s,
                                     T* out, int rows, int heads, float anchor_eps, float eps) {
  const RowLane rl(rows);
  const int token = rl.row / heads, head = rl.row % heads;
  const strata::arch::LaneGroupSum<kLanes> sum;
  float a[kN], x[kN], ga[kN], gq[kN], l1[kN], l2[kN], gl[kN];
  load(anchor + size_t(rl.row) * kD, rl.lane, a);
  load(p + size_t(rl.row) * kD, rl.lane, x);
  load(gamma_anchor, rl.lane, ga);
  load(gamma, rl.lane, gq);
  load(lambda1 + size_t(head) * kD, rl.lane, l1);
  load(lambda2 + size_t(head) * kD, rl.lane, l2);
  load(gate_logits + size_t(rl.row) * kD, rl.lane, gl);
  strata::core::rmsnorm_forward(a, ga, kD, anchor_eps, a, sum);
  strata::core::anchor_mix_forward(a, x, l1, l2, s[2 * token], s[2 * token + 1], x);
  strata::core::rmsnorm_forward(x, gq, kD, eps, x, sum);
  strata::core::gate_forward(x, gl, x);
  if (rl.valid) store(x, rl.lane, out + size_t(rl.row) * kD);
}

/// MEA at the KeyValue site: composite head = sum_c A[c,h] K_c[c], then head GroupNorm.
template <class T, int kMaxComponents>
__global__ void compose_group_norm(const T* kc, const float* a, const float* gamma,
                                   const float* beta, T* out, int rows, int heads, int components,
                                   float eps) {
  const RowLane rl(rows);
  const int token = rl.row / heads, head = rl.row % heads;
  float comp[kMaxComponents][kN];
  STRATA_UNROLL
  for (int c = 0; c < kMaxComponents; ++c)
    if (c < components) load(kc + (size_t(token) * components + size_t(c)) * kD, rl.lane, comp[c]);
  float x[kN], g[kN], b[kN];
  strata::core::head_compose_forward(a, heads, components, head, comp, x);
  load(gamma + size_t(head) * kD, rl.lane, g);
  load(beta + size_t(head) * kD, rl.lane, b);
  strata::core::group_norm_forward(x, g, b, kD, eps, x, strata::arch::LaneGroupSum<kLanes>{});
  if (rl.valid) store(x, rl.lane, out + size_t(rl.row) * kD);
}

/// The split-row backward paths: RMSNorm, head GroupNorm and the headwise gate backward of rows
/// [rows, d] with a row-sum reducer over the 8 lanes. Per-row gain gradients are written per row
/// (dgamma_rows, dbeta_rows) so the test sees each lane's partials land in its own elements.
template <class T>
__global__ void norm_gate_backward(const T* x, const float* gamma, const T* dy, const T* gate_logit,
                                   float* dx_rms, float* dgamma_rms, float* dx_gn, float* dgamma_gn,
                                   float* dbeta_gn, float* d_o, float* dgate, int rows, float eps) {
  const RowLane rl(rows);
  const strata::arch::LaneGroupSum<kLanes> sum;
  const size_t base = size_t(rl.row) * kD;
  float xr[kN], g[kN], dyr[kN], dx[kN], dg[kN] = {}, db[kN] = {};
  load(x + base, rl.lane, xr);
  load(gamma, rl.lane, g);
  load(dy + base, rl.lane, dyr);
  strata::core::rmsnorm_backward(xr, g, dyr, kD, eps, dx, dg, sum);
  if (rl.valid) {
    store_f32(dx, rl.lane, dx_rms + base);
    store_f32(dg, rl.lane, dgamma_rms + base);
  }
  STRATA_UNROLL
  for (int t = 0; t < kN; ++t) dg[t] = 0.f;
  strata::core::group_norm_backward(xr, g, dyr, kD, eps, dx, dg, db, sum);
  if (rl.valid) {
    store_f32(dx, rl.lane, dx_gn + base);
    store_f32(dg, rl.lane, dgamma_gn + base);
    store_f32(db, rl.lane, dbeta_gn + base);
  }
  const float dgh =
      strata::core::gate_backward(xr, strata::core::to_float(gate_logit[rl.row]), dyr, dx, sum);
  if (rl.valid) {
    store_f32(dx, rl.lane, d_o + base);
    if (rl.lane == 0) dgate[rl.row] = dgh;
  }
}

}  // namespace core_device
