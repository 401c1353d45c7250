/// \file
/// Emulated twins of the warp-level PTX in strata/arch: ldmatrix, mma.sync m16n8k16, cp.async.
/// They follow the PTX ISA's fragment maps (the tests check them against an independent
/// statement of those maps, CuTe's SM80 MMA traits).
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <bit>
#include <cstdint>
#include <cstring>
#include <vector>

#include "strata/config.hpp"
#include "strata/sim/runtime.hpp"
#include "strata/sim/traffic.hpp"

namespace strata::sim::emu {

using detail::Thread;

// ------------------------------------------------------------------------------- ldmatrix
/// ldmatrix.sync.aligned.m8n8.x{1,2,4}[.trans].shared.b16: lanes 8i..8i+7 give the row
/// addresses of matrix i. Without .trans lane l receives row l/4, columns 2(l%4), 2(l%4)+1 of
/// each matrix; with .trans it receives (row 2(l%4), col l/4) and (row 2(l%4)+1, col l/4).
// Uninstrumented in a traffic build: the rows it copies are the ldmatrix's shared-memory reads,
// counted here as one request, not as the completing lane's plain loads.
STRATA_SIM_NO_TSAN STRATA_SIM_NO_TRAFFIC inline void ldmatrix_fn(Thread* lanes, unsigned mask) {
  auto& st = *static_cast<detail::LdmatrixStage*>(lanes[__builtin_ctz(mask)].wio);
  if (mask != 0xffffffffu)
    detail::fault_at(lanes[__builtin_ctz(mask)], lanes[__builtin_ctz(mask)].site,
                     "ldmatrix.sync.aligned needs all 32 lanes of the warp");
  const int num = st.shape[0] & 7;
  const bool trans = st.shape[0] & 8;
  for (int l = 1; l < 32; ++l)
    if (st.shape[l] != st.shape[0])
      detail::fault_at(lanes[l], lanes[l].site,
                       "ldmatrix shape (.x1/.x2/.x4, .trans) differs across lanes");
  for (int l = 0; l < 8 * num; ++l)
    if (reinterpret_cast<uintptr_t>(st.addr[l]) % 16)
      detail::fault_at(lanes[l], lanes[l].site, "ldmatrix row address is not 16-byte aligned");
  // one phase per matrix: its 8 rows of 16 bytes (sim/access_model.hpp)
  const SmemCost cost = ldmatrix_cost(st.addr, num);
  SmemStats& ld = detail::g_block->ctr.smem_load;
  ++ld.requests;
  ld.bytes += 128u * unsigned(num);
  ld.wavefronts += cost.wavefronts;
  ld.conflicts += cost.conflicts;
  for (int l = 0; l < 32; ++l) {
    for (int i = 0; i < num; ++i) {
      uint16_t lo, hi;
      if (!trans) {
        const unsigned char* row = st.addr[8 * i + l / 4];
        std::memcpy(&lo, row + 4 * (l % 4), 2);
        std::memcpy(&hi, row + 4 * (l % 4) + 2, 2);
      } else {
        std::memcpy(&lo, st.addr[8 * i + 2 * (l % 4)] + 2 * (l / 4), 2);
        std::memcpy(&hi, st.addr[8 * i + 2 * (l % 4) + 1] + 2 * (l / 4), 2);
      }
      st.out[l][i] = uint32_t(lo) | (uint32_t(hi) << 16);
    }
  }
}

template <int N, bool Trans>
STRATA_SIM_NO_TSAN inline void ldmatrix(uint32_t (&r)[N], const void* smem_row,
                                        const ::strata::Site& s) {
  static_assert(N == 1 || N == 2 || N == 4, "ldmatrix loads 1, 2 or 4 matrices");
  Thread& t = *detail::g_cur;
  detail::LdmatrixStage& st = detail::g_block->wp[t.warp].ldsm[t.ldsm_seq & 1];
  st.addr[t.lane] = static_cast<const unsigned char*>(smem_row);
  st.shape[t.lane] = uint8_t(N | (Trans ? 8 : 0));
  // the completing lane copies the rows; the read belongs to the lane that named the row
  if (t.lane < 8 * N) detail::tsan_read(smem_row, 16);
  detail::warp_collective(detail::kLdmatrix, 0xffffffffu, &ldmatrix_fn, &st, s, false,
                          &Counters::ldmatrix);
  for (int i = 0; i < N; ++i) r[i] = st.out[t.lane][i];
  ++t.ldsm_seq;
}

// ------------------------------------------------------------------------------- mma.sync
enum class MmaType { kF16, kBF16 };

/// f16 bits -> float for all 65536 encodings, built once (the host conversion is software).
inline const float* f16_table() {
  static const std::vector<float> table = [] {
    std::vector<float> t(65536);
    for (uint32_t h = 0; h < 65536; ++h) {
      __half_raw raw;
      raw.x = uint16_t(h);
      t[h] = __half2float(__half(raw));
    }
    return t;
  }();
  return table.data();
}

/// D[16][8] += A[16][16] * B[16][8], inputs exact in f32, sums in double. Rows of B and D as
/// 4-wide vectors so the compiler emits SIMD code (AVX+FMA when the CPU has them, SSE2
/// otherwise; the products are exact, so fused and unfused multiply-adds agree).
using Double4 = double __attribute__((vector_size(32)));
using Float4 = float __attribute__((vector_size(16)));
__attribute__((always_inline)) inline void mma_core_body(const float (&A)[16][16],
                                                         const float (&B)[16][8],
                                                         double (&D)[16][8]) {
  Double4 b[16][2];
  for (int k = 0; k < 16; ++k)
    for (int j = 0; j < 2; ++j) {
      Float4 f;
      std::memcpy(&f, &B[k][4 * j], sizeof f);
      b[k][j] = __builtin_convertvector(f, Double4);
    }
  // Four rows at a time: eight accumulator chains (in registers) hide the multiply-add latency;
  // rows of B stream from memory. Full unrolling over k would spill the accumulators.
  for (int m = 0; m < 16; m += 4) {
    Double4 d0[4], d1[4];
    for (int r = 0; r < 4; ++r) {
      std::memcpy(&d0[r], &D[m + r][0], sizeof(Double4));
      std::memcpy(&d1[r], &D[m + r][4], sizeof(Double4));
    }
#pragma GCC unroll 2
    for (int k = 0; k < 16; ++k) {
      const Double4 b0 = b[k][0], b1 = b[k][1];
      for (int r = 0; r < 4; ++r) {
        const double a = A[m + r][k];
        d0[r] += a * b0;
        d1[r] += a * b1;
      }
    }
    for (int r = 0; r < 4; ++r) {
      std::memcpy(&D[m + r][0], &d0[r], sizeof(Double4));
      std::memcpy(&D[m + r][4], &d1[r], sizeof(Double4));
    }
  }
}
__attribute__((target("avx,fma"))) inline void mma_core_fma(const float (&A)[16][16],
                                                            const float (&B)[16][8],
                                                            double (&D)[16][8]) {
  mma_core_body(A, B, D);
}
inline void mma_core_generic(const float (&A)[16][16], const float (&B)[16][8],
                             double (&D)[16][8]) {
  mma_core_body(A, B, D);
}
/// Picks the AVX+FMA build on CPUs that have it (a runtime check, not an ifunc: ifunc resolvers
/// run before the sanitizer runtimes are up, and clang 14 emits them without COMDAT).
inline void mma_core(const float (&A)[16][16], const float (&B)[16][8], double (&D)[16][8]) {
  static const bool fma = __builtin_cpu_supports("fma") && __builtin_cpu_supports("avx");
  if (fma)
    mma_core_fma(A, B, D);
  else
    mma_core_generic(A, B, D);
}

template <MmaType T>
inline float mma_elem(uint32_t bits16) {
  if constexpr (T == MmaType::kBF16)
    return std::bit_cast<float>(bits16 << 16);
  else
    return f16_table()[bits16];
}

/// Completes an mma of the warp: all lanes have written their fragments into the stage.
STRATA_SIM_NO_TSAN inline void mma_fn(Thread* lanes, unsigned mask) {
  auto& st = *static_cast<detail::MmaStage*>(lanes[__builtin_ctz(mask)].wio);
  if (mask != 0xffffffffu)
    detail::fault_at(lanes[__builtin_ctz(mask)], lanes[__builtin_ctz(mask)].site,
                     "mma.sync.aligned needs all 32 lanes of the warp");
  if (st.lanes_bf16 && st.lanes_f16)
    detail::fault_at(lanes[__builtin_ctz(st.lanes_f16)], lanes[__builtin_ctz(st.lanes_f16)].site,
                     "mma input types differ across lanes (f16 here, bf16 on others)");
  st.lanes_bf16 = st.lanes_f16 = 0;
  mma_core(st.A, st.B, st.D);
}

/// D = A * B + C with f16/bf16 inputs and f32 accumulators. Each lane places its fragments by
/// the PTX ISA maps (groupID g = lane / 4, t = lane % 4) into the warp's stage; the products
/// are exact, and the sum of each dot product and its accumulator is formed in double and
/// rounded once to f32 (the hardware truncates differently; both are within f32 rounding of
/// the exact result).
template <MmaType T>
STRATA_SIM_NO_TSAN inline void mma_m16n8k16(float (&d)[4], const uint32_t (&a)[4],
                                            const uint32_t (&b)[2], const float (&c)[4],
                                            const ::strata::Site& s) {
  Thread& t = *detail::g_cur;
  detail::MmaStage& st = detail::g_block->wp[t.warp].mma[t.mma_seq & 1];
  const int g = t.lane >> 2, t2 = 2 * (t.lane & 3);
  // a0: (g, 2t..2t+1)  a1: (g+8, 2t..)  a2: (g, 2t+8..)  a3: (g+8, 2t+8..)
  float* r0 = &st.A[g][t2];
  float* r1 = &st.A[g + 8][t2];
  r0[0] = mma_elem<T>(a[0] & 0xffffu);
  r0[1] = mma_elem<T>(a[0] >> 16);
  r1[0] = mma_elem<T>(a[1] & 0xffffu);
  r1[1] = mma_elem<T>(a[1] >> 16);
  r0[8] = mma_elem<T>(a[2] & 0xffffu);
  r0[9] = mma_elem<T>(a[2] >> 16);
  r1[8] = mma_elem<T>(a[3] & 0xffffu);
  r1[9] = mma_elem<T>(a[3] >> 16);
  // b0: (2t..2t+1, g)  b1: (2t+8.., g)
  st.B[t2][g] = mma_elem<T>(b[0] & 0xffffu);
  st.B[t2 + 1][g] = mma_elem<T>(b[0] >> 16);
  st.B[t2 + 8][g] = mma_elem<T>(b[1] & 0xffffu);
  st.B[t2 + 9][g] = mma_elem<T>(b[1] >> 16);
  // c0, c1: (g, 2t..2t+1)  c2, c3: (g+8, 2t..)
  st.D[g][t2] = c[0];
  st.D[g][t2 + 1] = c[1];
  st.D[g + 8][t2] = c[2];
  st.D[g + 8][t2 + 1] = c[3];
  if constexpr (T == MmaType::kBF16)
    st.lanes_bf16 |= 1u << t.lane;
  else
    st.lanes_f16 |= 1u << t.lane;
  detail::warp_collective(detail::kMma, 0xffffffffu, &mma_fn, &st, s, false, &Counters::mma);
  d[0] = float(st.D[g][t2]);
  d[1] = float(st.D[g][t2 + 1]);
  d[2] = float(st.D[g + 8][t2]);
  d[3] = float(st.D[g + 8][t2 + 1]);
  ++t.mma_seq;
}

// ------------------------------------------------------------------------------- cp.async
/// cp.async of `bytes` (4, 8 or 16): `src_bytes` < `bytes` zero-fills the rest. The copy is
/// deferred to cp.async.wait_group; until then the destination reads as NaN (0xFF bytes), so a
/// kernel that forgets to wait computes garbage.
// Uninstrumented in a traffic build: the poisoning of the destination is not the kernel's store.
STRATA_SIM_NO_TSAN STRATA_SIM_NO_TRAFFIC inline void cp_async(void* smem, const void* gmem,
                                                              int bytes, int src_bytes,
                                                              const ::strata::Site& s) {
  Thread& t = *detail::g_cur;
  if (reinterpret_cast<uintptr_t>(smem) % unsigned(bytes) ||
      reinterpret_cast<uintptr_t>(gmem) % unsigned(bytes))
    detail::fault_at(t, s,
                     "cp.async of " + std::to_string(bytes) + " bytes with a misaligned address");
  if (src_bytes < 0 || src_bytes > bytes)
    detail::fault_at(t, s,
                     "cp.async src-size " + std::to_string(src_bytes) + " outside [0, " +
                         std::to_string(bytes) + "]");
  auto& b = *detail::g_block;
  ++b.ctr.cp_async;
  b.ctr.cp_async_bytes += unsigned(bytes);
  // the copy is a memcpy, which a traffic build does not see: count and log it here
  detail::traffic_cp_async(smem, gmem, bytes, src_bytes, s);
  const detail::PendingCopy copy{smem, gmem, uint32_t(bytes), uint32_t(src_bytes)};
  if (!b.defer_cp_async) return copy.land();
  std::memset(smem, 0xFF, size_t(bytes));
  t.cp_open.push_back(copy);
}

STRATA_SIM_NO_TSAN inline void cp_async_commit() {
  Thread& t = *detail::g_cur;
  t.cp_groups.push_back(std::move(t.cp_open));
  t.cp_open.clear();
}

/// cp.async.wait_group N: all but the N most recent committed groups have landed.
STRATA_SIM_NO_TSAN inline void cp_async_wait(int n) {
  Thread& t = *detail::g_cur;
  if (t.cp_groups.size() <= size_t(n)) return;
  const size_t land = t.cp_groups.size() - size_t(n);
  for (size_t g = 0; g < land; ++g)
    for (const auto& c : t.cp_groups[g]) c.land();
  t.cp_groups.erase(t.cp_groups.begin(), t.cp_groups.begin() + long(land));
}

/// cp.async.wait_all: every issued copy, committed or not, has landed.
STRATA_SIM_NO_TSAN inline void cp_async_wait_all() {
  cp_async_commit();
  cp_async_wait(0);
}

}  // namespace strata::sim::emu
