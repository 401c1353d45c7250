/// \file
/// stmatrix.sync.aligned.m8n8.x{1,2,4}[.trans].shared.b16 (sm_90): ldmatrix in reverse — the warp
/// stores 1, 2 or 4 8x8 matrices of 16-bit elements from mma-fragment registers to shared
/// memory. Lanes 8i..8i+7 give the (16-byte aligned) row addresses of matrix i; lane l holds
/// row l/4, columns 2(l%4) and 2(l%4)+1 of each matrix (with .trans, that pair is column l/4 of
/// rows 2(l%4) and 2(l%4)+1). FA3's epilogue writes O this way before the TMA store.
#pragma once

#include <cstdint>

#include "strata/arch/smem.hpp"
#include "strata/config.hpp"
#if STRATA_SIM
#include "strata/sim/hopper_sync.hpp"
#endif

namespace strata::arch {
STRATA_EXECUTOR_BEGIN

/// Stores `N` (1, 2, 4) 8x8 b16 matrices; `Trans` transposes each one on the way.
template <int N, bool Trans = false>
STRATA_DEVICE void stmatrix(void* smem_row, const uint32_t (&r)[N] STRATA_SITE_DECL) {
  static_assert(N == 1 || N == 2 || N == 4, "stmatrix stores 1, 2 or 4 matrices");
#if STRATA_DEVICE_PASS && STRATA_HAS_SM90
  const uint32_t addr = smem_u32(smem_row);
  if constexpr (N == 1 && !Trans)
    asm volatile("stmatrix.sync.aligned.m8n8.x1.shared.b16 [%0], {%1};\n" ::"r"(addr), "r"(r[0])
                 : "memory");
  if constexpr (N == 1 && Trans)
    asm volatile("stmatrix.sync.aligned.m8n8.x1.trans.shared.b16 [%0], {%1};\n" ::"r"(addr),
                 "r"(r[0])
                 : "memory");
  if constexpr (N == 2 && !Trans)
    asm volatile("stmatrix.sync.aligned.m8n8.x2.shared.b16 [%0], {%1,%2};\n" ::"r"(addr), "r"(r[0]),
                 "r"(r[1])
                 : "memory");
  if constexpr (N == 2 && Trans)
    asm volatile("stmatrix.sync.aligned.m8n8.x2.trans.shared.b16 [%0], {%1,%2};\n" ::"r"(addr),
                 "r"(r[0]), "r"(r[1])
                 : "memory");
  if constexpr (N == 4 && !Trans)
    asm volatile("stmatrix.sync.aligned.m8n8.x4.shared.b16 [%0], {%1,%2,%3,%4};\n" ::"r"(addr),
                 "r"(r[0]), "r"(r[1]), "r"(r[2]), "r"(r[3])
                 : "memory");
  if constexpr (N == 4 && Trans)
    asm volatile(
        "stmatrix.sync.aligned.m8n8.x4.trans.shared.b16 [%0], {%1,%2,%3,%4};\n" ::"r"(addr),
        "r"(r[0]), "r"(r[1]), "r"(r[2]), "r"(r[3])
        : "memory");
#elif STRATA_SIM
  sim::emu::stmatrix<N, Trans>(smem_row, r, strata_site_);
#endif
}

STRATA_EXECUTOR_END
}  // namespace strata::arch
