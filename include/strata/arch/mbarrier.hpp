/// \file
/// mbarrier (sm_90): a barrier object of 8 bytes in shared memory that counts arrivals and
/// transaction bytes per phase. Producers arrive (and announce the bytes their TMA copies will
/// deliver with expect_tx); consumers wait for a phase by its parity. This is how Hopper kernels
/// hand a pipeline stage from a TMA producer warp to the consumer warpgroups and back.
///
/// Semantics (PTX ISA, mbarrier): init(count) opens phase 0 with `count` pending arrivals and a
/// tx-count of 0; a phase completes when both are zero, and the next phase opens with `count`
/// again. try_wait.parity(P) is true once the phase of parity P has completed; it names the
/// phase by parity alone, so it is only defined for the current phase and the one before it.
/// A thread flips its parity after each completed wait; a fresh barrier counts as having
/// completed a phase of parity 1 (a producer's first wait on a free stage passes at once).
/// Arrivals release and a completed wait acquires (.release / .acquire at CTA scope).
///
/// In the simulator (sim/hopper_sync.hpp) a wait blocks until its phase completes, and every
/// misuse the hardware would not report (parity not flipped, a stage reused before its
/// consumers waited, over-arrival, byte counts that do not add up, use before init) is a fault.
#pragma once

#include <cstdint>

#include "strata/arch/smem.hpp"
#include "strata/config.hpp"
#if STRATA_SIM
#include "strata/sim/hopper_sync.hpp"
#endif

namespace strata::arch {
STRATA_EXECUTOR_BEGIN

/// mbarrier.init: `count` (1 .. 2^20 - 1) arrivals complete each phase. One thread initialises;
/// make the init visible (a __syncthreads) before other threads use the barrier.
STRATA_DEVICE void mbarrier_init(uint64_t* bar, uint32_t count STRATA_SITE_DECL) {
#if STRATA_DEVICE_PASS && STRATA_HAS_SM90
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(smem_u32(bar)), "r"(count)
               : "memory");
#elif STRATA_SIM
  sim::emu::mbarrier_init(bar, int(count), strata_site_);
#endif
}

/// mbarrier.inval: the 8 bytes may be reused as ordinary shared memory (no thread may wait on
/// the barrier any more).
STRATA_DEVICE void mbarrier_inval(uint64_t* bar STRATA_SITE_DECL) {
#if STRATA_DEVICE_PASS && STRATA_HAS_SM90
  asm volatile("mbarrier.inval.shared::cta.b64 [%0];\n" ::"r"(smem_u32(bar)) : "memory");
#elif STRATA_SIM
  sim::emu::mbarrier_inval(bar, strata_site_);
#endif
}

/// mbarrier.arrive: one arrival on the current phase (release).
STRATA_DEVICE void mbarrier_arrive(uint64_t* bar STRATA_SITE_DECL) {
#if STRATA_DEVICE_PASS && STRATA_HAS_SM90
  asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" ::"r"(smem_u32(bar)) : "memory");
#elif STRATA_SIM
  sim::emu::mbarrier_arrive(bar, 1, 0, strata_site_);
#endif
}

/// mbarrier.arrive with a count: `count` arrivals at once (a warp's elected lane arriving for
/// its 32 threads, say).
STRATA_DEVICE void mbarrier_arrive(uint64_t* bar, uint32_t count STRATA_SITE_DECL) {
#if STRATA_DEVICE_PASS && STRATA_HAS_SM90
  asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0], %1;\n" ::"r"(smem_u32(bar)), "r"(count)
               : "memory");
#elif STRATA_SIM
  sim::emu::mbarrier_arrive(bar, int(count), 0, strata_site_);
#endif
}

/// mbarrier.arrive.expect_tx: announces `bytes` (< 2^20) of transactions for the current phase,
/// then arrives once. The producer's call before it issues the TMA copies of a stage.
STRATA_DEVICE void mbarrier_arrive_expect_tx(uint64_t* bar, uint32_t bytes STRATA_SITE_DECL) {
#if STRATA_DEVICE_PASS && STRATA_HAS_SM90
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(smem_u32(bar)),
               "r"(bytes)
               : "memory");
#elif STRATA_SIM
  sim::emu::mbarrier_arrive(bar, 1, bytes, strata_site_);
#endif
}

/// mbarrier.expect_tx: announces `bytes` more for the current phase without arriving.
STRATA_DEVICE void mbarrier_expect_tx(uint64_t* bar, uint32_t bytes STRATA_SITE_DECL) {
#if STRATA_DEVICE_PASS && STRATA_HAS_SM90
  asm volatile("mbarrier.expect_tx.relaxed.cta.shared::cta.b64 [%0], %1;\n" ::"r"(smem_u32(bar)),
               "r"(bytes)
               : "memory");
#elif STRATA_SIM
  sim::emu::mbarrier_expect_tx(bar, bytes, strata_site_);
#endif
}

/// mbarrier.complete_tx: `bytes` of the current phase's transactions are done (what a TMA copy
/// does when it lands; a thread uses it when it delivers a stage's bytes by other means).
STRATA_DEVICE void mbarrier_complete_tx(uint64_t* bar, uint32_t bytes STRATA_SITE_DECL) {
#if STRATA_DEVICE_PASS && STRATA_HAS_SM90
  asm volatile("mbarrier.complete_tx.relaxed.cta.shared::cta.b64 [%0], %1;\n" ::"r"(smem_u32(bar)),
               "r"(bytes)
               : "memory");
#elif STRATA_SIM
  sim::emu::mbarrier_complete_tx(bar, bytes, strata_site_);
#endif
}

/// mbarrier.try_wait.parity: true once the phase of parity `parity` (0 or 1) has completed
/// (acquire); false when the hardware's time limit ran out first. Loop, or call mbarrier_wait.
STRATA_DEVICE bool mbarrier_try_wait_parity(uint64_t* bar, uint32_t parity STRATA_SITE_DECL) {
#if STRATA_DEVICE_PASS && STRATA_HAS_SM90
  uint32_t done;
  asm volatile(
      "{\n"
      ".reg .pred p;\n"
      "mbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\n"
      "selp.u32 %0, 1, 0, p;\n"
      "}\n"
      : "=r"(done)
      : "r"(smem_u32(bar)), "r"(parity)
      : "memory");
  return done != 0;
#elif STRATA_SIM
  return sim::emu::mbarrier_try_wait_parity(bar, parity, strata_site_);
#else
  return true;
#endif
}

/// Waits until the phase of parity `parity` has completed.
STRATA_DEVICE void mbarrier_wait(uint64_t* bar, uint32_t parity STRATA_SITE_DECL) {
  while (!mbarrier_try_wait_parity(bar, parity STRATA_SITE_ARG)) {
  }
}

STRATA_EXECUTOR_END
}  // namespace strata::arch
