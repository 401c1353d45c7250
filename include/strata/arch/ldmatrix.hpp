/// \file
/// ldmatrix.sync.aligned.m8n8.x{1,2,4}[.trans].shared.b16: the warp loads 1, 2 or 4 8x8 matrices
/// of 16-bit elements from shared memory straight into mma fragments. Lanes 8i..8i+7 give the
/// (16-byte aligned) row addresses of matrix i; every lane passes an address, unused ones are
/// ignored.
#pragma once

#include <cstdint>

#include "strata/arch/smem.hpp"
#include "strata/config.hpp"
#if STRATA_SIM
#include "strata/sim/emulated_ptx.hpp"
#endif

namespace strata::arch {
STRATA_EXECUTOR_BEGIN

/// Loads `N` (1, 2, 4) 8x8 b16 matrices; `Trans` transposes each one on the way.
template <int N, bool Trans = false>
STRATA_DEVICE void ldmatrix(uint32_t (&r)[N], const void* smem_row STRATA_SITE_DECL) {
  static_assert(N == 1 || N == 2 || N == 4, "ldmatrix loads 1, 2 or 4 matrices");
#if STRATA_DEVICE_PASS
  const uint32_t addr = smem_u32(smem_row);
  if constexpr (N == 1 && !Trans)
    asm volatile("ldmatrix.sync.aligned.m8n8.x1.shared.b16 {%0}, [%1];\n" : "=r"(r[0]) : "r"(addr));
  if constexpr (N == 1 && Trans)
    asm volatile("ldmatrix.sync.aligned.m8n8.x1.trans.shared.b16 {%0}, [%1];\n"
                 : "=r"(r[0])
                 : "r"(addr));
  if constexpr (N == 2 && !Trans)
    asm volatile("ldmatrix.sync.aligned.m8n8.x2.shared.b16 {%0,%1}, [%2];\n"
                 : "=r"(r[0]), "=r"(r[1])
                 : "r"(addr));
  if constexpr (N == 2 && Trans)
    asm volatile("ldmatrix.sync.aligned.m8n8.x2.trans.shared.b16 {%0,%1}, [%2];\n"
                 : "=r"(r[0]), "=r"(r[1])
                 : "r"(addr));
  if constexpr (N == 4 && !Trans)
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(addr));
  if constexpr (N == 4 && Trans)
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(addr));
#elif STRATA_SIM
  sim::emu::ldmatrix<N, Trans>(r, smem_row, strata_site_);
#endif
}

/// ldmatrix .x1 / .x2 / .x4 and their .trans forms by name.
template <bool Trans = false>
STRATA_DEVICE void ldmatrix_x1(uint32_t (&r)[1], const void* p STRATA_SITE_DECL) {
  ldmatrix<1, Trans>(r, p STRATA_SITE_ARG);
}
template <bool Trans = false>
STRATA_DEVICE void ldmatrix_x2(uint32_t (&r)[2], const void* p STRATA_SITE_DECL) {
  ldmatrix<2, Trans>(r, p STRATA_SITE_ARG);
}
template <bool Trans = false>
STRATA_DEVICE void ldmatrix_x4(uint32_t (&r)[4], const void* p STRATA_SITE_DECL) {
  ldmatrix<4, Trans>(r, p STRATA_SITE_ARG);
}

STRATA_EXECUTOR_END
}  // namespace strata::arch
