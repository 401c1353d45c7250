/// \file
/// Named barriers: the CTA's barriers 1..15 with a thread count, so that a subset of warps can
/// synchronise without the whole block (barrier 0 is __syncthreads'). bar.sync waits for the
/// phase to complete; bar.arrive counts this warp and goes on — the producer / consumer and
/// warpgroup ping-pong idiom of FlashAttention-3 (one warpgroup arrives on the barrier the
/// other syncs on). Both are .aligned: every lane of a participating warp executes them, and
/// the count is a multiple of 32.
///
/// In the simulator (sim/hopper_sync.hpp) a count that differs between arrivals of one phase, a
/// thread arriving twice in one phase, part of a warp arriving, or an id out of range is a
/// fault, and a deadlock report shows every open barrier's arrivals.
#pragma once

#include "strata/config.hpp"
#if STRATA_SIM
#include "strata/sim/hopper_sync.hpp"
#endif

namespace strata::arch {
STRATA_EXECUTOR_BEGIN

/// bar.sync `id`, `count`: waits until `count` threads (whole warps) have arrived at barrier
/// `id` (1..15), counting this warp.
STRATA_DEVICE void named_barrier_sync(int id, int count STRATA_SITE_DECL) {
#if STRATA_DEVICE_PASS
  asm volatile("bar.sync %0, %1;\n" ::"r"(id), "r"(count) : "memory");
#elif STRATA_SIM
  sim::emu::named_barrier(id, count, true, strata_site_);
#endif
}

/// bar.arrive `id`, `count`: counts this warp toward barrier `id`'s phase and does not wait.
STRATA_DEVICE void named_barrier_arrive(int id, int count STRATA_SITE_DECL) {
#if STRATA_DEVICE_PASS
  asm volatile("bar.arrive %0, %1;\n" ::"r"(id), "r"(count) : "memory");
#elif STRATA_SIM
  sim::emu::named_barrier(id, count, false, strata_site_);
#endif
}

STRATA_EXECUTOR_END
}  // namespace strata::arch
