/// \file
/// The simulator's executor: a fiber per CUDA thread, a run queue, block-wide barriers and warp
/// collectives, and the faults they detect.
///
/// Scheduling. Every CUDA thread of a block is a fiber (sim/context.hpp) on the worker OS
/// thread that runs the block. A fiber runs until it reaches a synchronisation point
/// (__syncthreads, a warp collective, exit); then it hands control directly to the next fiber of
/// the run queue, without going through a scheduler context. The last thread to arrive at a
/// barrier, or the last lane of a warp collective, completes it and appends the released threads
/// to the run queue in the order of the schedule: ascending (forward), descending (reverse), or
/// shuffled by a seeded generator (random). When the queue runs dry the worker's main context
/// takes over: either every thread has exited, or the block is deadlocked.
///
/// Faults (barrier divergence, deadlock, warp-collective mask errors, misaligned ldmatrix,
/// shared-memory overruns, ...) are reported with the kernel's file:line and abort the launch.
#pragma once

#include <algorithm>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include <cuda_runtime.h>  // dim3, uint3 (host use only; libcudart is not linked)

#include "strata/config.hpp"
#include "strata/sim/access_model.hpp"
#include "strata/sim/barrier_state.hpp"
#include "strata/sim/context.hpp"
#include "strata/sim/counters.hpp"
#include "strata/sim/options.hpp"
#include "strata/sim/sanitizers.hpp"
#include "strata/sim/smem.hpp"

namespace strata::sim::detail {

using Site = ::strata::Site;

/// kAtMbarrier, kAtNamedBarrier and kAtRegisters: blocked in mbarrier.try_wait, bar.sync and
/// setmaxnreg.inc (sim/hopper_sync.hpp); `Thread::wait_obj` says which object.
enum class ThreadState : uint8_t {
  kRunnable,
  kAtBarrier,
  kAtWarp,
  kAtMbarrier,
  kAtNamedBarrier,
  kAtRegisters,
  kDone
};

/// One cp.async copy in flight: lands (zero-filled past src_bytes) at wait_group.
struct PendingCopy {
  void* dst;
  const void* src;
  uint32_t bytes;
  uint32_t src_bytes;
  /// Performs the copy: `src_bytes` from global memory, zeros for the rest. Not instrumented in
  /// a traffic build: cp_async has counted the global bytes when it was issued.
  STRATA_SIM_NO_TRAFFIC void land() const {
    std::memset(dst, 0, bytes);
    if (src_bytes) std::memcpy(dst, src, src_bytes);
  }
};

struct alignas(64) Thread {
  // hot: touched at every synchronisation point (the first cache line)
  Context ctx = nullptr;  // suspended context (valid while not running)
  void* wio = nullptr;    // operands of the pending warp collective (its stack or a stage)
  Site site{};            // last synchronisation point reached
  int lane = 0, warp = 0;
  uint32_t mma_seq = 0, ldsm_seq = 0;  // completed mma / ldmatrix ops: index the warp's stages
  ThreadState st = ThreadState::kRunnable;
  // warm: built-in variables and barriers
  uint3 tid{};
  unsigned bar_epoch = 0;
  // cold
  void* tsan_sync = nullptr;  // sync object of the pending warp collective
  // Hopper synchronisation (sim/hopper_sync.hpp)
  int wait_obj = -1;       // the mbarrier slot / named barrier id / warp it is blocked on
  // parked in wgmma.wait_group: the thread that parked before it (sim/wgmma.hpp)
  int park_below = -1;
  int64_t wait_phase = 0;  // the mbarrier phase it waits for
  uint32_t nbar_arrived[kNamedBarriers] = {};       // 1 + the named-barrier phase it arrived in
  uint32_t proxy_fences = 0;                        // fence.proxy.async executed
  uint32_t wg_fences = 0, wg_fences_at_wait = 0;    // wgmma.fence executed; at the last wait
  int wg_next_group = 0;                            // the number of the next wgmma group
  uint64_t wg_serial = 0;                           // wgmmas issued
  std::vector<PendingCopy> cp_open;                 // issued, not yet committed
  std::vector<std::vector<PendingCopy>> cp_groups;  // committed groups, oldest first
  std::vector<TmaStore> bulk_open;                  // TMA stores issued, not yet committed
  std::vector<std::vector<TmaStore>> bulk_groups;   // committed bulk groups, oldest first
  std::vector<PendingWgmma> wg_pending;             // wgmmas issued, not retired, oldest first
  void* tsan_fiber = nullptr;
  void* asan_fake_stack = nullptr;
  AccessLog alog;  // traffic build: accesses since the last tally (sim/access_model.hpp)
};

struct Block;
/// Executes a completed warp collective: `lanes` is the warp's first thread, `mask` its members.
using WarpFn = void (*)(Thread* lanes, unsigned mask);

enum WarpKind : int {
  kSyncWarp = 1,
  kShflIdx,
  kShflUp,
  kShflDown,
  kShflXor,
  kVote,
  kLdmatrix,
  kMma,
  kElect,
  kStmatrix,
  kSetmaxnreg,
  kWgmma
};

STRATA_SIM_NO_TSAN inline const char* warp_kind_name(int k) {
  switch (k) {
    case kSyncWarp:
      return "__syncwarp";
    case kShflIdx:
      return "__shfl_sync";
    case kShflUp:
      return "__shfl_up_sync";
    case kShflDown:
      return "__shfl_down_sync";
    case kShflXor:
      return "__shfl_xor_sync";
    case kVote:
      return "__ballot_sync/__any_sync/__all_sync";
    case kLdmatrix:
      return "ldmatrix";
    case kMma:
      return "mma.sync";
    case kElect:
      return "elect.sync";
    case kStmatrix:
      return "stmatrix";
    case kSetmaxnreg:
      return "setmaxnreg";
    case kWgmma:
      return "wgmma.mma_async";
  }
  return "warp op";
}

struct Collective {
  unsigned mask = 0, arrived = 0;
  int kind = 0;
  WarpFn fn = nullptr;
  Site site{};
  void* tsan_sync = nullptr;
};

/// Per-warp staging of the emulated tensor-core ops: each lane writes its operands here when it
/// arrives (while they are hot in its cache) and reads its results here when it resumes, so the
/// lane that completes the op touches one compact block instead of 32 fiber stacks. Two buffers
/// alternate: a fast lane may start the next op before a slow one has read its result, but never
/// the one after (that needs the slow lane to arrive).
struct MmaStage {
  alignas(32) float A[16][16];
  alignas(32) float B[16][8];
  alignas(32) double D[16][8];
  unsigned lanes_bf16 = 0, lanes_f16 = 0;
};
struct LdmatrixStage {
  const unsigned char* addr[32];
  uint32_t out[32][4];
  uint8_t shape[32];  // number of matrices | 8 if .trans
};

/// stmatrix's staging: each lane's row address and fragments, scattered by the completing lane
/// (one buffer: no lane reads anything back, so none can start the next op before this one ends).
struct StmatrixStage {
  const unsigned char* addr[32];
  uint32_t in[32][4];
  uint8_t shape[32];  // number of matrices | 8 if .trans
};

struct Warp {
  MmaStage mma[2];
  LdmatrixStage ldsm[2];
  StmatrixStage stsm;
  WarpRegisters regs;
  uint64_t wgmma_ops = 0;  // wgmmas this warp issued (the index of its next one)
  Collective open[32];
  int nopen = 0;
  unsigned present = 0;  // lanes that exist in this block
  unsigned exited = 0;
  uint32_t seq = 0;
  char tsan_sync[64] = {};
};

/// Fiber stacks of one worker, reused across blocks and launches. Below each, 64 KiB of
/// PROT_NONE address space: a frame larger than one page must not jump over the guard into the
/// neighbouring fiber's stack (strata::sim also compiles with -fstack-clash-protection).
struct StackPool {
  static constexpr size_t kGuardBytes = 64 * 1024;
  struct Stack {
    char* lo = nullptr;  // usable [lo, lo + size)
    size_t size = 0;
    void* map = nullptr;
    size_t map_bytes = 0;
  };
  std::vector<Stack> stacks;
  ~StackPool() { clear(); }
  void clear() {
    for (auto& s : stacks) munmap(s.map, s.map_bytes);
    stacks.clear();
  }
  bool ensure(size_t n, size_t size) {
    if (!stacks.empty() && stacks[0].size != size) clear();
    const size_t page = size_t(sysconf(_SC_PAGESIZE));
    while (stacks.size() < n) {
      const size_t total = (size + page - 1) / page * page + kGuardBytes;
      void* p = mmap(nullptr, total, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
      if (p == MAP_FAILED) return false;
      mprotect(p, kGuardBytes, PROT_NONE);
      stacks.push_back({static_cast<char*>(p) + kGuardBytes, total - kGuardBytes, p, total});
    }
    return true;
  }
};

struct Block {
  // launch geometry
  dim3 bid, bdim, gdim;
  int n = 0;
  std::vector<Thread> th;
  std::vector<Warp> warps;
  // run queue: ring buffer of thread indices, each thread at most once
  std::vector<int> rq;
  std::vector<int> ids;                        // scratch: threads released by a barrier
  int rq_head = 0, rq_count = 0, rq_mask = 0;  // capacity: a power of two >= n
  // threads parked in wgmma.wait_group, runnable but out of the run queue until it is empty
  // (rq_pop, sim/wgmma.hpp): the last to park, a stack through Thread::park_below (-1: none).
  // Not a std::vector: ThreadSanitizer sees each fiber as a thread and a library container's
  // accesses as races.
  int wg_park_top = -1;
  // block-wide barrier
  int bar_arrived = 0;
  Site bar_site{};
  int bar_accum_count = 0, bar_accum_and = 1, bar_accum_or = 0;
  int bar_result[2][3] = {};
  char tsan_bar[2] = {};
  char tsan_end = 0;
  char tsan_start = 0;
  int done = 0;
  // contexts
  Context main_ctx = nullptr;
  Context dead_slot = nullptr;
  void* main_tsan_fiber = nullptr;
  const void* main_stack_lo = nullptr;
  size_t main_stack_size = 0;
  void* main_fake_stack = nullptr;
  // kernel
  void (*body)(void*) = nullptr;
  void* body_arg = nullptr;
  // schedule
  ScheduleKind order = ScheduleKind::kForward;
  uint64_t rng = 0;  // splitmix64 state (a plain integer: fibers use it, see `tp` below)
  // memory
  DynamicSmemArena dyn;
  StackPool stacks;
  bool defer_cp_async = true;
  // Hopper synchronisation objects (sim/barrier_state.hpp)
  MbarrierSlot mbar[kMaxMbarriers];
  std::vector<int64_t> mbar_seen;  // [slot * n + thread]: the last phase each thread waited for
  NamedBarrier nbar[kNamedBarriers];
  std::vector<WgmmaStage> wg_stages;  // one per warp
  WgmmaLogEntry wg_log[8][64];        // per warpgroup, by op index mod 64
  WgmmaFootprint wg_fp[kMaxWgmmaFootprints];
  int n_wg_fp = 0;
  TmaLoad tma_loads[kMaxTmaLoads];
  int n_tma_loads = 0;
  // stmatrix's stamps, one per 16 bytes of dynamic shared memory: (writer + 1) << 32 | the
  // writer's fence.proxy.async count at the write (0: not written by stmatrix this block)
  std::vector<uint64_t> smem_stamps;
  int reg_entry = 0;  // registers per thread at launch (setmaxnreg's starting point)
  int reg_free = 0;   // the CTA pool's free registers (released by setmaxnreg.dec)
  bool hopper_used = true;  // a Hopper op touched the state above since it was last cleared
  // raw views of the vectors above, set by prepare_worker: the fibers' bookkeeping must not go
  // through instrumented std::vector accessors (ThreadSanitizer would see races between fibers)
  Thread* tp = nullptr;
  Warp* wp = nullptr;
  int* rqp = nullptr;
  int* idp = nullptr;
  StackPool::Stack* sp = nullptr;
  int64_t* msp = nullptr;     // mbar_seen
  uint64_t* stp = nullptr;    // smem_stamps
  WgmmaStage* wsp = nullptr;  // wg_stages
  // outcome
  bool faulted = false;
  bool aborted_fibers = false;
  std::string fault;
  Counters ctr;
};

inline thread_local Block* g_block = nullptr;
inline thread_local Thread* g_cur = nullptr;

/// Traffic build: turns each warp's logged accesses into requests, wavefronts and sectors in the
/// block's counters. Called when every thread's log is complete up to the same point: a
/// completed block-wide barrier, and the end of the block.
STRATA_SIM_NO_TSAN inline void tally_accesses([[maybe_unused]] Block& b) {
#if STRATA_SIM_TRAFFIC
  const bool on = g_traffic_on;
  g_traffic_on = false;
  const int nwarps = (b.n + 31) / 32;
  for (int w = 0; w < nwarps; ++w) {
    AccessLog* lanes[32] = {};
    for (int l = 0; l < 32 && 32 * w + l < b.n; ++l) lanes[l] = &b.tp[32 * w + l].alog;
    tally_warp(lanes, b.ctr);
  }
  g_traffic_on = on;
#endif
}

STRATA_SIM_NO_TSAN inline std::string site_str(const Site& s) {
  return std::string(s.file_name()) + ":" + std::to_string(s.line());
}

STRATA_SIM_NO_TSAN inline std::string who(const Thread& t) {
  const Block& b = *g_block;
  char buf[160];
  std::snprintf(buf, sizeof buf, "thread (%u,%u,%u) of block (%u,%u,%u)", t.tid.x, t.tid.y, t.tid.z,
                b.bid.x, b.bid.y, b.bid.z);
  return buf;
}

// ------------------------------------------------------------------------------ switching
STRATA_SIM_NO_TSAN inline void rq_push(Block& b, int i) {
  b.rqp[(b.rq_head + b.rq_count) & b.rq_mask] = i;
  ++b.rq_count;
}
/// The next thread to run: the run queue's first; when it is empty, the thread parked last in
/// wgmma.wait_group (sim/wgmma.hpp), which waits for every other thread to block or finish.
STRATA_SIM_NO_TSAN inline int rq_pop(Block& b) {
  if (b.rq_count == 0) {
    const int parked = b.wg_park_top;
    if (parked >= 0) b.wg_park_top = b.tp[parked].park_below;
    return parked;
  }
  const int i = b.rqp[b.rq_head];
  b.rq_head = (b.rq_head + 1) & b.rq_mask;
  --b.rq_count;
  return i;
}

/// splitmix64: a small, good generator for shuffles.
STRATA_SIM_NO_TSAN inline uint64_t next_random(uint64_t& state) {
  uint64_t z = (state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

/// Appends the threads `ids[0..count)` (ascending) to the run queue in schedule order.
STRATA_SIM_NO_TSAN inline void release_in_order(Block& b, int* ids, int count) {
  switch (b.order) {
    case ScheduleKind::kForward:
      break;
    case ScheduleKind::kReverse:
      for (int i = 0, j = count - 1; i < j; ++i, --j) {
        const int x = ids[i];
        ids[i] = ids[j];
        ids[j] = x;
      }
      break;
    case ScheduleKind::kRandom:
      for (int i = count - 1; i > 0; --i) {  // Fisher-Yates
        const int j = int(next_random(b.rng) % uint64_t(i + 1));
        const int x = ids[i];
        ids[i] = ids[j];
        ids[j] = x;
      }
      break;
  }
  for (int i = 0; i < count; ++i) {
    b.tp[(ids[i])].st = ThreadState::kRunnable;
    rq_push(b, ids[i]);
  }
}

/// Jumps from the running fiber (or the main context) to `target`. `save` receives the context
/// we leave; whoever resumes us writes our context into the slot we passed.
STRATA_SIM_NO_TSAN inline void jump(Context target, Context* save,
                                    [[maybe_unused]] void** fake_save,
                                    [[maybe_unused]] const void* target_lo,
                                    [[maybe_unused]] size_t target_size,
                                    [[maybe_unused]] void* target_tsan) {
#if STRATA_SIM_ASAN
  __sanitizer_start_switch_fiber(fake_save, target_lo, target_size);
#endif
#if STRATA_SIM_TSAN
  __tsan_switch_to_fiber(target_tsan, 1 /* no synchronisation */);
#endif
  context_switch(save, target);
#if STRATA_SIM_ASAN
  __sanitizer_finish_switch_fiber(fake_save ? *fake_save : nullptr, nullptr, nullptr);
#endif
}

/// The running thread gives up the CPU: the next thread of the run queue runs, or the main
/// context when the queue is empty. Returns when this thread is resumed (never, if it is done).
STRATA_SIM_NO_TSAN inline void switch_out(Thread& self) {
  Block& b = *g_block;
  const bool dying = self.st == ThreadState::kDone;
  Context* save = dying ? &b.dead_slot : &self.ctx;
  void** fake = dying ? nullptr : &self.asan_fake_stack;
  const int next = rq_pop(b);
  ++b.ctr.fiber_switches;
  if (next < 0) {
    g_cur = nullptr;
    tsan_release(&b.tsan_end);  // the main context sees everything the fibers did
    jump(b.main_ctx, save, fake, b.main_stack_lo, b.main_stack_size, b.main_tsan_fiber);
  } else {
    Thread& t = b.tp[(next)];
    if (&t == &self) return;  // we released ourselves and nobody else is runnable
    g_cur = &t;
    const auto& stk = b.sp[(next)];
    jump(t.ctx, save, fake, stk.lo, stk.size, t.tsan_fiber);
  }
  g_cur = &self;
}

/// Records the first fault of the block.
STRATA_SIM_NO_TSAN inline void record_fault(std::string msg) {
  Block& b = *g_block;
  if (!b.faulted) {
    b.faulted = true;
    b.fault = std::move(msg);
  }
}

/// Leaves the current fiber for good and returns to the worker's main context.
[[noreturn]] STRATA_SIM_NO_TSAN inline void abandon_fiber() {
  Block& b = *g_block;
  b.aborted_fibers = true;
  g_cur = nullptr;
  tsan_release(&b.tsan_end);
  jump(b.main_ctx, &b.dead_slot, nullptr, b.main_stack_lo, b.main_stack_size, b.main_tsan_fiber);
  __builtin_unreachable();
}

/// Aborts the block with a fault message and abandons the faulting fiber. It is not unwound:
/// unwinding would call std::terminate through any `noexcept` kernel helper, so the faulting
/// call chain's temporaries (the message pieces) are leaked, a few hundred bytes per fault.
[[noreturn]] STRATA_SIM_NO_TSAN inline void fault(std::string msg) {
  record_fault(std::move(msg));
  abandon_fiber();
}

STRATA_SIM_NO_TSAN [[noreturn]] inline void fault_at(const Thread& t, const Site& s,
                                                     const std::string& what) {
  fault(what + " (" + who(t) + " at " + site_str(s) + ")");
}

// ----------------------------------------------------------------------- block-wide barrier
enum class BarrierOp { kPlain, kCount, kAnd, kOr };

/// __syncthreads and its reducing forms. Every thread of the block must reach the same call
/// site; a thread that has exited makes the barrier impossible (divergence).
STRATA_SIM_NO_TSAN inline int block_barrier(const Site& site, int pred, BarrierOp op) {
  Block& b = *g_block;
  Thread& t = *g_cur;
  if (b.done > 0) {
    for (const Thread& o : b.th)
      if (o.st == ThreadState::kDone)
        fault_at(t, site,
                 "__syncthreads divergence: this thread waits at a barrier that " + who(o) +
                     " can never reach because it has exited");
  }
  if (b.bar_arrived == 0) {
    b.bar_site = site;
  } else if (b.bar_site.line() != site.line() ||
             (b.bar_site.file_name() != site.file_name() &&  // literals are usually merged
              std::strcmp(b.bar_site.file_name(), site.file_name()) != 0)) {
    fault_at(t, site,
             "__syncthreads divergence: threads of one block wait at different barriers, this "
             "one and " +
                 site_str(b.bar_site));
  }
  const Warp& w = b.wp[(t.warp)];
  for (int i = 0; i < w.nopen; ++i)
    if (w.open[i].mask >> t.lane & 1u)
      fault_at(t, site,
               std::string("deadlock: this thread reached __syncthreads while lanes of its warp "
                           "wait for it at ") +
                   warp_kind_name(w.open[i].kind) + " at " + site_str(w.open[i].site));
  t.st = ThreadState::kAtBarrier;
  t.site = site;
  const int parity = int(t.bar_epoch & 1u);
  tsan_release(&b.tsan_bar[parity]);
  ++b.ctr.barrier_arrivals;
  b.bar_accum_count += pred != 0;
  b.bar_accum_and &= pred != 0;
  b.bar_accum_or |= pred != 0;
  if (++b.bar_arrived == b.n) {
    b.bar_result[parity][0] = b.bar_accum_count;
    b.bar_result[parity][1] = b.bar_accum_and;
    b.bar_result[parity][2] = b.bar_accum_or;
    b.bar_accum_count = 0;
    b.bar_accum_and = 1;
    b.bar_accum_or = 0;
    b.bar_arrived = 0;
    ++b.ctr.barriers;
    tally_accesses(b);
    for (int i = 0; i < b.n; ++i) b.idp[i] = i;
    release_in_order(b, b.idp, b.n);
  }
  switch_out(t);
  tsan_acquire(&b.tsan_bar[parity]);
  ++t.bar_epoch;
  switch (op) {
    case BarrierOp::kPlain:
      return 0;
    case BarrierOp::kCount:
      return b.bar_result[parity][0];
    case BarrierOp::kAnd:
      return b.bar_result[parity][1];
    case BarrierOp::kOr:
      return b.bar_result[parity][2];
  }
  return 0;
}

// -------------------------------------------------------------------------- warp collectives
/// Cold path of warp_collective: which mask rule the arriving lane broke.
[[noreturn, gnu::cold, gnu::noinline]] STRATA_SIM_NO_TSAN inline void collective_mask_fault(
    const Thread& t, const Warp& w, int kind, unsigned mask, const Site& site) {
  const std::string op = warp_kind_name(kind);
  if (!(mask >> t.lane & 1u))
    fault_at(
        t, site,
        op + " executed by lane " + std::to_string(t.lane) + ", which is not in its member mask");
  if (mask & ~w.present)
    fault_at(t, site,
             op + " member mask names lane " + std::to_string(__builtin_ctz(mask & ~w.present)) +
                 ", which does not exist in this block");
  fault_at(t, site,
           op + " waits for lane " + std::to_string(__builtin_ctz(mask & w.exited)) +
               ", which has exited");
}

/// Cold path of warp_collective: lanes of the warp wait at another collective.
[[noreturn, gnu::cold, gnu::noinline]] STRATA_SIM_NO_TSAN inline void collective_mismatch_fault(
    const Thread& t, const Collective& c, int kind, unsigned mask, const Site& site) {
  char m[16], cm[16];
  std::snprintf(m, sizeof m, "0x%08x", mask);
  std::snprintf(cm, sizeof cm, "0x%08x", c.mask);
  const char* what = c.kind == kind && c.mask == mask ? " (operands of another type)" : "";
  fault_at(t, site,
           std::string("warp collective mismatch") + what + ": " + warp_kind_name(kind) +
               " with mask " + m + " while lanes of the warp wait at " + warp_kind_name(c.kind) +
               " with mask " + cm + " at " + site_str(c.site));
}

/// Joins (or opens) the warp collective `kind` over `mask`. The last lane to arrive runs `fn`
/// for all lanes, counts the op in `counter` and releases the lanes. `orders_memory`: creates a
/// happens-before edge among the lanes (for ThreadSanitizer), as __syncwarp does.
STRATA_SIM_NO_TSAN inline void warp_collective(int kind, unsigned mask, WarpFn fn, void* io,
                                               const Site& site, bool orders_memory,
                                               uint64_t Counters::*counter) {
  Block& b = *g_block;
  Thread& t = *g_cur;
  Warp& w = b.wp[t.warp];
  const unsigned bit = 1u << t.lane;
  if (__builtin_expect(!(mask & bit) || (mask & (~w.present | w.exited)), 0))
    collective_mask_fault(t, w, kind, mask, site);
  Collective* c = w.open;
  Collective* const end = w.open + w.nopen;
  while (c != end && !(c->mask & mask)) ++c;
  if (c != end) {
    if (__builtin_expect(c->mask != mask || c->kind != kind || c->fn != fn, 0))
      collective_mismatch_fault(t, *c, kind, mask, site);
  } else {
    ++w.nopen;
    c->mask = mask;
    c->arrived = 0;
    c->kind = kind;
    c->fn = fn;
    c->site = site;
    c->tsan_sync = &w.tsan_sync[w.seq++ % 64];
  }
  c->arrived |= bit;
  t.st = ThreadState::kAtWarp;
  t.site = site;
  t.wio = io;
  if constexpr (STRATA_SIM_TSAN) {
    t.tsan_sync = orders_memory ? c->tsan_sync : nullptr;
    if (t.tsan_sync) tsan_release(t.tsan_sync);
  }
  if (c->arrived == mask) {
    const WarpFn f = c->fn;
    *c = w.open[--w.nopen];  // remove before running f: f may fault
    f(&b.tp[t.warp * 32], mask);
    ++b.ctr.warp_collectives;
    ++(b.ctr.*counter);
    int ids[32];
    int count = 0;
    for (unsigned m = mask; m; m &= m - 1) ids[count++] = t.warp * 32 + __builtin_ctz(m);
    release_in_order(b, ids, count);
  }
  switch_out(t);
  if constexpr (STRATA_SIM_TSAN)
    if (t.tsan_sync) tsan_acquire(t.tsan_sync);
}

// ------------------------------------------------------------------------------ fiber life
/// A thread leaves the kernel: its cp.async copies land, and it must not leave a barrier or a
/// warp collective waiting for it (those are faults).
STRATA_SIM_NO_TSAN inline void thread_exit_checks(Thread& t) {
  Block& b = *g_block;
  // cp.async copies still in flight complete, as on the hardware
  if (!t.cp_open.empty()) t.cp_groups.push_back(std::move(t.cp_open));
  t.cp_open.clear();
  for (const auto& g : t.cp_groups)
    for (const auto& c : g) c.land();
  t.cp_groups.clear();
  // TMA stores still in flight complete too (their sources must not have changed)
  if (!t.bulk_open.empty()) t.bulk_groups.push_back(std::move(t.bulk_open));
  t.bulk_open.clear();
  for (const auto& g : t.bulk_groups)
    for (const auto& st : g) {
      if (fingerprint(st.src, st.bytes) != st.print)
        fault_at(t, st.site,
                 "the shared source of this TMA store changed before the store read it (the "
                 "thread exited without cp.async.bulk.wait_group.read)");
      tma_box_store(st.src, st.map, st.at);
    }
  t.bulk_groups.clear();
  Warp& w = b.wp[(t.warp)];
  for (int i = 0; i < w.nopen; ++i)
    if (w.open[i].mask >> t.lane & 1u)
      fault_at(t, t.site.line() ? t.site : w.open[i].site,
               std::string("lane ") + std::to_string(t.lane) +
                   " exited while lanes of its warp wait for it at " +
                   warp_kind_name(w.open[i].kind) + " at " + site_str(w.open[i].site));
  if (b.bar_arrived > 0)
    fault(std::string("__syncthreads divergence: ") + who(t) + " exited while " +
          std::to_string(b.bar_arrived) + " thread(s) wait at the barrier at " +
          site_str(b.bar_site));
}

/// Marks the thread done and runs the next one; never returns.
[[noreturn]] STRATA_SIM_NO_TSAN inline void thread_exit(Thread& t) {
  Block& b = *g_block;
  Warp& w = b.wp[t.warp];
  t.st = ThreadState::kDone;
  w.exited |= 1u << t.lane;
  ++b.done;
  tsan_release(&b.tsan_end);  // everything this thread did happens before the block's end
  switch_out(t);
  __builtin_unreachable();
}

[[noreturn]] STRATA_SIM_NO_TSAN inline void fiber_entry() {
  Block& b = *g_block;
#if STRATA_SIM_ASAN
  {
    const void* lo = nullptr;
    size_t sz = 0;
    __sanitizer_finish_switch_fiber(nullptr, &lo, &sz);
    if (!b.main_stack_lo) {  // the first fiber of a block is always entered from main
      b.main_stack_lo = lo;
      b.main_stack_size = sz;
    }
  }
#endif
  Thread& t = *g_cur;
  tsan_acquire(&b.tsan_start);  // the block start (poisoning, earlier launches) happens before
  bool aborted = false;
  try {
    b.body(b.body_arg);
    thread_exit_checks(t);
  } catch (const std::exception& e) {
    record_fault(std::string("C++ exception escaped the kernel: ") + e.what() + " (" + who(t) +
                 ")");
    aborted = true;
  } catch (...) {
    record_fault("C++ exception of unknown type escaped the kernel (" + who(t) + ")");
    aborted = true;
  }
  if (aborted) abandon_fiber();
  thread_exit(t);
}

// ------------------------------------------------------------------- guard-page faults
// A read or write past the dynamic shared memory of a launch hits the arena's guard page. The
// SIGSEGV handler turns it into a fault of the running CUDA thread and leaves the signal
// handler by switching to the worker's main context (the fiber is abandoned).
// The handler runs on an alternate signal stack (a fiber's own stack may be the one that broke);
// one per OS thread that runs blocks, installed only if the thread has none, freed at its exit.
struct SignalStack {
  char* mem = nullptr;
  SignalStack() {
    stack_t old{};
    if (sigaltstack(nullptr, &old) != 0 || !(old.ss_flags & SS_DISABLE)) return;  // keep the user's
    const size_t size = 64 * 1024;
    mem = static_cast<char*>(std::malloc(size));
    stack_t ss{};
    ss.ss_sp = mem;
    ss.ss_size = size;
    if (!mem || sigaltstack(&ss, nullptr) != 0) {
      std::free(mem);
      mem = nullptr;
    }
  }
  ~SignalStack() {
    if (!mem) return;
    stack_t ss{};
    ss.ss_flags = SS_DISABLE;
    sigaltstack(&ss, nullptr);
    std::free(mem);
  }
  SignalStack(const SignalStack&) = delete;
  SignalStack& operator=(const SignalStack&) = delete;
};

inline void segv_handler(int sig, siginfo_t* info, void* uctx);

/// The dispositions the simulator replaced: SIGSEGV ([0]) and SIGBUS ([1]).
inline struct sigaction* previous_fault_actions() {
  static struct sigaction a[2]{};
  return a;
}

inline void install_segv_handler() {
#if !STRATA_SIM_ASAN && !STRATA_SIM_TSAN
  static const bool installed = [] {
    struct sigaction sa {};
    sa.sa_sigaction = &segv_handler;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_NODEFER;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGSEGV, &sa, &previous_fault_actions()[0]);
    sigaction(SIGBUS, &sa, &previous_fault_actions()[1]);
    return true;
  }();
  (void)installed;
  thread_local SignalStack signal_stack;
  (void)signal_stack;
#endif
}

STRATA_SIM_NO_TSAN inline void segv_handler(int sig, siginfo_t* info, void* uctx) {
  Block* b = g_block;
  Thread* t = g_cur;
  if (b && t && b->dyn.in_guard(info->si_addr)) {
    const long off = static_cast<unsigned char*>(info->si_addr) - b->dyn.data();
    record_fault("dynamic shared memory overrun: access at byte offset " + std::to_string(off) +
                 " of a launch with " + std::to_string(b->dyn.bytes()) +
                 " bytes of dynamic shared memory (" + who(*t) +
                 ", after its last synchronisation at " + site_str(t->site) + ")");
    abandon_fiber();  // no unwinding through the signal frame; the message strings leak
  }
  if (b && t) {
    const auto* a = static_cast<const char*>(info->si_addr);
    for (int i = 0; i < b->n; ++i) {
      const auto& stk = b->sp[i];
      if (a >= static_cast<const char*>(stk.map) && a < stk.lo) {
        record_fault("fiber stack overflow (" + who(*t) + ", after its last synchronisation at " +
                     site_str(t->site) + "): raise STRATA_SIM_STACK_KB (now " +
                     std::to_string(stk.size / 1024) + ")");
        abandon_fiber();
      }
    }
  }
  // Not ours: hand it to the previous handler, or restore the previous disposition and let the
  // fault happen again (the default action then ends the process as usual).
  const struct sigaction& prev = previous_fault_actions()[sig == SIGBUS ? 1 : 0];
  if (prev.sa_flags & SA_SIGINFO) {
    if (prev.sa_sigaction) return prev.sa_sigaction(sig, info, uctx);
  } else if (prev.sa_handler != SIG_DFL && prev.sa_handler != SIG_IGN) {
    return prev.sa_handler(sig);
  }
  sigaction(sig, &prev, nullptr);
}

// ------------------------------------------------------------------------------ one block
/// Where a shared-memory address lies, for messages: "dynamic shared memory byte N", ...
STRATA_SIM_NO_TSAN inline std::string smem_where(const void* p) {
  const auto a = reinterpret_cast<uintptr_t>(p);
  if (a >= g_smem_lo && a < g_smem_hi)
    return "dynamic shared memory byte " + std::to_string(a - g_smem_lo);
  if (a >= g_static_smem_lo && a < g_static_smem_hi)
    return "static shared memory byte " + std::to_string(a - g_static_smem_lo);
  char buf[40];
  std::snprintf(buf, sizeof buf, "address %p", p);
  return buf;
}

/// A generic-proxy write of the 16 bytes at `a` in dynamic shared memory by thread `t` (stmatrix,
/// or a 16-byte st.shared through arch::store16): a fault where an asynchronous op still owns
/// them (a wgmma in flight reads them: on hardware it may read the old or the new values; a TMA
/// load has not landed in them: it would overwrite the store), else the stamp of the proxy-fence
/// check (Block::smem_stamps): an async-proxy reader (wgmma, a TMA store) may read them only
/// after the writer's next fence.proxy.async. `op` names the write in messages. Addresses outside
/// dynamic shared memory, and host code, are not checked.
STRATA_SIM_NO_TSAN STRATA_SIM_NO_TRAFFIC inline void generic_store16(const Thread& t, const Site& s,
                                                                     uintptr_t a, const char* op) {
  Block* b = g_block;
  if (!b || !b->stp || a < g_smem_lo || a + 16 > g_smem_hi) return;
  const auto* p = reinterpret_cast<const unsigned char*>(a);
  for (int k = 0; k < b->n_wg_fp; ++k) {
    const WgmmaFootprint& o = b->wg_fp[k];
    if ((p < o.hi[0] && o.lo[0] < p + 16) || (p < o.hi[1] && o.lo[1] < p + 16))
      fault_at(t, s,
               std::string(op) + " into " + smem_where(p) + " while the wgmma issued at " +
                   site_str(o.site) +
                   " still reads it (wait for its group before rewriting the operand)");
  }
  for (int k = 0; k < b->n_tma_loads; ++k) {
    const TmaLoad& o = b->tma_loads[k];
    if (p < o.dst + o.bytes && o.dst < p + 16)
      fault_at(t, s,
               std::string(op) + " into " + smem_where(p) + " while the TMA load issued at " +
                   site_str(o.site) + " into it has not landed");
  }
  b->hopper_used = true;  // the stamps are cleared before this slot runs another block
  b->stp[(a - g_smem_lo) / 16] = uint64_t(&t - b->tp + 1) << 32 | t.proxy_fences;
}
/// An async-proxy write (a TMA load) replaces [a, a + bytes): its generic writes are gone.
STRATA_SIM_NO_TSAN STRATA_SIM_NO_TRAFFIC inline void clear_generic_stamps(uintptr_t a, uint64_t bytes) {
  Block* b = g_block;
  if (!b || !b->stp || a < g_smem_lo || a + bytes > g_smem_hi) return;
  std::memset(b->stp + (a - g_smem_lo) / 16, 0, size_t((bytes + 15) / 16) * sizeof(uint64_t));
}
/// arch::store16's hook: a 16-byte store at `s` by the running fiber (none in host code).
STRATA_SIM_NO_TSAN STRATA_SIM_NO_TRAFFIC inline void on_store16(const void* p, const Site& s) {
  if (g_cur) generic_store16(*g_cur, s, reinterpret_cast<uintptr_t>(p), "a 16-byte st.shared");
}

/// What a blocked thread waits for.
STRATA_SIM_NO_TSAN inline std::string wait_str(const Block& b, const Thread& t) {
  switch (t.st) {
    case ThreadState::kAtBarrier:
      return "__syncthreads";
    case ThreadState::kAtMbarrier: {
      const MbarrierSlot& m = b.mbar[t.wait_obj];
      return "mbarrier.try_wait for phase " + std::to_string(t.wait_phase) + " (parity " +
             std::to_string(t.wait_phase & 1) + ") of the mbarrier at " + smem_where(m.addr);
    }
    case ThreadState::kAtNamedBarrier:
      return "bar.sync " + std::to_string(t.wait_obj);
    case ThreadState::kAtRegisters:
      return "setmaxnreg.inc";
    default:
      return "a warp collective";
  }
}

/// TMA loads in flight that complete transaction bytes on mbarrier slot `slot`.
STRATA_SIM_NO_TSAN inline int tma_loads_on(const Block& b, int slot) {
  int n = 0;
  for (int i = 0; i < b.n_tma_loads; ++i) n += b.tma_loads[i].slot == slot;
  return n;
}

/// The state of every synchronisation object a thread is blocked on, for deadlock reports.
STRATA_SIM_NO_TSAN inline std::string sync_objects_dump(const Block& b) {
  std::string s;
  for (const MbarrierSlot& m : b.mbar) {
    if (!m.addr || m.waiters == 0) continue;
    s += "\n  mbarrier at " + smem_where(m.addr) + " (init at " + site_str(m.init_site) +
         "): in phase " + std::to_string(m.phase) + ", " + std::to_string(m.pending) + " of " +
         std::to_string(m.expected) + " arrivals pending, tx-count " + std::to_string(m.tx) +
         " bytes, " + std::to_string(m.waiters) + " thread(s) waiting, " +
         std::to_string(tma_loads_on(b, int(&m - b.mbar))) + " TMA load(s) in flight" +
         (m.last_arrive.line() ? ", last arrival at " + site_str(m.last_arrive) : ", no arrival");
  }
  for (int id = 0; id < kNamedBarriers; ++id) {
    const NamedBarrier& nb = b.nbar[id];
    if (nb.count == 0) continue;
    s += "\n  named barrier " + std::to_string(id) + ": " + std::to_string(nb.arrived) + " of " +
         std::to_string(nb.count) + " threads arrived (first at " + site_str(nb.site) + ")";
  }
  for (int w = 0; w < (b.n + 31) / 32; ++w) {
    const WarpRegisters& r = b.wp[w].regs;
    if (r.want == 0) continue;
    s += "\n  warp " + std::to_string(w) + " waits in setmaxnreg.inc to " + std::to_string(r.want) +
         " registers per thread (from " + std::to_string(r.regs) + ") at " + site_str(r.site) +
         ": the CTA pool has " + std::to_string(b.reg_free) + " free registers, it needs " +
         std::to_string((r.want - r.regs) * 32);
  }
  return s;
}

STRATA_SIM_NO_TSAN inline std::string blocked_threads_dump(const Block& b) {
  std::string s;
  int shown = 0;
  for (const Thread& t : b.th) {
    if (t.st == ThreadState::kDone || t.st == ThreadState::kRunnable) continue;
    if (shown++ == 6) {
      s += "\n  ...";
      break;
    }
    s += "\n  " + who(t) + " waits at " + wait_str(b, t) + " at " + site_str(t.site);
  }
  return s + sync_objects_dump(b);
}

/// Runs block `bid` of the current launch on this OS thread. Returns false on a fault.
STRATA_SIM_NO_TSAN inline bool run_block(Block& b) {
  g_block = &b;
  b.faulted = false;
  b.fault.clear();
  b.done = 0;
  b.bar_arrived = 0;
  b.bar_accum_count = 0;
  b.bar_accum_and = 1;
  b.bar_accum_or = 0;
  b.rq_head = b.rq_count = 0;
  b.wg_park_top = -1;
#if STRATA_SIM_TSAN
  b.main_tsan_fiber = __tsan_get_current_fiber();
#endif
  // Fibers never return: their last frames (and, after a fault, whole call chains) stay
  // poisoned in ASan's shadow memory. Clear it before the stacks are reused.
#if STRATA_SIM_ASAN
  for (int i = 0; i < b.n; ++i) {
    auto& s = b.sp[(i)];
    const size_t top = b.aborted_fibers ? s.size : std::min<size_t>(s.size, 64 * 1024);
    asan_unpoison(s.lo + s.size - top, top);
  }
#endif
  b.aborted_fibers = false;
  if (b.hopper_used) {  // the previous block used Hopper's state: clear it
    for (int i = 0; i < kMaxMbarriers; ++i) b.mbar[i] = MbarrierSlot{};
    b.n_tma_loads = 0;
    b.n_wg_fp = 0;
    for (auto& wg : b.wg_log)
      for (auto& e : wg) e.index = ~uint64_t(0);
    if (b.stp) std::memset(b.stp, 0, b.smem_stamps.size() * sizeof(uint64_t));
    for (auto& nb : b.nbar) nb = NamedBarrier{};
    b.hopper_used = false;
  }
  b.reg_free = 0;
  for (auto& w : b.warps) {
    w.nopen = 0;
    w.exited = 0;
    w.regs = WarpRegisters{};
    w.regs.regs = b.reg_entry;
    w.wgmma_ops = 0;
    w.mma[0].lanes_bf16 = w.mma[0].lanes_f16 = w.mma[1].lanes_bf16 = w.mma[1].lanes_f16 = 0;
  }
  for (int i = 0; i < b.n; ++i) {
    Thread& t = b.tp[(i)];
    t.st = ThreadState::kRunnable;
    t.site = Site{};
    t.bar_epoch = 0;
    t.mma_seq = t.ldsm_seq = 0;
    t.wait_obj = -1;
    t.wait_phase = 0;
    for (auto& a : t.nbar_arrived) a = 0;
    t.proxy_fences = 0;
    t.cp_open.clear();
    t.cp_groups.clear();
    t.bulk_open.clear();
    t.bulk_groups.clear();
    t.wg_pending.clear();
    t.wg_fences = t.wg_fences_at_wait = 0;
    t.wg_next_group = 0;
    t.wg_serial = 0;
    t.asan_fake_stack = nullptr;
    t.alog.n = 0;
    const auto& stk = b.sp[(i)];
    // Colour the stack tops: the stacks are page aligned and equally spaced, so without an
    // offset every fiber's hot frames would map to the same L1 and L2 sets and evict each other
    // at every switch. Steps of a page plus a line spread them over both caches' set indices.
    const size_t span = std::min<size_t>(64 * 1024, stk.size / 4);
    const size_t colour = (size_t(i) * (4096 + 64)) % span & ~size_t(63);
    t.ctx = context_make(stk.lo + stk.size - colour, stk.size - colour, &fiber_entry);
#if STRATA_SIM_TSAN
    t.tsan_fiber = __tsan_create_fiber(0);
#endif
  }
  for (int i = 0; i < b.n; ++i) b.idp[i] = i;
  release_in_order(b, b.idp, b.n);

  tsan_release(&b.tsan_start);
  const int first = rq_pop(b);
  Thread& t0 = b.tp[(first)];
  g_cur = &t0;
  const auto& stk0 = b.sp[(first)];
  ++b.ctr.fiber_switches;
  jump(t0.ctx, &b.main_ctx, &b.main_fake_stack, stk0.lo, stk0.size, t0.tsan_fiber);
  g_cur = nullptr;
  tsan_acquire(&b.tsan_end);

  if (!b.faulted && b.done != b.n) {
    b.faulted = true;
    b.aborted_fibers = true;
    b.fault = "deadlock: no CUDA thread can run, " + std::to_string(b.n - b.done) +
              " wait forever:" + blocked_threads_dump(b);
  }
  if (!b.faulted) {
    // setmaxnreg is warpgroup-wide: every warp of a warpgroup executes the same ones
    for (int w = 0; w + 1 < (b.n + 31) / 32 && !b.faulted; ++w) {
      const WarpRegisters &r = b.wp[w].regs, &r1 = b.wp[w + 1].regs;
      if (w % 4 != 3 && r.ops != r1.ops) {
        b.faulted = true;
        b.fault = "setmaxnreg: warp " + std::to_string(w) + " executed " + std::to_string(r.ops) +
                  " and warp " + std::to_string(w + 1) + " of the same warpgroup " +
                  std::to_string(r1.ops) + " (at " + site_str(r.ops ? r.site : r1.site) +
                  "): all warps of a warpgroup must execute the same setmaxnreg";
      }
    }
  }
  if (!b.faulted) {
    if (const long off = b.dyn.canary_damage(); off >= 0) {
      b.faulted = true;
      b.fault = "dynamic shared memory overrun: a thread of block (" + std::to_string(b.bid.x) +
                "," + std::to_string(b.bid.y) + "," + std::to_string(b.bid.z) +
                ") wrote byte offset " + std::to_string(off) + " of a launch with " +
                std::to_string(b.dyn.bytes()) + " bytes of dynamic shared memory";
    }
  }
#if STRATA_SIM_TSAN
  // Abandoned fibers (after a fault) never released: release on their behalf, so that what they
  // did (e.g. reading the kernel arguments on the launching stack) happens before the host
  // continues.
  for (auto& t : b.th)
    if (t.st != ThreadState::kDone && t.tsan_fiber) {
      __tsan_switch_to_fiber(t.tsan_fiber, 1);
      __tsan_release(&b.tsan_end);
      __tsan_switch_to_fiber(b.main_tsan_fiber, 1);
    }
  __tsan_acquire(&b.tsan_end);
  for (auto& t : b.th) {
    __tsan_destroy_fiber(t.tsan_fiber);
    t.tsan_fiber = nullptr;
  }
#endif
  if (!b.faulted) tally_accesses(b);
  ++b.ctr.blocks;
  b.ctr.threads += uint64_t(b.n);
  g_block = nullptr;
  return !b.faulted;
}

}  // namespace strata::sim::detail
