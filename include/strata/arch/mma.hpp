/// \file
/// mma.sync.aligned.m16n8k16.row.col.f32.{f16,bf16}.{f16,bf16}.f32 — the sm_80 warp-level
/// tensor-core op. D = A * B + C for a 16x16 A (4 registers of packed pairs), a 16x8 B (2
/// registers) and 16x8 f32 C/D (4 floats per lane); arch/fragment.hpp maps registers to elements.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>
#include <type_traits>

#include "strata/config.hpp"
#if STRATA_SIM
#include "strata/sim/emulated_ptx.hpp"
#endif

namespace strata::arch {
STRATA_EXECUTOR_BEGIN

/// D = A * B + C, bf16 inputs, f32 accumulators (the whole warp executes it).
STRATA_DEVICE void mma_m16n8k16_bf16(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2],
                                     const float (&c)[4] STRATA_SITE_DECL) {
#if STRATA_DEVICE_PASS
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
      "{%8,%9}, {%10,%11,%12,%13};\n"
      : "=f"(d[0]), "=f"(d[1]), "=f"(d[2]), "=f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]), "f"(c[0]), "f"(c[1]),
        "f"(c[2]), "f"(c[3]));
#elif STRATA_SIM
  sim::emu::mma_m16n8k16<sim::emu::MmaType::kBF16>(d, a, b, c, strata_site_);
#endif
}

/// D = A * B + C, f16 inputs, f32 accumulators (the whole warp executes it).
STRATA_DEVICE void mma_m16n8k16_f16(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2],
                                    const float (&c)[4] STRATA_SITE_DECL) {
#if STRATA_DEVICE_PASS
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
      "{%8,%9}, {%10,%11,%12,%13};\n"
      : "=f"(d[0]), "=f"(d[1]), "=f"(d[2]), "=f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]), "f"(c[0]), "f"(c[1]),
        "f"(c[2]), "f"(c[3]));
#elif STRATA_SIM
  sim::emu::mma_m16n8k16<sim::emu::MmaType::kF16>(d, a, b, c, strata_site_);
#endif
}

/// mma.m16n8k16 for element type `T` (`__nv_bfloat16` or `__half`).
template <class T>
STRATA_DEVICE void mma_m16n8k16(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2],
                                const float (&c)[4] STRATA_SITE_DECL) {
  static_assert(std::is_same_v<T, __nv_bfloat16> || std::is_same_v<T, __half>,
                "mma.m16n8k16 takes bf16 or f16 inputs");
  if constexpr (std::is_same_v<T, __nv_bfloat16>)
    mma_m16n8k16_bf16(d, a, b, c STRATA_SITE_ARG);
  else
    mma_m16n8k16_f16(d, a, b, c STRATA_SITE_ARG);
}

STRATA_EXECUTOR_END
}  // namespace strata::arch
