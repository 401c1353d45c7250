// The kernel zoo: small kernels written once in CUDA C++ that nvcc compiles for sm_80/sm_90a and
// the SIMT simulator executes on the CPU. They exercise every mechanism of the executor (static
// and dynamic shared memory, barriers, warp collectives, cp.async pipelines, ldmatrix, mma) and
// serve as templates for real kernels.
//
// `Bug` template parameters inject classic synchronisation and fragment bugs; the simulator's
// tests prove each one is caught. Production instantiations use Bug = 0.
#pragma once

#include <strata/strata.cuh>

#include <cmath>
#include <cstdint>

namespace zoo {
STRATA_EXECUTOR_BEGIN  // kernels are executor-specific: see strata/config.hpp

using strata::arch::kFullMask;

/// Per-block sum of `x[0..n)`: grid-stride loads, warp butterflies, static shared memory.
template <int kBlock>
__global__ void __launch_bounds__(kBlock)
    block_sum(const float* __restrict__ x, float* __restrict__ partial, int n) {
  static_assert(kBlock % 32 == 0 && kBlock <= 1024, "whole warps");
  __shared__ float warp_sums[kBlock / 32];
  float v = 0.f;
  for (int i = int(blockIdx.x) * kBlock + int(threadIdx.x); i < n; i += int(gridDim.x) * kBlock)
    v += x[i];
  v = strata::arch::warp_sum(v);
  const int lane = int(threadIdx.x) % 32, warp = int(threadIdx.x) / 32;
  if (lane == 0) warp_sums[warp] = v;
  __syncthreads();
  if (warp == 0) {
    v = lane < kBlock / 32 ? warp_sums[lane] : 0.f;
    v = strata::arch::warp_sum(v);
    if (lane == 0) partial[blockIdx.x] = v;
  }
}

/// C = A * B (row-major f32) with kT x kT shared-memory tiles and 2-D blocks.
/// Bug 1: no barrier after the tile stores (RAW). Bug 2: no barrier before the next tile
/// overwrites shared memory (WAR).
template <int kT, int Bug = 0>
__global__ void sgemm_tiled(const float* A, const float* B, float* C, int M, int N, int K) {
  __shared__ float As[kT][kT];
  __shared__ float Bs[kT][kT];
  const int tx = int(threadIdx.x), ty = int(threadIdx.y);
  const int row = int(blockIdx.y) * kT + ty, col = int(blockIdx.x) * kT + tx;
  float acc = 0.f;
  for (int k0 = 0; k0 < K; k0 += kT) {
    As[ty][tx] = (row < M && k0 + tx < K) ? A[size_t(row) * K + k0 + tx] : 0.f;
    Bs[ty][tx] = (k0 + ty < K && col < N) ? B[size_t(k0 + ty) * N + col] : 0.f;
    if (Bug != 1) __syncthreads();
    for (int k = 0; k < kT; ++k) acc += As[ty][k] * Bs[k][tx];
    if (Bug != 2) __syncthreads();
  }
  if (row < M && col < N) C[size_t(row) * N + col] = acc;
}

/// Tensor-core GEMM C[M,N] (f32) = A[M,K] * Bt[N,K]^T with T = bf16 or f16, 128 threads, a
/// 64x16 output tile, K tiles of 32 streamed through a two-stage cp.async pipeline, fragments
/// loaded by ldmatrix.x4. Requires K % 8 == 0 (16-byte rows); M, N, K otherwise arbitrary.
/// Bug 1: A fragment registers 1 and 2 swapped. Bug 2: no cp.async.wait_group. Bug 3: B
/// fragment registers of the first n8 tile swapped.
template <class T, int Bug = 0>
__global__ void __launch_bounds__(128)
    mma_gemm_tn(const T* A, const T* Bt, float* C, int M, int N, int K) {
  constexpr int BM = 64, BN = 16, BK = 32, LD = BK + 8;  // +8 elements: rows stay 16-byte aligned
  STRATA_DYNAMIC_SMEM(T, As);                            // [2][BM][LD]
  T* Bs = As + 2 * BM * LD;                              // [2][BN][LD]
  const int tid = int(threadIdx.x), warp = tid / 32, lane = tid % 32;
  const int m0 = int(blockIdx.y) * BM, n0 = int(blockIdx.x) * BN;
  auto load_stage = [&](int stage, int k0) {
    for (int c = tid; c < BM * BK / 8; c += 128) {
      const int r = c / (BK / 8), kc = (c % (BK / 8)) * 8, gr = m0 + r, gk = k0 + kc;
      const bool ok = gr < M && gk < K;
      strata::arch::cp_async<16>(&As[(stage * BM + r) * LD + kc], ok ? &A[size_t(gr) * K + gk] : A,
                                 ok ? 16 : 0);
    }
    for (int c = tid; c < BN * BK / 8; c += 128) {
      const int r = c / (BK / 8), kc = (c % (BK / 8)) * 8, gn = n0 + r, gk = k0 + kc;
      const bool ok = gn < N && gk < K;
      strata::arch::cp_async<16>(&Bs[(stage * BN + r) * LD + kc],
                                 ok ? &Bt[size_t(gn) * K + gk] : Bt, ok ? 16 : 0);
    }
    strata::arch::cp_async_commit();
  };
  float acc[2][4] = {};
  const int ktiles = (K + BK - 1) / BK;
  load_stage(0, 0);
  for (int kt = 0; kt < ktiles; ++kt) {
    if (kt + 1 < ktiles) {
      load_stage((kt + 1) & 1, (kt + 1) * BK);
      if (Bug != 2) strata::arch::cp_async_wait<1>();
    } else {
      if (Bug != 2) strata::arch::cp_async_wait<0>();
    }
    __syncthreads();
    const int s = kt & 1;
    STRATA_UNROLL
    for (int kk = 0; kk < BK; kk += 16) {
      uint32_t a[4], b[4];
      strata::arch::ldmatrix_x4(
          a, &As[(s * BM + warp * 16 + (lane % 16)) * LD + kk + (lane / 16) * 8]);
      // matrices (n0-7,k0-7) (n0-7,k8-15) (n8-15,k0-7) (n8-15,k8-15)
      const int bi = lane / 8, br = lane % 8;
      strata::arch::ldmatrix_x4(b, &Bs[(s * BN + (bi / 2) * 8 + br) * LD + kk + (bi % 2) * 8]);
      if (Bug == 1) {
        const uint32_t t = a[1];
        a[1] = a[2];
        a[2] = t;
      }
      uint32_t b0[2] = {b[0], b[1]}, b1[2] = {b[2], b[3]};
      if (Bug == 3) {
        b0[0] = b[1];
        b0[1] = b[0];
      }
      strata::arch::mma_m16n8k16<T>(acc[0], a, b0, acc[0]);
      strata::arch::mma_m16n8k16<T>(acc[1], a, b1, acc[1]);
    }
    __syncthreads();
  }
  for (int nt = 0; nt < 2; ++nt)
    for (int i = 0; i < 4; ++i) {
      int r, c;
      strata::arch::mma_c_coord(lane, i, r, c);
      r += m0 + warp * 16;
      c += n0 + nt * 8;
      if (r < M && c < N) C[size_t(r) * N + c] = acc[nt][i];
    }
}

/// Shared memory needed by mma_gemm_tn.
template <class T>
constexpr size_t mma_gemm_tn_smem_bytes() {
  return 2 * (64 + 16) * (32 + 8) * sizeof(T);
}

/// One warp: C[16,16] = A[16,16] * B[16,16], both row-major; B's fragments come from
/// ldmatrix.x4.trans, the P*V pattern of flash attention.
template <class T>
__global__ void mma_tile_nn(const T* A, const T* B, float* C) {
  __shared__ __align__(16) T As[16][24];  // +8 elements: 48-byte rows
  __shared__ __align__(16) T Bs[16][24];
  const int lane = int(threadIdx.x);
  for (int i = lane; i < 256; i += 32) {
    As[i / 16][i % 16] = A[i];
    Bs[i / 16][i % 16] = B[i];
  }
  strata::arch::syncwarp();
  uint32_t a[4], b[4];
  strata::arch::ldmatrix_x4(a, &As[lane % 16][(lane / 16) * 8]);
  // .trans: lanes 0-7 rows k0-7 @n0, 8-15 rows k8-15 @n0, 16-23 rows k0-7 @n8, 24-31 k8-15 @n8
  strata::arch::ldmatrix_x4<true>(b, &Bs[(lane % 8) + 8 * ((lane / 8) % 2)][8 * (lane / 16)]);
  float acc[2][4] = {};
  const uint32_t b0[2] = {b[0], b[1]}, b1[2] = {b[2], b[3]};
  strata::arch::mma_m16n8k16<T>(acc[0], a, b0, acc[0]);
  strata::arch::mma_m16n8k16<T>(acc[1], a, b1, acc[1]);
  for (int nt = 0; nt < 2; ++nt)
    for (int i = 0; i < 4; ++i) {
      int r, c;
      strata::arch::mma_c_coord(lane, i, r, c);
      C[r * 16 + nt * 8 + c] = acc[nt][i];
    }
}

/// Flash-attention forward in f32 on CUDA cores: O = softmax(scale * Q K^T [causal]) V for
/// [BH][S][D] tensors. 128 threads (4 warps) own 16 query rows, K/V tiles of 32 keys stream
/// through shared memory, online softmax with warp reductions; also writes the log-sum-exp.
/// Bug 1: no barrier before the next K/V tile overwrites shared memory. Bug 2: causal mask
/// off by one.
template <int D, bool kCausal, int Bug = 0>
__global__ void __launch_bounds__(128)
    flash_fwd_simt(const float* Q, const float* K, const float* V, float* O, float* lse, int S,
                   float scale) {
  static_assert(D % 32 == 0, "D: multiple of 32");
  constexpr int BM = 16, BN = 32, NW = 4, RPW = BM / NW, NT = NW * 32;
  __shared__ float Qs[BM][D];
  __shared__ float Ks[BN][D + 1];  // +1: conflict-free column reads
  __shared__ float Vs[BN][D];
  const int bh = int(blockIdx.y), q0 = int(blockIdx.x) * BM;
  const int tid = int(threadIdx.x), warp = tid / 32, lane = tid % 32;
  const size_t off = size_t(bh) * S * D;
  for (int i = tid; i < BM * D; i += NT) {
    const int r = i / D, c = i % D;
    Qs[r][c] = (q0 + r < S) ? Q[off + size_t(q0 + r) * D + c] : 0.f;
  }
  float m[RPW], l[RPW], acc[RPW][D / 32];
  for (int r = 0; r < RPW; ++r) {
    m[r] = -INFINITY;
    l[r] = 0.f;
    for (int c = 0; c < D / 32; ++c) acc[r][c] = 0.f;
  }
  const int kv_end = kCausal ? (q0 + BM < S ? q0 + BM : S) : S;
  for (int k0 = 0; k0 < kv_end; k0 += BN) {
    for (int i = tid; i < BN * D; i += NT) {
      const int r = i / D, c = i % D;
      const bool ok = k0 + r < S;
      Ks[r][c] = ok ? K[off + size_t(k0 + r) * D + c] : 0.f;
      Vs[r][c] = ok ? V[off + size_t(k0 + r) * D + c] : 0.f;
    }
    __syncthreads();
    STRATA_UNROLL  // m, l and acc must stay in registers: every index a compile-time constant
        for (int rr = 0; rr < RPW; ++rr) {
      const int qr = warp * RPW + rr, qi = q0 + qr, kj = k0 + lane;
      float s = 0.f;
      for (int c = 0; c < D; ++c) s += Qs[qr][c] * Ks[lane][c];
      s *= scale;
      const bool valid = kj < S && (!kCausal || (Bug == 2 ? kj < qi : kj <= qi));
      if (!valid) s = -INFINITY;
      const float m_new = fmaxf(m[rr], strata::arch::warp_max(s));
      const float p = (m_new == -INFINITY) ? 0.f : expf(s - m_new);
      const float alpha = (m[rr] == -INFINITY) ? 0.f : expf(m[rr] - m_new);
      l[rr] = l[rr] * alpha + strata::arch::warp_sum(p);
      m[rr] = m_new;
      for (int c = 0; c < D / 32; ++c) acc[rr][c] *= alpha;
      STRATA_UNROLL_N(4)
      for (int j = 0; j < BN; ++j) {
        const float pj = strata::arch::shfl(p, j);
        for (int c = 0; c < D / 32; ++c) acc[rr][c] += pj * Vs[j][lane + 32 * c];
      }
    }
    if (Bug != 1) __syncthreads();
  }
  STRATA_UNROLL
  for (int rr = 0; rr < RPW; ++rr) {
    const int qi = q0 + warp * RPW + rr;
    if (qi < S) {
      const float inv = l[rr] > 0.f ? 1.f / l[rr] : 0.f;  // a fully masked row gives 0
      for (int c = 0; c < D / 32; ++c) O[off + size_t(qi) * D + lane + 32 * c] = acc[rr][c] * inv;
      if (lane == 0) lse[size_t(bh) * S + qi] = l[rr] > 0.f ? m[rr] + logf(l[rr]) : -INFINITY;
    }
  }
}

/// Histogram with global atomics: blocks on several simulator workers must not lose updates.
template <class Int>
__global__ void histogram(const Int* x, int n, Int* bins, int nbins, float* total) {
  for (int i = int(blockIdx.x * blockDim.x + threadIdx.x); i < n;
       i += int(gridDim.x * blockDim.x)) {
    atomicAdd(&bins[x[i] % nbins], Int(1));
    atomicAdd(total, 1.0f);
  }
}

STRATA_EXECUTOR_END
}  // namespace zoo
