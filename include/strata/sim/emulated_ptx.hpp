// Emulated twins of the warp-level PTX in strata/arch: ldmatrix, mma.sync m16n8k16, cp.async.
// They follow the PTX ISA's fragment maps (the tests check them against an independent
// statement of those maps, CuTe's SM80 MMA traits).
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>
#include <cstring>
#include <source_location>

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
                                        const std::source_location& s) {
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

inline float half_bits_to_float(uint16_t h, MmaType t) {
  if (t == MmaType::kBF16) return std::bit_cast<float>(uint32_t(h) << 16);
  __half_raw raw;
  raw.x = h;
  return __half2float(__half(raw));
}

/// D = A * B + C with f16/bf16 inputs and f32 accumulators. The products are exact; the sum of
/// each dot product and its accumulator is formed in double and rounded once to f32 (the
/// hardware truncates differently; both are within f32 rounding of the exact result).
STRATA_SIM_NO_TSAN inline void mma_fn(Thread* lanes, unsigned mask) {
  auto io = [&](int l) { return static_cast<MmaIO*>(lanes[l].wio); };
  if (mask != 0xffffffffu)
    detail::fault_at(lanes[__builtin_ctz(mask)], lanes[__builtin_ctz(mask)].site,
                     "mma.sync.aligned needs all 32 lanes of the warp");
  const MmaType type = io(0)->type;
  double A[16][16], B[16][8], D[16][8];
  for (int l = 0; l < 32; ++l) {
    const MmaIO& x = *io(l);
    if (x.type != type)
      detail::fault_at(lanes[l], lanes[l].site, "mma input types differ across lanes");
    // A: registers a0..a3 hold elements (0,1) (2,3) (4,5) (6,7)
    const int g = l >> 2, t2 = 2 * (l & 3);
    for (int r = 0; r < 4; ++r) {
      const int row = g + 8 * (r & 1), col = t2 + 8 * (r >> 1);
      A[row][col] = half_bits_to_float(uint16_t(x.a[r]), type);
      A[row][col + 1] = half_bits_to_float(uint16_t(x.a[r] >> 16), type);
    }
    for (int r = 0; r < 2; ++r) {
      B[t2 + 8 * r][g] = half_bits_to_float(uint16_t(x.b[r]), type);
      B[t2 + 8 * r + 1][g] = half_bits_to_float(uint16_t(x.b[r] >> 16), type);
    }
    for (int r = 0; r < 2; ++r) {
      D[g + 8 * r][t2] = x.c[2 * r];
      D[g + 8 * r][t2 + 1] = x.c[2 * r + 1];
    }
  }
  for (int m = 0; m < 16; ++m)
    for (int k = 0; k < 16; ++k) {
      const double a = A[m][k];
      for (int n = 0; n < 8; ++n) D[m][n] += a * B[k][n];
    }
  for (int l = 0; l < 32; ++l) {
    MmaIO& x = *io(l);
    const int g = l >> 2, t2 = 2 * (l & 3);
    for (int r = 0; r < 2; ++r) {
      x.d[2 * r] = float(D[g + 8 * r][t2]);
      x.d[2 * r + 1] = float(D[g + 8 * r][t2 + 1]);
    }
  }
}

STRATA_SIM_NO_TSAN inline void mma_m16n8k16(float (&d)[4], const uint32_t (&a)[4],
                                            const uint32_t (&b)[2], const float (&c)[4],
                                            MmaType type, const std::source_location& s) {
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
                                        const std::source_location& s) {
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
