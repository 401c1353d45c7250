/// \file
/// Emulated twins of Hopper's synchronisation PTX (strata/arch/mbarrier.hpp,
/// named_barrier.hpp, sm90.hpp, stmatrix.hpp): mbarriers with arrival and transaction counts,
/// named barriers, elect.sync, setmaxnreg's register pool, fence.proxy.async and stmatrix.
///
/// What each twin refuses, as a fault naming the kernel's line (the hardware would go on,
/// silently wrong or hung):
///  * mbarrier: use before init (or after a generic store over it), init of a live barrier,
///    a count outside [1, 2^20 - 1], more arrivals than the phase has pending, a tx-count out of
///    range or below zero when the arrivals are in (more bytes completed than expect_tx
///    announced), inval with threads waiting, and every parity misuse: try_wait.parity is
///    defined only for the current phase and the one before it, so each thread's waits are
///    tracked, and a wait whose parity would name a phase two or more behind (the hardware
///    would wait for the wrong phase) or one ahead (it would return at once: the parity was not
///    flipped) is a fault.
///  * named barriers: id 0 (__syncthreads') or past 15, a count that is not a positive multiple
///    of 32 or exceeds the block, a count differing from the phase's first arrival, a thread
///    arriving twice in one phase, a phase completed by part of a warp (.aligned).
///  * setmaxnreg: blocks that are not whole warpgroups, .inc below / .dec above the current
///    count, warps of one warpgroup disagreeing or not synchronised between two setmaxnreg,
///    and .inc waiting forever for registers no warp releases (a deadlock that shows the pool).
///
/// Blocking: try_wait, bar.sync and a setmaxnreg.inc without free registers suspend the thread
/// until the phase completes or the registers are released (the hardware's try_wait may also
/// time out and return false; a caller loops either way). A block whose threads all wait is a
/// deadlock, reported with every barrier's phase, pending arrivals and tx-count.
///
/// ThreadSanitizer: an arrival (and complete_tx) releases on the phase's sync object, a
/// successful wait acquires it; bar.arrive / bar.sync release, bar.sync acquires on completion.
#pragma once

#include <cstdint>
#include <cstring>
#include <string>

#include "strata/config.hpp"
#include "strata/sim/access_model.hpp"
#include "strata/sim/runtime.hpp"

namespace strata::sim::emu {

using detail::Block;
using detail::MbarrierSlot;
using detail::Thread;
using detail::ThreadState;

namespace hopper_detail {

inline constexpr int64_t kMaxTxCount = (int64_t(1) << 20) - 1;

STRATA_SIM_NO_TSAN inline std::string where(const void* p) {
  return detail::smem_where(p);
}

/// The slot of the live mbarrier at `bar`, or a fault naming what is wrong with it.
STRATA_SIM_NO_TSAN inline int mbarrier_slot(Thread& t, const void* bar, const char* op,
                                            const ::strata::Site& s) {
  Block& b = *detail::g_block;
  if (reinterpret_cast<uintptr_t>(bar) % 8)
    detail::fault_at(t, s, std::string(op) + ": the mbarrier address is not 8-byte aligned");
  uint64_t word;
  std::memcpy(&word, bar, 8);
  const int slot = int(word & 0xff);
  if ((word & ~uint64_t(0xff)) != detail::kMbarrierTag || slot >= detail::kMaxMbarriers ||
      b.mbar[slot].addr != bar)
    detail::fault_at(t, s,
                     std::string(op) + " on the mbarrier at " + where(bar) +
                         ", which is not initialised (no mbarrier.init, an mbarrier.inval, or a "
                         "generic store over its 8 bytes)");
  detail::tsan_read(bar, 8);
  return slot;
}

STRATA_SIM_NO_TSAN inline void update(Thread& t, int i, int arrivals, int64_t tx, const char* op,
                                      const ::strata::Site& s);

/// Lands every TMA load in flight on slot `i` (its phase has all its arrivals and a thread
/// waits for it): the boxes are copied in, and their bytes completed on the barrier.
STRATA_SIM_NO_TSAN inline void land_tma_loads(Thread& t, int i) {
  Block& b = *detail::g_block;
  MbarrierSlot& m = b.mbar[i];
  uint64_t total = 0;
  int count = 0;
  ::strata::Site first_site{};
  for (int k = 0; k < b.n_tma_loads; ++k)
    if (b.tma_loads[k].slot == i) {
      if (count++ == 0) first_site = b.tma_loads[k].site;
      total += b.tma_loads[k].bytes;
    }
  if (count == 0) return;
  if (int64_t(total) > m.tx)
    detail::fault_at(t, first_site,
                     "the " + std::to_string(count) + " TMA load(s) in flight on the mbarrier at " +
                         where(m.addr) + " deliver " + std::to_string(total) +
                         " bytes, but its phase " + std::to_string(m.phase) + " expects " +
                         std::to_string(m.tx) +
                         " (expect_tx announced too few bytes: the phase would complete before the "
                         "data lands)");
  for (int k = 0; k < b.n_tma_loads;) {
    if (b.tma_loads[k].slot != i) {
      ++k;
      continue;
    }
    const detail::TmaLoad ld = b.tma_loads[k];
    b.tma_loads[k] = b.tma_loads[--b.n_tma_loads];
    detail::tsan_acquire(&m.tsan[m.phase & 3]);  // the async proxy has seen the issue
    detail::tma_box_load(ld.dst, ld.map, ld.at);
    update(t, i, 0, -int64_t(ld.bytes), "a TMA load's complete_tx", ld.site);
  }
}

/// Completes the current phase of slot `i`: the next phase opens and its waiters resume.
STRATA_SIM_NO_TSAN inline void complete_phase(Block& b, int i) {
  MbarrierSlot& m = b.mbar[i];
  detail::tsan_release(&m.tsan[m.phase & 3]);
  ++m.phase;
  m.pending = m.expected;
  m.tx = 0;
  ++b.ctr.mbarrier_phases;
  if (m.waiters == 0) return;
  int count = 0;
  for (int k = 0; k < b.n; ++k) {
    const Thread& w = b.tp[k];
    if (w.st == ThreadState::kAtMbarrier && w.wait_obj == i && w.wait_phase < m.phase)
      b.idp[count++] = k;
  }
  m.waiters -= count;
  detail::release_in_order(b, b.idp, count);
}

/// Applies `arrivals` arrivals and `tx` transaction bytes (expect_tx: +, complete_tx: -) to the
/// current phase of slot `i`, completing it when both counts reach zero.
STRATA_SIM_NO_TSAN inline void update(Thread& t, int i, int arrivals, int64_t tx, const char* op,
                                      const ::strata::Site& s) {
  Block& b = *detail::g_block;
  MbarrierSlot& m = b.mbar[i];
  if (arrivals > m.pending)
    detail::fault_at(t, s,
                     std::string(op) + " on the mbarrier at " + where(m.addr) + ": " +
                         std::to_string(arrivals) + " arrival(s) but phase " +
                         std::to_string(m.phase) + " has only " + std::to_string(m.pending) +
                         " of " + std::to_string(m.expected) +
                         " pending (more arrivals than init's count" +
                         (m.pending == 0 ? "; the phase waits only for transaction bytes)" : ")"));
  const int64_t ntx = m.tx + tx;
  if (ntx > kMaxTxCount || ntx < -kMaxTxCount)
    detail::fault_at(t, s,
                     std::string(op) + " on the mbarrier at " + where(m.addr) +
                         ": the tx-count would be " + std::to_string(ntx) +
                         " bytes, outside the hardware's range of +-(2^20 - 1)");
  m.pending -= arrivals;
  m.tx = ntx;
  if (arrivals) {
    m.last_arrive = s;
    ++b.ctr.mbarrier_arrivals;
  }
  detail::tsan_release(&m.tsan[m.phase & 3]);
  if (m.pending == 0 && m.tx < 0)
    detail::fault_at(t, s,
                     std::string(op) + " on the mbarrier at " + where(m.addr) + ": phase " +
                         std::to_string(m.phase) + " has all its arrivals and " +
                         std::to_string(-m.tx) +
                         " more transaction bytes completed than expect_tx announced");
  if (m.pending == 0 && m.tx == 0) {
    if (detail::tma_loads_on(b, i))
      detail::fault_at(t, s,
                       std::string(op) + " completes phase " + std::to_string(m.phase) +
                           " of the mbarrier at " + where(m.addr) + " while " +
                           std::to_string(detail::tma_loads_on(b, i)) +
                           " TMA load(s) on it are in flight (expect_tx announced too few bytes)");
    complete_phase(b, i);
  } else if (m.pending == 0 && m.waiters > 0) {
    land_tma_loads(t, i);  // a thread waits and the arrivals are in: the data can land
  }
}

/// After an arrival (mbarrier.arrive, bar.arrive) that released waiting threads, the arriving
/// thread steps aside and they run before it goes on. Hardware may run them that early; a kernel
/// that releases a resource before it is done with it (a stage its wgmma still reads, a buffer
/// it still writes) then meets the waiter's next access to it, which the simulator checks.
/// Three rounds of the run queue: a released producer passes its wait, meets its warp in
/// elect.sync, and its elected lane issues the copy before the arriving thread resumes.
STRATA_SIM_NO_TSAN inline void yield_to_released(Thread& t, int runnable_before) {
  Block& b = *detail::g_block;
  if (b.rq_count <= runnable_before) return;
  for (int round = 0; round < 3 && b.rq_count > 0; ++round) {
    t.st = ThreadState::kRunnable;
    detail::rq_push(b, int(&t - b.tp));
    detail::switch_out(t);
  }
}

}  // namespace hopper_detail

// ------------------------------------------------------------------------------- mbarrier
/// mbarrier.init: `count` arrivals per phase, phase 0 open, tx-count 0.
STRATA_SIM_NO_TSAN inline void mbarrier_init(void* bar, int count, const ::strata::Site& s) {
  Thread& t = *detail::g_cur;
  Block& b = *detail::g_block;
  if (reinterpret_cast<uintptr_t>(bar) % 8)
    detail::fault_at(t, s, "mbarrier.init: the mbarrier address is not 8-byte aligned");
  if (count < 1 || count > (1 << 20) - 1)
    detail::fault_at(t, s,
                     "mbarrier.init count " + std::to_string(count) + " outside [1, 2^20 - 1]");
  uint64_t word;
  std::memcpy(&word, bar, 8);
  const int old = int(word & 0xff);
  if ((word & ~uint64_t(0xff)) == detail::kMbarrierTag && old < detail::kMaxMbarriers &&
      b.mbar[old].addr == bar)
    detail::fault_at(t, s,
                     "mbarrier.init on the live mbarrier at " + hopper_detail::where(bar) +
                         " (initialised at " + detail::site_str(b.mbar[old].init_site) +
                         "): invalidate it with mbarrier.inval first");
  int slot = 0;
  while (slot < detail::kMaxMbarriers && b.mbar[slot].addr) ++slot;
  if (slot == detail::kMaxMbarriers)
    detail::fault_at(t, s,
                     "mbarrier.init: more than " + std::to_string(detail::kMaxMbarriers) +
                         " live mbarriers in one block (the simulator's limit)");
  MbarrierSlot& m = b.mbar[slot];
  m = MbarrierSlot{};
  b.hopper_used = true;
  m.addr = bar;
  m.expected = m.pending = count;
  m.init_site = s;
  for (int k = 0; k < b.n; ++k) b.msp[size_t(slot) * size_t(b.n) + size_t(k)] = -2;
  word = detail::kMbarrierTag | uint64_t(slot);
  detail::tsan_write(bar, 8);
  std::memcpy(bar, &word, 8);
}

/// mbarrier.inval: the 8 bytes become ordinary shared memory again (poisoned).
STRATA_SIM_NO_TSAN inline void mbarrier_inval(void* bar, const ::strata::Site& s) {
  Thread& t = *detail::g_cur;
  Block& b = *detail::g_block;
  const int i = hopper_detail::mbarrier_slot(t, bar, "mbarrier.inval", s);
  if (b.mbar[i].waiters)
    detail::fault_at(t, s,
                     "mbarrier.inval on the mbarrier at " + hopper_detail::where(bar) + " while " +
                         std::to_string(b.mbar[i].waiters) + " thread(s) wait on it");
  b.mbar[i] = MbarrierSlot{};
  detail::tsan_write(bar, 8);
  std::memset(bar, 0xFF, 8);
}

/// mbarrier.arrive (count arrivals), with `tx` bytes announced first (arrive.expect_tx).
STRATA_SIM_NO_TSAN inline void mbarrier_arrive(void* bar, int count, uint32_t tx,
                                               const ::strata::Site& s) {
  Thread& t = *detail::g_cur;
  const int i =
      hopper_detail::mbarrier_slot(t, bar, tx ? "mbarrier.arrive.expect_tx" : "mbarrier.arrive", s);
  if (count < 1 || count > (1 << 20) - 1)
    detail::fault_at(t, s,
                     "mbarrier.arrive count " + std::to_string(count) + " outside [1, 2^20 - 1]");
  const int runnable = detail::g_block->rq_count;
  hopper_detail::update(t, i, count, int64_t(tx),
                        tx ? "mbarrier.arrive.expect_tx" : "mbarrier.arrive", s);
  hopper_detail::yield_to_released(t, runnable);
}

/// mbarrier.expect_tx: `tx` more bytes before the current phase can complete.
STRATA_SIM_NO_TSAN inline void mbarrier_expect_tx(void* bar, uint32_t tx, const ::strata::Site& s) {
  Thread& t = *detail::g_cur;
  const int i = hopper_detail::mbarrier_slot(t, bar, "mbarrier.expect_tx", s);
  hopper_detail::update(t, i, 0, int64_t(tx), "mbarrier.expect_tx", s);
}

/// mbarrier.complete_tx: `tx` bytes delivered (what a TMA copy does when it lands).
STRATA_SIM_NO_TSAN inline void mbarrier_complete_tx(void* bar, uint32_t tx,
                                                    const ::strata::Site& s) {
  Thread& t = *detail::g_cur;
  const int i = hopper_detail::mbarrier_slot(t, bar, "mbarrier.complete_tx", s);
  hopper_detail::update(t, i, 0, -int64_t(tx), "mbarrier.complete_tx", s);
}

/// mbarrier.try_wait.parity: returns once the phase of parity `parity` that this thread is
/// due to see has completed (always true here; the hardware may also time out with false).
STRATA_SIM_NO_TSAN inline bool mbarrier_try_wait_parity(void* bar, uint32_t parity,
                                                        const ::strata::Site& s) {
  Thread& t = *detail::g_cur;
  Block& b = *detail::g_block;
  const int i = hopper_detail::mbarrier_slot(t, bar, "mbarrier.try_wait.parity", s);
  MbarrierSlot& m = b.mbar[i];
  ++b.ctr.mbarrier_waits;
  if (parity > 1)
    detail::fault_at(t, s, "mbarrier.try_wait.parity with parity " + std::to_string(parity));
  // The phase this wait names: the first after the one this thread last saw whose parity
  // matches (a fresh barrier counts phase -1, of parity 1, as complete: waiting on parity 1
  // first returns at once, the producer's idiom for free stages).
  int64_t& seen = b.msp[size_t(i) * size_t(b.n) + size_t(&t - b.tp)];
  const int64_t k = ((seen + 1) & 1) == int64_t(parity) ? seen + 1 : seen + 2;
  const int64_t c = m.phase;
  if (k <= c - 2)
    detail::fault_at(t, s,
                     "mbarrier.try_wait.parity " + std::to_string(parity) + " on the mbarrier at " +
                         hopper_detail::where(bar) +
                         ": this thread's next phase of that parity is " + std::to_string(k) +
                         ", but the barrier is already in phase " + std::to_string(c) +
                         "; the parity is defined only for the current and the previous phase, "
                         "so the hardware would wait for phase " +
                         std::to_string((c & 1) == int64_t(parity) ? c : c - 1) +
                         " instead (a stage reused before this thread waited for it)");
  if (k >= c + 1)
    detail::fault_at(t, s,
                     "mbarrier.try_wait.parity " + std::to_string(parity) + " on the mbarrier at " +
                         hopper_detail::where(bar) + ": this thread already waited for phase " +
                         std::to_string(seen) + " and the barrier is in phase " +
                         std::to_string(c) + ", so the wait names phase " + std::to_string(k) +
                         "; the hardware would return at once (phase " + std::to_string(c - 1) +
                         " has this parity and is complete): the parity was not flipped");
  seen = k;
  if (k == c && m.pending == 0)
    hopper_detail::land_tma_loads(t, i);  // the arrivals are in: copies land now
  if (k == m.phase) {                     // the current phase: block until it completes
    t.st = ThreadState::kAtMbarrier;
    t.wait_obj = i;
    t.wait_phase = k;
    t.site = s;
    ++m.waiters;
    detail::switch_out(t);
    t.wait_obj = -1;
  }
  detail::tsan_acquire(&m.tsan[k & 3]);
  return true;
}

// ------------------------------------------------------------------------- named barriers
/// bar.sync (`sync`) or bar.arrive of named barrier `id` with `count` threads.
STRATA_SIM_NO_TSAN inline void named_barrier(int id, int count, bool sync,
                                             const ::strata::Site& s) {
  Thread& t = *detail::g_cur;
  Block& b = *detail::g_block;
  const char* op = sync ? "bar.sync" : "bar.arrive";
  if (id < 1 || id >= detail::kNamedBarriers)
    detail::fault_at(t, s,
                     std::string(op) + " " + std::to_string(id) +
                         ": named barriers are 1..15 (0 is __syncthreads')");
  const int block_threads = (b.n + 31) / 32 * 32;
  if (count <= 0 || count % 32 || count > block_threads)
    detail::fault_at(t, s,
                     std::string(op) + " " + std::to_string(id) + " with count " +
                         std::to_string(count) +
                         ": the count must be a positive multiple of 32 and at most the block's " +
                         std::to_string(block_threads) + " threads");
  detail::NamedBarrier& nb = b.nbar[id];
  b.hopper_used = true;
  if (t.nbar_arrived[id] == nb.phase + 1)
    detail::fault_at(t, s,
                     std::string(op) + " " + std::to_string(id) +
                         ": this thread arrives twice in one phase of the barrier (first at " +
                         detail::site_str(nb.site) + ")");
  if (nb.count == 0) {
    nb.count = count;
    nb.site = s;
  } else if (nb.count != count) {
    detail::fault_at(t, s,
                     std::string(op) + " " + std::to_string(id) + " with count " +
                         std::to_string(count) + " while the phase's first arrival (at " +
                         detail::site_str(nb.site) + ") gave count " + std::to_string(nb.count));
  }
  ++nb.arrived;
  nb.warp_lanes[t.warp] |= 1u << t.lane;
  t.nbar_arrived[id] = nb.phase + 1;
  const uint32_t my_phase = nb.phase;
  const int runnable = b.rq_count;  // before this arrival releases anyone
  detail::tsan_release(&nb.tsan[my_phase & 3]);
  if (sync) {
    t.st = ThreadState::kAtNamedBarrier;
    t.wait_obj = id;
    t.site = s;
  }
  if (nb.arrived == nb.count) {
    for (int w = 0; w < (b.n + 31) / 32; ++w) {
      // a lane that exited before the phase completed may have arrived or not
      const unsigned lanes = nb.warp_lanes[w];
      if (lanes && (lanes | b.wp[w].exited) != b.wp[w].present) {
        char buf[96];
        std::snprintf(buf, sizeof buf, "lanes 0x%08x of warp %d (of 0x%08x)", lanes, w,
                      b.wp[w].present);
        detail::fault_at(t, s,
                         std::string(op) + " " + std::to_string(id) +
                             ": the phase completed with " + buf +
                             " arrived: bar.sync and bar.arrive are .aligned, the whole warp "
                             "executes them");
      }
    }
    ++nb.phase;
    nb.count = nb.arrived = 0;
    for (auto& l : nb.warp_lanes) l = 0;
    ++b.ctr.named_barriers;
    int released = 0;
    for (int k = 0; k < b.n; ++k) {
      const Thread& w = b.tp[k];
      if (w.st == ThreadState::kAtNamedBarrier && w.wait_obj == id) b.idp[released++] = k;
    }
    detail::release_in_order(b, b.idp, released);
  }
  if (sync) {
    detail::switch_out(t);
    t.wait_obj = -1;
    detail::tsan_acquire(&nb.tsan[my_phase & 3]);
  } else {
    hopper_detail::yield_to_released(t, runnable);
  }
}

// ------------------------------------------------------------------------------ elect.sync
struct ElectIO {
  unsigned leader;
};
STRATA_SIM_NO_TSAN inline void elect_fn(Thread* lanes, unsigned mask) {
  // deterministic: the lowest lane of the mask
  const unsigned leader = unsigned(__builtin_ctz(mask));
  for (unsigned m = mask; m; m &= m - 1)
    static_cast<ElectIO*>(lanes[__builtin_ctz(m)].wio)->leader = leader;
}
/// elect.sync: true on one lane of `mask` (the same one for the same mask every time).
STRATA_SIM_NO_TSAN inline bool elect_one(unsigned mask, const ::strata::Site& s) {
  ElectIO io{0};
  detail::warp_collective(detail::kElect, mask, &elect_fn, &io, s, false, &Counters::elects);
  return io.leader == unsigned(detail::g_cur->lane);
}

// ------------------------------------------------------------------------------ setmaxnreg
struct SetmaxnregIO {
  int value;
  bool inc;
};

namespace hopper_detail {
/// Grants every waiting setmaxnreg.inc the pool can now serve, in warp order.
STRATA_SIM_NO_TSAN inline void grant_registers(Block& b) {
  for (int w = 0; w < (b.n + 31) / 32; ++w) {
    detail::WarpRegisters& r = b.wp[w].regs;
    if (r.want == 0 || b.reg_free < (r.want - r.regs) * 32) continue;
    b.reg_free -= (r.want - r.regs) * 32;
    r.regs = r.want;
    r.want = 0;
    int n = 0;
    for (int l = 0; l < 32 && 32 * w + l < b.n; ++l) {
      const Thread& x = b.tp[32 * w + l];
      if (x.st == ThreadState::kAtRegisters && x.wait_obj == w) b.idp[n++] = 32 * w + l;
    }
    detail::release_in_order(b, b.idp, n);
  }
}
}  // namespace hopper_detail

STRATA_SIM_NO_TSAN inline void setmaxnreg_fn(Thread* lanes, unsigned mask) {
  Block& b = *detail::g_block;
  Thread& first = lanes[__builtin_ctz(mask)];
  const auto io = *static_cast<SetmaxnregIO*>(first.wio);
  const char* op = io.inc ? "setmaxnreg.inc" : "setmaxnreg.dec";
  if (mask != 0xffffffffu)
    detail::fault_at(first, first.site, std::string(op) + " needs all 32 lanes of the warp");
  for (unsigned m = mask; m; m &= m - 1) {
    const auto& o = *static_cast<SetmaxnregIO*>(lanes[__builtin_ctz(m)].wio);
    if (o.value != io.value || o.inc != io.inc)
      detail::fault_at(lanes[__builtin_ctz(m)], lanes[__builtin_ctz(m)].site,
                       "setmaxnreg differs across the lanes of a warp");
  }
  const int w = first.warp;
  detail::WarpRegisters& r = b.wp[w].regs;
  if (io.inc ? io.value < r.regs : io.value > r.regs)
    detail::fault_at(first, first.site,
                     std::string(op) + " to " + std::to_string(io.value) +
                         " registers per thread, but the warp owns " + std::to_string(r.regs) +
                         (io.inc ? " (.inc cannot lower it)" : " (.dec cannot raise it)"));
  const int i = r.ops;
  const int code = io.inc ? io.value : -io.value;
  for (int v = w / 4 * 4; v < w / 4 * 4 + 4; ++v) {
    if (v == w) continue;
    const detail::WarpRegisters& o = b.wp[v].regs;
    if (i < 8 && o.ops > i && o.values[i] != code)
      detail::fault_at(first, first.site,
                       std::string(op) + " " + std::to_string(io.value) + " differs from warp " +
                           std::to_string(v) + "'s setmaxnreg " + std::to_string(o.values[i]) +
                           " (negative: .dec): all warps of a warpgroup execute the same one");
    if (i > 0 && o.ops < i)
      detail::fault_at(first, first.site,
                       std::string(op) + ": warp " + std::to_string(w) + " executes setmaxnreg #" +
                           std::to_string(i + 1) + " before warp " + std::to_string(v) +
                           " of its warpgroup executed #" + std::to_string(i) +
                           ": the warpgroup must synchronise between setmaxnreg instructions");
  }
  if (i < 8) r.values[i] = code;
  ++r.ops;
  r.site = first.site;
  if (!io.inc) {
    b.reg_free += (r.regs - io.value) * 32;
    r.regs = io.value;
    hopper_detail::grant_registers(b);
  } else if (b.reg_free >= (io.value - r.regs) * 32) {
    b.reg_free -= (io.value - r.regs) * 32;
    r.regs = io.value;
  } else {
    r.want = io.value;  // its lanes block when they resume, until a .dec frees enough
  }
}

/// setmaxnreg.{inc,dec}.sync.aligned.u32 `value`, from the CTA's register pool.
STRATA_SIM_NO_TSAN inline void setmaxnreg(int value, bool inc, const ::strata::Site& s) {
  Thread& t = *detail::g_cur;
  Block& b = *detail::g_block;
  if (b.n % 128)
    detail::fault_at(t, s,
                     std::string("setmaxnreg in a block of ") + std::to_string(b.n) +
                         " threads: it acts on whole warpgroups of 128");
  SetmaxnregIO io{value, inc};
  detail::warp_collective(detail::kSetmaxnreg, 0xffffffffu, &setmaxnreg_fn, &io, s, true,
                          &Counters::setmaxnreg);
  if (b.wp[t.warp].regs.want) {
    t.st = ThreadState::kAtRegisters;
    t.wait_obj = t.warp;
    t.site = s;
    detail::switch_out(t);
    t.wait_obj = -1;
  }
}

// ----------------------------------------------------------------------- fence.proxy.async
/// fence.proxy.async: orders this thread's generic-proxy shared-memory accesses before later
/// async-proxy ones (TMA, wgmma). Counted; the readers that check it come with those ops.
STRATA_SIM_NO_TSAN inline void fence_proxy_async() {
  ++detail::g_cur->proxy_fences;
  ++detail::g_block->ctr.proxy_fences;
}

// ------------------------------------------------------------------------------- stmatrix
/// The completing lane scatters the warp's fragments: lanes 8i..8i+7 named the rows of
/// matrix i; lane l holds row l/4, columns 2(l%4), 2(l%4)+1 of each matrix (with .trans:
/// (row 2(l%4), col l/4) and (row 2(l%4)+1, col l/4)), the inverse of ldmatrix.
STRATA_SIM_NO_TSAN STRATA_SIM_NO_TRAFFIC inline void stmatrix_fn(Thread* lanes, unsigned mask) {
  auto& st = *static_cast<detail::StmatrixStage*>(lanes[__builtin_ctz(mask)].wio);
  if (mask != 0xffffffffu)
    detail::fault_at(lanes[__builtin_ctz(mask)], lanes[__builtin_ctz(mask)].site,
                     "stmatrix.sync.aligned needs all 32 lanes of the warp");
  const int num = st.shape[0] & 7;
  const bool trans = st.shape[0] & 8;
  for (int l = 1; l < 32; ++l)
    if (st.shape[l] != st.shape[0])
      detail::fault_at(lanes[l], lanes[l].site,
                       "stmatrix shape (.x1/.x2/.x4, .trans) differs across lanes");
  for (int l = 0; l < 8 * num; ++l)
    if (reinterpret_cast<uintptr_t>(st.addr[l]) % 16)
      detail::fault_at(lanes[l], lanes[l].site, "stmatrix row address is not 16-byte aligned");
  // Each row as its lane addressed it: a fault where an asynchronous op still owns it (a wgmma in
  // flight reads it, a TMA load has not landed in it; e.g. a kernel double-buffering an operand
  // it writes by stmatrix with one buffer), else stamped for the proxy-fence check of the
  // async-proxy readers (sim/wgmma.hpp, sim/tma.hpp).
  for (int l = 0; l < 8 * num; ++l)
    detail::generic_store16(lanes[l], lanes[l].site, reinterpret_cast<uintptr_t>(st.addr[l]),
                            "stmatrix");
  const SmemCost cost = ldmatrix_cost(st.addr, num);
  SmemStats& sst = detail::g_block->ctr.smem_store;
  ++sst.requests;
  sst.bytes += 128u * unsigned(num);
  sst.wavefronts += cost.wavefronts;
  sst.conflicts += cost.conflicts;
  for (int l = 0; l < 32; ++l) {
    for (int i = 0; i < num; ++i) {
      const uint16_t lo = uint16_t(st.in[l][i] & 0xffffu), hi = uint16_t(st.in[l][i] >> 16);
      unsigned char *plo, *phi;
      if (!trans) {
        plo = const_cast<unsigned char*>(st.addr[8 * i + l / 4]) + 4 * (l % 4);
        phi = plo + 2;
      } else {
        plo = const_cast<unsigned char*>(st.addr[8 * i + 2 * (l % 4)]) + 2 * (l / 4);
        phi = const_cast<unsigned char*>(st.addr[8 * i + 2 * (l % 4) + 1]) + 2 * (l / 4);
      }
      std::memcpy(plo, &lo, 2);
      std::memcpy(phi, &hi, 2);
    }
  }
}

template <int N, bool Trans>
STRATA_SIM_NO_TSAN inline void stmatrix(void* smem_row, const uint32_t (&r)[N],
                                        const ::strata::Site& s) {
  static_assert(N == 1 || N == 2 || N == 4, "stmatrix stores 1, 2 or 4 matrices");
  Thread& t = *detail::g_cur;
  detail::StmatrixStage& st = detail::g_block->wp[t.warp].stsm;
  st.addr[t.lane] = static_cast<const unsigned char*>(smem_row);
  st.shape[t.lane] = uint8_t(N | (Trans ? 8 : 0));
  for (int i = 0; i < N; ++i) st.in[t.lane][i] = r[i];
  // the completing lane writes the rows; the write belongs to the lane that named the row
  if (t.lane < 8 * N) detail::tsan_write(smem_row, 16);
  detail::warp_collective(detail::kStmatrix, 0xffffffffu, &stmatrix_fn, &st, s, false,
                          &Counters::stmatrix);
}

}  // namespace strata::sim::emu
