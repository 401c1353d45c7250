// Emulated twins of the warp-level PTX in strata/arch: ldmatrix, mma.sync m16n8k16, cp.async.
// They follow the PTX ISA's fragment maps (the tests check them against an independent
// statement of those maps, CuTe's SM80 MMA traits).
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <bit>
#include <cstdint>
#include <cstring>
#include <vector>

#include "strata/config.hpp"
#include "strata/sim/runtime.hpp"

namespace strata::sim::emu {

using detail::Thread;

// ------------------------------------------------------------------------------- ldmatrix
struct LdmatrixIO {
  const unsigned char* addr;
  uint32_t out[4];
  int num;
  bool trans;
};

/// ldmatrix.sync.aligned.m8n8.x{1,2,4}[.trans].shared.b16: lanes 8i..8i+7 give the row
/// addresses of matrix i. Without .trans lane l receives row l/4, columns 2(l%4), 2(l%4)+1 of
/// each matrix; with .trans it receives (row 2(l%4), col l/4) and (row 2(l%4)+1, col l/4).
STRATA_SIM_NO_TSAN inline void ldmatrix_fn(Thread* lanes, unsigned mask) {
  auto io = [&](int l) { return static_cast<LdmatrixIO*>(lanes[l].wio); };
  if (mask != 0xffffffffu)
    detail::fault_at(lanes[__builtin_ctz(mask)], lanes[__builtin_ctz(mask)].site,
                     "ldmatrix.sync.aligned needs all 32 lanes of the warp");
  const int num = io(0)->num;
  const bool trans = io(0)->trans;
  for (int l = 0; l < 32; ++l)
    if (io(l)->num != num || io(l)->trans != trans)
      detail::fault_at(lanes[l], lanes[l].site,
                       "ldmatrix shape (.x1/.x2/.x4, .trans) differs across lanes");
  for (int l = 0; l < 8 * num; ++l)
    if (reinterpret_cast<uintptr_t>(io(l)->addr) % 16)
      detail::fault_at(lanes[l], lanes[l].site, "ldmatrix row address is not 16-byte aligned");
  for (int l = 0; l < 32; ++l) {
    for (int i = 0; i < num; ++i) {
      uint16_t lo, hi;
      if (!trans) {
        const unsigned char* row = io(8 * i + l / 4)->addr;
        std::memcpy(&lo, row + 4 * (l % 4), 2);
        std::memcpy(&hi, row + 4 * (l % 4) + 2, 2);
      } else {
        std::memcpy(&lo, io(8 * i + 2 * (l % 4))->addr + 2 * (l / 4), 2);
        std::memcpy(&hi, io(8 * i + 2 * (l % 4) + 1)->addr + 2 * (l / 4), 2);
      }
      io(l)->out[i] = uint32_t(lo) | (uint32_t(hi) << 16);
    }
  }
}

template <int N, bool Trans>
STRATA_SIM_NO_TSAN inline void ldmatrix(uint32_t (&r)[N], const void* smem_row,
                                        const ::strata::Site& s) {
  static_assert(N == 1 || N == 2 || N == 4, "ldmatrix loads 1, 2 or 4 matrices");
  LdmatrixIO io{static_cast<const unsigned char*>(smem_row), {}, N, Trans};
  detail::warp_collective(detail::kLdmatrix, 0xffffffffu, &ldmatrix_fn, &io, s, false,
                          &Counters::ldmatrix);
  for (int i = 0; i < N; ++i) r[i] = io.out[i];
}

// ------------------------------------------------------------------------------- mma.sync
enum class MmaType { kF16, kBF16 };

struct MmaIO {
  uint32_t a[4];
  uint32_t b[2];
  float c[4];
  float d[4];
  MmaType type;
};

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
  // four rows at a time: eight independent accumulator chains hide the multiply-add latency
  for (int m = 0; m < 16; m += 4) {
    Double4 d[4][2];
    std::memcpy(d, D[m], sizeof d);
    for (int k = 0; k < 16; ++k)
      for (int r = 0; r < 4; ++r) {
        const double a = A[m + r][k];
        d[r][0] += a * b[k][0];
        d[r][1] += a * b[k][1];
      }
    std::memcpy(D[m], d, sizeof d);
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

/// Gathers the warp's fragments into whole matrices (PTX ISA maps: groupID g = lane / 4,
/// t = lane % 4), multiplies, and scatters D back.
template <MmaType T>
STRATA_SIM_NO_TSAN inline void mma_warp(Thread* lanes) {
  alignas(32) float A[16][16];
  alignas(32) float B[16][8];
  alignas(32) double D[16][8];
  for (int l = 0; l < 32; ++l) {
    const MmaIO& x = *static_cast<const MmaIO*>(lanes[l].wio);
    const int g = l >> 2, t2 = 2 * (l & 3);
    // a0: (g, 2t..2t+1)  a1: (g+8, 2t..)  a2: (g, 2t+8..)  a3: (g+8, 2t+8..)
    float* r0 = &A[g][t2];
    float* r1 = &A[g + 8][t2];
    r0[0] = mma_elem<T>(x.a[0] & 0xffffu);
    r0[1] = mma_elem<T>(x.a[0] >> 16);
    r1[0] = mma_elem<T>(x.a[1] & 0xffffu);
    r1[1] = mma_elem<T>(x.a[1] >> 16);
    r0[8] = mma_elem<T>(x.a[2] & 0xffffu);
    r0[9] = mma_elem<T>(x.a[2] >> 16);
    r1[8] = mma_elem<T>(x.a[3] & 0xffffu);
    r1[9] = mma_elem<T>(x.a[3] >> 16);
    // b0: (2t..2t+1, g)  b1: (2t+8.., g)
    B[t2][g] = mma_elem<T>(x.b[0] & 0xffffu);
    B[t2 + 1][g] = mma_elem<T>(x.b[0] >> 16);
    B[t2 + 8][g] = mma_elem<T>(x.b[1] & 0xffffu);
    B[t2 + 9][g] = mma_elem<T>(x.b[1] >> 16);
    // c0, c1: (g, 2t..2t+1)  c2, c3: (g+8, 2t..)
    D[g][t2] = x.c[0];
    D[g][t2 + 1] = x.c[1];
    D[g + 8][t2] = x.c[2];
    D[g + 8][t2 + 1] = x.c[3];
  }
  mma_core(A, B, D);
  for (int l = 0; l < 32; ++l) {
    MmaIO& x = *static_cast<MmaIO*>(lanes[l].wio);
    const int g = l >> 2, t2 = 2 * (l & 3);
    x.d[0] = float(D[g][t2]);
    x.d[1] = float(D[g][t2 + 1]);
    x.d[2] = float(D[g + 8][t2]);
    x.d[3] = float(D[g + 8][t2 + 1]);
  }
}

/// D = A * B + C with f16/bf16 inputs and f32 accumulators. The products are exact; the sum of
/// each dot product and its accumulator is formed in double and rounded once to f32 (the
/// hardware truncates differently; both are within f32 rounding of the exact result).
STRATA_SIM_NO_TSAN inline void mma_fn(Thread* lanes, unsigned mask) {
  if (mask != 0xffffffffu)
    detail::fault_at(lanes[__builtin_ctz(mask)], lanes[__builtin_ctz(mask)].site,
                     "mma.sync.aligned needs all 32 lanes of the warp");
  const MmaType type = static_cast<MmaIO*>(lanes[0].wio)->type;
  for (int l = 1; l < 32; ++l)
    if (static_cast<MmaIO*>(lanes[l].wio)->type != type)
      detail::fault_at(lanes[l], lanes[l].site, "mma input types differ across lanes");
  if (type == MmaType::kBF16)
    mma_warp<MmaType::kBF16>(lanes);
  else
    mma_warp<MmaType::kF16>(lanes);
}

STRATA_SIM_NO_TSAN inline void mma_m16n8k16(float (&d)[4], const uint32_t (&a)[4],
                                            const uint32_t (&b)[2], const float (&c)[4],
                                            MmaType type, const ::strata::Site& s) {
  MmaIO io;
  std::memcpy(io.a, a, sizeof a);
  std::memcpy(io.b, b, sizeof b);
  std::memcpy(io.c, c, sizeof c);
  io.type = type;
  detail::warp_collective(detail::kMma, 0xffffffffu, &mma_fn, &io, s, false, &Counters::mma);
  std::memcpy(d, io.d, sizeof d);
}

// ------------------------------------------------------------------------------- cp.async
/// cp.async of `bytes` (4, 8 or 16): `src_bytes` < `bytes` zero-fills the rest. The copy is
/// deferred to cp.async.wait_group; until then the destination reads as NaN (0xFF bytes), so a
/// kernel that forgets to wait computes garbage.
STRATA_SIM_NO_TSAN inline void cp_async(void* smem, const void* gmem, int bytes, int src_bytes,
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
  if (!b.defer_cp_async) {
    std::memset(smem, 0, size_t(bytes));
    if (src_bytes) std::memcpy(smem, gmem, size_t(src_bytes));
    return;
  }
  std::memset(smem, 0xFF, size_t(bytes));
  t.cp_open.push_back({smem, gmem, uint32_t(bytes), uint32_t(src_bytes)});
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
    for (auto& c : t.cp_groups[g]) {
      std::memset(c.dst, 0, c.bytes);
      if (c.src_bytes) std::memcpy(c.dst, c.src, c.src_bytes);
    }
  t.cp_groups.erase(t.cp_groups.begin(), t.cp_groups.begin() + long(land));
}

/// cp.async.wait_all: every issued copy, committed or not, has landed.
STRATA_SIM_NO_TSAN inline void cp_async_wait_all() {
  cp_async_commit();
  cp_async_wait(0);
}

}  // namespace strata::sim::emu
