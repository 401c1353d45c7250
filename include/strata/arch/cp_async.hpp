/// \file
/// cp.async: asynchronous global -> shared copies of 4, 8 or 16 bytes with zero-fill, grouped by
/// commit_group and awaited by wait_group<N>. 16-byte copies bypass L1 (.cg); 4- and 8-byte
/// copies go through it (.ca), the only form PTX offers for them.
#pragma once

#include <cstdint>

#include "strata/arch/smem.hpp"
#include "strata/config.hpp"
#if STRATA_SIM
#include "strata/sim/emulated_ptx.hpp"
#endif

namespace strata::arch {
STRATA_EXECUTOR_BEGIN

/// Copies `Bytes` (4, 8, 16) from `gmem` to `smem`; only the first `src_bytes` are read, the
/// rest of the destination is zero-filled (src_bytes = 0 zero-fills it all, e.g. for a ragged
/// tile). Both addresses must be aligned to `Bytes`.
template <int Bytes>
STRATA_DEVICE void cp_async(void* smem, const void* gmem, int src_bytes = Bytes STRATA_SITE_DECL) {
  static_assert(Bytes == 4 || Bytes == 8 || Bytes == 16, "cp.async copies 4, 8 or 16 bytes");
#if STRATA_DEVICE_PASS
  if constexpr (Bytes == 16)
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_u32(smem)), "l"(gmem),
                 "r"(src_bytes)
                 : "memory");
  else
    asm volatile("cp.async.ca.shared.global [%0], [%1], %2, %3;\n" ::"r"(smem_u32(smem)), "l"(gmem),
                 "n"(Bytes), "r"(src_bytes)
                 : "memory");
#elif STRATA_SIM
  sim::emu::cp_async(smem, gmem, Bytes, src_bytes, strata_site_);
#endif
}

/// Closes the group of cp.async copies issued since the last commit.
STRATA_DEVICE void cp_async_commit() {
#if STRATA_DEVICE_PASS
  asm volatile("cp.async.commit_group;\n" ::: "memory");
#elif STRATA_SIM
  sim::emu::cp_async_commit();
#endif
}

/// Waits until at most `N` committed groups are still in flight (this thread's copies only:
/// follow it with a barrier before other threads read the data).
template <int N>
STRATA_DEVICE void cp_async_wait() {
  static_assert(N >= 0 && N < 8, "wait_group takes a small non-negative immediate");
#if STRATA_DEVICE_PASS
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
#elif STRATA_SIM
  sim::emu::cp_async_wait(N);
#endif
}

/// Waits for every cp.async this thread issued, committed or not.
STRATA_DEVICE void cp_async_wait_all() {
#if STRATA_DEVICE_PASS
  asm volatile("cp.async.wait_all;\n" ::: "memory");
#elif STRATA_SIM
  sim::emu::cp_async_wait_all();
#endif
}

STRATA_EXECUTOR_END
}  // namespace strata::arch
