/// \file
/// Emulated wgmma (strata/arch/wgmma.hpp): m64nNk16 with f32 accumulators, A and B read through
/// descriptors (decoded by strata/arch/wgmma_layout.hpp's element_offset, the PTX ISA's
/// canonical layouts, cross-checked against CuTe by tests/layout) or A from registers, and the
/// asynchronous rules checked.
///
/// Each op is a warp collective run per warp on its 16 rows (warp w of a warpgroup owns rows
/// 16w..16w+15 of A and of the accumulators), which keeps FlashAttention-3's idiom of writing P
/// and only __syncwarp-ing free of false alarms; the warps of a warpgroup are compared op by op
/// instead (.aligned: the same shape, descriptors and flags). The products are exact in double
/// and each dot product with its accumulator is rounded once to f32 (the hardware truncates
/// differently; tests are bound-based).
///
/// Asynchrony: an op computes at issue, but its results stay pending and its accumulators read
/// as NaN until wgmma.wait_group retires its group; a chain of ops on the same accumulators
/// adds to the pending values, as the hardware's in-order pipeline does. Faults: a wgmma with no
/// wgmma.fence since the thread's last wait (or ever); accumulators or A registers written while
/// an op on them is in flight; shared operands changed before the wait; a TMA load into an
/// operand in flight (sim/tma.hpp); operands written by stmatrix without fence.proxy.async;
/// descriptors with reserved bits, a base offset, or reading outside dynamic shared memory;
/// warps of a warpgroup that disagree; accumulators destroyed with an op in flight.
#pragma once

#include <bit>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>

#include "strata/arch/wgmma_layout.hpp"
#include "strata/sim/emulated_ptx.hpp"
#include "strata/sim/hopper_sync.hpp"

namespace strata::sim::emu {

namespace wgmma_detail {

namespace L = ::strata::arch::wgmma;

inline float elem(uint32_t bits16, bool bf16) {
  return bf16 ? std::bit_cast<float>(bits16 << 16) : f16_table()[bits16];
}

/// Checks a descriptor the simulator can read exactly.
STRATA_SIM_NO_TSAN inline L::Desc checked_desc(Thread& t, uint64_t desc, const char* what) {
  if (desc & L::kDescReservedMask)
    detail::fault_at(t, t.site,
                     std::string("wgmma: the ") + what + " descriptor sets reserved bits");
  const L::Desc d = L::decode_desc(desc);
  if (!L::desc_supported(d))
    detail::fault_at(t, t.site,
                     std::string("wgmma: the ") + what +
                         " descriptor has a nonzero base offset (align the swizzled tile to its "
                         "pattern instead; the simulator does not model base offsets)");
  return d;
}

/// The shared byte at descriptor address `addr` (a fault outside dynamic shared memory).
STRATA_SIM_NO_TSAN inline const unsigned char* smem_at(Thread& t, uint32_t addr, const char* what) {
  if (detail::g_smem_lo + addr + 2 > detail::g_smem_hi)
    detail::fault_at(t, t.site,
                     std::string("wgmma: the ") + what + " operand reads shared byte " +
                         std::to_string(addr) + ", past the launch's " +
                         std::to_string(detail::g_smem_hi - detail::g_smem_lo) +
                         " bytes of dynamic shared memory (the simulator's wgmma reads dynamic "
                         "shared memory only)");
  return reinterpret_cast<const unsigned char*>(detail::g_smem_lo + addr);
}

/// The shared addresses of a descriptor's operand rows, computed once: kernels cycle through a
/// few descriptors (a stage's k16 steps), and element_offset per element per warp per op (and
/// again at the wait) would dominate the emulation. A pure function of the descriptor, so one
/// cache per worker OS thread serves every launch.
struct OffsetCache {
  static constexpr int kEntries = 32;
  struct Entry {
    uint64_t desc = 0;
    int trans = -1, row0 = 0, rows = 0;
    uint32_t max = 0;  // largest address (checked against the launch's shared memory)
    uint32_t off[256 * 16];
  };
  Entry e[kEntries];
  int next = 0;
  double bt[16][256], c[16][256];  // wgmma_fn's B^T and product (too big for a fiber's stack)
};
/// This worker OS thread's cache and scratch: on the heap (large; TLS stays small), behind a
/// constant-initialised pointer (a thread_local with a dynamic initialiser has a guard that
/// ThreadSanitizer sees the fibers of one OS thread race on). Allocated once per OS thread and
/// kept for its life (reachable, so no leak is reported).
inline thread_local OffsetCache* g_offset_cache = nullptr;
STRATA_SIM_NO_TSAN inline OffsetCache& worker_scratch() {
  if (!g_offset_cache) g_offset_cache = new OffsetCache();
  return *g_offset_cache;
}

/// Addresses of rows [row0, row0 + rows) x 16 of a descriptor's operand, row-major.
STRATA_SIM_NO_TSAN inline const uint32_t* operand_offsets(Thread& t, uint64_t desc, int trans,
                                                          int row0, int rows, const char* what) {
  OffsetCache& c = worker_scratch();
  OffsetCache::Entry* hit = nullptr;
  for (auto& e : c.e)
    if (e.desc == desc && e.trans == trans && e.row0 == row0 && e.rows == rows) hit = &e;
  if (!hit) {
    const L::Desc d = checked_desc(t, desc, what);
    const L::Major major = trans ? L::Major::kMN : L::Major::kK;
    hit = &c.e[c.next];
    c.next = (c.next + 1) % OffsetCache::kEntries;
    hit->desc = desc;
    hit->trans = trans;
    hit->row0 = row0;
    hit->rows = rows;
    hit->max = 0;
    for (int r = 0; r < rows; ++r)
      for (int k = 0; k < 16; ++k) {
        const uint32_t a = L::element_offset(d, major, row0 + r, k);
        hit->off[r * 16 + k] = a;
        hit->max = a > hit->max ? a : hit->max;
      }
  }
  smem_at(t, hit->max, what);  // faults past the launch's dynamic shared memory
  return hit->off;
}

/// Calls f(row, k, byte pointer) for rows [row0, row0 + rows) x 16 of a descriptor's operand.
template <class F>
STRATA_SIM_NO_TSAN inline void for_each_operand(Thread& t, uint64_t desc, int trans, int row0,
                                                int rows, const char* what, F&& f) {
  const uint32_t* off = operand_offsets(t, desc, trans, row0, rows, what);
  const auto* base = reinterpret_cast<const unsigned char*>(detail::g_smem_lo);
  for (int r = 0; r < rows; ++r)
    for (int k = 0; k < 16; ++k) f(row0 + r, k, base + off[r * 16 + k]);
}

/// Fingerprint of the shared operand bytes of a warp's op (A rows row0.., B) and the extent of
/// each operand (`which`: 0 A, 1 B).
struct Footprint {
  uint64_t print = 0xcbf29ce484222325ull;
  const unsigned char *lo[2] = {}, *hi[2] = {};
  // not seen by ThreadSanitizer, like every operand read of the emulation (wgmma_fn): the
  // hazards of wgmma's asynchronous reads are the simulator's own checks
  STRATA_SIM_NO_TSAN void add(const unsigned char* p, int which) {
    print = (print ^ (uint64_t(p[0]) | uint64_t(p[1]) << 8)) * 0x100000001b3ull;
    lo[which] = !lo[which] || p < lo[which] ? p : lo[which];
    hi[which] = !hi[which] || p + 2 > hi[which] ? p + 2 : hi[which];
  }
};
STRATA_SIM_NO_TSAN inline Footprint footprint(Thread& t, const detail::PendingWgmma& p, int n) {
  Footprint fp;
  if (p.desc_a)
    for_each_operand(t, p.desc_a, p.trans_a, p.row0, 16, "A",
                     [&](int, int, const unsigned char* q) STRATA_SIM_NO_TSAN { fp.add(q, 0); });
  for_each_operand(t, p.desc_b, p.trans_b, 0, n, "B",
                   [&](int, int, const unsigned char* q) STRATA_SIM_NO_TSAN { fp.add(q, 1); });
  return fp;
}

/// The latest op of thread `t` still pending on the accumulators at `acc`, or null.
STRATA_SIM_NO_TSAN inline const detail::PendingWgmma* latest_on(const Thread& t, const float* acc) {
  for (size_t i = t.wg_pending.size(); i-- > 0;)
    if (t.wg_pending[i].acc == acc) return &t.wg_pending[i];
  return nullptr;
}

}  // namespace wgmma_detail

/// Completes a warp's wgmma: gathers A (its 16 rows) and B, multiplies, leaves per-lane results.
STRATA_SIM_NO_TSAN STRATA_SIM_NO_TRAFFIC inline void wgmma_fn(Thread* lanes, unsigned mask) {
  namespace D = wgmma_detail;
  Thread& first = lanes[__builtin_ctz(mask)];
  auto& st = *static_cast<detail::WgmmaStage*>(first.wio);
  if (mask != 0xffffffffu)
    detail::fault_at(first, first.site,
                     "wgmma.mma_async.sync.aligned needs all 32 lanes of the warp");
  for (int l = 1; l < 32; ++l)
    if (st.lane[l] != st.lane[0])
      detail::fault_at(lanes[l], lanes[l].site,
                       "wgmma operands (descriptors, shape, flags) differ across the lanes of a "
                       "warp");
  const detail::WgmmaStage::Params& op = st.lane[0];
  const int w = first.warp % 4, n = op.n;
  float A[16][16], B[256][16];
  D::Footprint fp;
  Block& b = *detail::g_block;
  // the async proxy reads shared memory: generic writes (stmatrix, store16) need a
  // fence.proxy.async by their writer since
  auto read = [&](const unsigned char* p, int which) STRATA_SIM_NO_TSAN {
    fp.add(p, which);
    const uintptr_t a = reinterpret_cast<uintptr_t>(p);
    if (b.stp) {
      const uint64_t stamp = b.stp[(a - detail::g_smem_lo) / 16];
      if (stamp && b.tp[(stamp >> 32) - 1].proxy_fences == uint32_t(stamp))
        detail::fault_at(
            first, first.site,
            "wgmma reads " + hopper_detail::where(p) + ", which " +
                detail::who(b.tp[(stamp >> 32) - 1]) +
                " wrote (stmatrix or st.shared) and has not ordered for the async proxy "
                "since: fence.proxy.async is missing between the write and the "
                "wgmma");
    }
    uint16_t v;
    std::memcpy(&v, p, 2);
    return D::elem(v, op.bf16);
  };
  if (!op.rs) {
    D::for_each_operand(first, op.desc_a, op.trans_a, 16 * w, 16, "A",
                        [&](int r, int k, const unsigned char* p)
                            STRATA_SIM_NO_TSAN { A[r - 16 * w][k] = read(p, 0); });
  } else {
    for (int l = 0; l < 32; ++l)  // the A-register map (arch/wgmma_layout.hpp: a_row, a_col)
      for (int v = 0; v < 8; ++v) {
        const uint32_t reg = st.a[l][v / 2];
        const uint32_t bits = v % 2 ? reg >> 16 : reg & 0xffffu;
        A[arch::wgmma::a_row(l, v)][arch::wgmma::a_col(l, v)] = D::elem(bits, op.bf16);
      }
  }
  D::for_each_operand(first, op.desc_b, op.trans_b, 0, n, "B",
                      [&](int r, int k, const unsigned char* p)
                          STRATA_SIM_NO_TSAN { B[r][k] = read(p, 1); });
  st.print = fp.print;
  for (int i = 0; i < 2; ++i) st.lo[i] = fp.lo[i], st.hi[i] = fp.hi[i];
  // C = A B^T over the warp's 16 rows, in double (exact products; independent accumulators
  // along N, so the compiler vectorises), then each lane's accumulator added and rounded once
  wgmma_detail::OffsetCache& scratch = wgmma_detail::worker_scratch();
  auto& Bt = scratch.bt;
  auto& C = scratch.c;
  for (int c = 0; c < n; ++c)
    for (int k = 0; k < 16; ++k) Bt[k][c] = double(B[c][k]);
  for (int r = 0; r < 16; ++r)
    for (int c0 = 0; c0 < n; c0 += 8) {  // eight columns in two 4-wide registers
      Double4 acc0 = {0, 0, 0, 0}, acc1 = {0, 0, 0, 0};
      for (int k = 0; k < 16; ++k) {
        const double a = double(A[r][k]);
        Double4 b0, b1;
        std::memcpy(&b0, &Bt[k][c0], sizeof b0);
        std::memcpy(&b1, &Bt[k][c0 + 4], sizeof b1);
        acc0 += a * b0;
        acc1 += a * b1;
      }
      std::memcpy(&C[r][c0], &acc0, sizeof acc0);
      std::memcpy(&C[r][c0 + 4], &acc1, sizeof acc1);
    }
  for (int l = 0; l < 32; ++l)
    for (int v = 0; v < n / 2; ++v) {
      const double dot = C[arch::wgmma::acc_row(l, v)][arch::wgmma::acc_col(l, v)];
      st.out[l][v] = float(op.accumulate ? double(st.old[l][v]) + dot : dot);
    }
  b.ctr.wgmma_flops += uint64_t(2) * 16 * 16 * uint64_t(n);
}

namespace wgmma_detail {
/// .aligned: op number `index` of each warp of a warpgroup has the same shape, descriptors and
/// flags as the first warp's.
STRATA_SIM_NO_TSAN inline void check_aligned(Thread& t, const detail::WgmmaStage::Params& op,
                                             uint64_t index, const ::strata::Site& s) {
  Block& b = *detail::g_block;
  detail::WgmmaLogEntry& e = b.wg_log[t.warp / 4][index % 64];
  if (e.index != index) {
    e.index = index;
    e.params = op;
    e.site = s;
    return;
  }
  if (e.params != op)
    detail::fault_at(t, s,
                     "wgmma #" + std::to_string(index) + " of warp " + std::to_string(t.warp) +
                         " differs from its warpgroup's first warp's (at " +
                         detail::site_str(e.site) +
                         ") in shape, descriptors or flags: wgmma is .aligned, the four warps "
                         "issue the same op");
}
}  // namespace wgmma_detail

/// wgmma.mma_async: acc (+)= A * B for this thread's part of the warpgroup's op. `a`: RS's A
/// registers, or null for SS (A through `desc_a`).
template <int N>
STRATA_SIM_NO_TSAN inline void wgmma(float (&acc)[N / 2], bool bf16, uint64_t desc_a,
                                     const uint32_t* a, uint64_t desc_b, bool accumulate,
                                     int trans_a, int trans_b, const ::strata::Site& s) {
  static_assert(N % 8 == 0 && N >= 8 && N <= 256, "wgmma: N is a multiple of 8 in 8..256");
  Thread& t = *detail::g_cur;
  Block& b = *detail::g_block;
  t.site = s;
  if (b.n % 128)
    detail::fault_at(t, s,
                     "wgmma in a block of " + std::to_string(b.n) +
                         " threads: it is issued by whole warpgroups of 128");
  if (t.wg_fences == t.wg_fences_at_wait)
    detail::fault_at(t, s,
                     t.wg_fences == 0
                         ? std::string("wgmma with no wgmma.fence before it")
                         : std::string("wgmma with no wgmma.fence since this thread's last "
                                       "wgmma.wait_group: register accesses since are not "
                                       "ordered before the op"));
  detail::WgmmaStage& st = b.wsp[t.warp];
  b.hopper_used = true;
  if (a) std::memcpy(st.a[t.lane], a, sizeof st.a[t.lane]);
  const detail::PendingWgmma* prev = wgmma_detail::latest_on(t, acc);
  std::memcpy(st.old[t.lane], prev ? prev->vals : acc, sizeof(float) * (N / 2));
  detail::WgmmaStage::Params& mine = st.lane[t.lane];
  mine.desc_a = desc_a;
  mine.desc_b = desc_b;
  mine.n = N;
  mine.bf16 = bf16;
  mine.rs = a != nullptr;
  mine.accumulate = accumulate;
  mine.trans_a = trans_a;
  mine.trans_b = trans_b;
  const detail::WgmmaStage::Params params = mine;
  detail::warp_collective(detail::kWgmma, 0xffffffffu, &wgmma_fn, &st, s, true,
                          &Counters::wgmma_collectives);
  if (t.lane == 0) wgmma_detail::check_aligned(t, params, b.wp[t.warp].wgmma_ops++, s);
  detail::PendingWgmma p;
  p.acc = acc;
  p.n = N / 2;
  std::memcpy(p.vals, st.out[t.lane], sizeof(float) * (N / 2));
  p.a = a;
  if (a) std::memcpy(p.a_copy, a, sizeof p.a_copy);
  p.desc_a = a ? 0 : desc_a;
  p.desc_b = desc_b;
  p.trans_a = trans_a;
  p.trans_b = trans_b;
  p.row0 = 16 * (t.warp % 4);
  p.bf16 = bf16;
  p.print = st.print;
  p.site = s;
  p.serial = ++t.wg_serial;
  if (t.lane == 0) {  // the warp's operand bytes are in flight until lane 0 retires the op
    if (b.n_wg_fp == detail::kMaxWgmmaFootprints)
      detail::fault_at(t, s,
                       "more than " + std::to_string(detail::kMaxWgmmaFootprints) +
                           " wgmmas in flight in one block (the simulator's limit)");
    detail::WgmmaFootprint& f = b.wg_fp[b.n_wg_fp++];
    for (int i = 0; i < 2; ++i) f.lo[i] = st.lo[i], f.hi[i] = st.hi[i];
    f.owner = &t;
    f.serial = p.serial;
    f.site = s;
  }
  t.wg_pending.push_back(p);
  std::memset(acc, 0xFF, sizeof(float) * (N / 2));  // NaN until the wait
}

/// wgmma.fence: register accesses before it are ordered before the wgmmas after it.
STRATA_SIM_NO_TSAN inline void wgmma_fence(const ::strata::Site&) {
  ++detail::g_cur->wg_fences;
}

/// wgmma.commit_group: the ops issued since the last commit become a group.
STRATA_SIM_NO_TSAN inline void wgmma_commit(const ::strata::Site&) {
  Thread& t = *detail::g_cur;
  bool any = false;
  for (auto& p : t.wg_pending)
    if (p.group < 0) p.group = t.wg_next_group, any = true;
  if (any) ++t.wg_next_group;
}

/// wgmma.wait_group N: retires every op of the groups older than the N newest: checks that its
/// operands did not change and its accumulators were not written, then writes its results.
STRATA_SIM_NO_TSAN inline void wgmma_wait(int n, const ::strata::Site& s) {
  Thread& t = *detail::g_cur;
  Block& b = *detail::g_block;
  t.wg_fences_at_wait = t.wg_fences;
  const int limit = t.wg_next_group - n;  // groups below it retire
  // An op about to retire has been in flight until now, and on hardware it may stay in flight
  // for as long as the rest of the block keeps running: every other thread that can run does so
  // first (until it blocks, finishes or parks here too), and of the threads parked here the one
  // that parked last goes on first, so the oldest op in flight stays in flight longest. What
  // other warps do meanwhile, a TMA refill, a stmatrix or a plain store into its operands, then
  // meets its footprint and its operands' checksum (e.g. a double buffer cut to one). Without
  // this a warpgroup's commit and wait were one step of the schedule.
  for (const detail::PendingWgmma& p : t.wg_pending)
    if (p.group >= 0 && p.group < limit) {
      if (b.rq_count > 0) {  // parked: rq_pop resumes it when nothing else can run
        t.park_below = b.wg_park_top;
        b.wg_park_top = int(&t - b.tp);
        t.st = ThreadState::kRunnable;
        detail::switch_out(t);
      }
      break;
    }
  size_t kept = 0;
  for (size_t i = 0; i < t.wg_pending.size(); ++i) {
    detail::PendingWgmma& p = t.wg_pending[i];
    if (p.group < 0 || p.group >= limit) {
      t.wg_pending[kept++] = p;
      continue;
    }
    // built only for a fault: a string per retired op would dominate the emulation's cost
    auto issued = [&] { return " (the wgmma issued at " + detail::site_str(p.site) + ")"; };
    if (p.a && std::memcmp(p.a, p.a_copy, sizeof p.a_copy) != 0)
      detail::fault_at(
          t, s,
          "the A registers of a wgmma were overwritten before its wgmma.wait_group" + issued());
    for (int v = 0; v < p.n; ++v) {
      uint32_t bits;
      std::memcpy(&bits, &p.acc[v], 4);
      if (bits != 0xffffffffu)
        detail::fault_at(
            t, s, "the accumulators of a wgmma were written while it was in flight" + issued());
    }
    if (t.lane == 0) {
      for (int k = 0; k < b.n_wg_fp; ++k)
        if (b.wg_fp[k].owner == &t && b.wg_fp[k].serial == p.serial) {
          b.wg_fp[k] = b.wg_fp[--b.n_wg_fp];
          break;
        }
      if (wgmma_detail::footprint(t, p, 2 * p.n).print != p.print)
        detail::fault_at(
            t, s, "a shared operand of a wgmma changed before its wgmma.wait_group" + issued());
    }
    // a later op on the same accumulators (retiring now or still pending) supersedes this
    // one's values: the registers keep the poison until the last op of the chain is retired
    bool superseded = false;
    for (size_t j = i + 1; j < t.wg_pending.size(); ++j) superseded |= t.wg_pending[j].acc == p.acc;
    if (!superseded) std::memcpy(p.acc, p.vals, sizeof(float) * size_t(p.n));
  }
  t.wg_pending.resize(kept);
}

/// An accumulator object dies: no op on it may be in flight.
STRATA_SIM_NO_TSAN inline void wgmma_acc_dies(const float* acc) {
  Thread* t = detail::g_cur;
  if (!t || !detail::g_block) return;  // host code
  if (const detail::PendingWgmma* p = wgmma_detail::latest_on(*t, acc))
    detail::fault_at(*t, p->site,
                     "the accumulators of this wgmma went out of scope while it was in flight "
                     "(no wgmma.wait_group retired it)");
}

}  // namespace strata::sim::emu
