/// \file
/// Hopper's small warp and warpgroup ops: elect.sync (one leader lane, e.g. the thread that
/// issues a warp's TMA copies), setmaxnreg (warp-specialised kernels move registers from the
/// producer warpgroup to the consumers: FA3 runs its producer at 24-56 and its consumers at
/// 160-256 registers per thread), and fence.proxy.async (generic-proxy shared-memory writes made
/// visible to the async proxy: TMA stores and wgmma read shared memory through it).
///
/// setmaxnreg needs a register cap at the kernel's entry (__launch_bounds__ with a minimum of one
/// block, or -maxrregcount); without one ptxas ignores it with advisory C7508, which the ptxas
/// gate fails on. In the simulator (sim/hopper_sync.hpp) the CTA's register pool is modelled:
/// a setmaxnreg.inc waits until other warpgroups' .dec released enough, and warps of one
/// warpgroup that disagree are a fault.
#pragma once

#include <cstdint>

#include "strata/config.hpp"
#if STRATA_SIM
#include "strata/sim/hopper_sync.hpp"
#endif

namespace strata::arch {
STRATA_EXECUTOR_BEGIN

/// elect.sync: true on exactly one lane of `mask` (every lane of `mask` must call it; the same
/// lane is elected for the same mask every time).
STRATA_DEVICE bool elect_one(unsigned mask = 0xffffffffu STRATA_SITE_DECL) {
#if STRATA_DEVICE_PASS && STRATA_HAS_SM90
  uint32_t elected;
  asm volatile(
      "{\n"
      ".reg .pred p;\n"
      "elect.sync _|p, %1;\n"
      "selp.u32 %0, 1, 0, p;\n"
      "}\n"
      : "=r"(elected)
      : "r"(mask));
  return elected != 0;
#elif STRATA_SIM
  return sim::emu::elect_one(mask, strata_site_);
#else
  return false;
#endif
}

/// setmaxnreg.inc: raises this warpgroup's registers per thread to `Regs` (24..256, a multiple
/// of 8), waiting until the CTA's pool has them. Every warp of the warpgroup executes it.
template <int Regs>
STRATA_DEVICE void setmaxnreg_inc(STRATA_SITE_DECL_FIRST) {
  static_assert(Regs >= 24 && Regs <= 256 && Regs % 8 == 0, "setmaxnreg: 24..256, multiple of 8");
#if STRATA_DEVICE_PASS && STRATA_HAS_SM90A
  asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;\n" ::"n"(Regs));
#elif STRATA_SIM
  sim::emu::setmaxnreg(Regs, true, strata_site_);
#endif
}

/// setmaxnreg.dec: lowers this warpgroup's registers per thread to `Regs`, returning the rest to
/// the CTA's pool.
template <int Regs>
STRATA_DEVICE void setmaxnreg_dec(STRATA_SITE_DECL_FIRST) {
  static_assert(Regs >= 24 && Regs <= 256 && Regs % 8 == 0, "setmaxnreg: 24..256, multiple of 8");
#if STRATA_DEVICE_PASS && STRATA_HAS_SM90A
  asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;\n" ::"n"(Regs));
#elif STRATA_SIM
  sim::emu::setmaxnreg(Regs, false, strata_site_);
#endif
}

/// fence.proxy.async.shared::cta: this thread's earlier generic shared-memory accesses are
/// ordered before its later async-proxy ones (a TMA store or a wgmma reading what it wrote).
STRATA_DEVICE void fence_proxy_async() {
#if STRATA_DEVICE_PASS && STRATA_HAS_SM90
  asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
#elif STRATA_SIM
  sim::emu::fence_proxy_async();
#endif
}

STRATA_EXECUTOR_END
}  // namespace strata::arch
