/// \file
/// How the memory system serves one warp-wide access: shared-memory wavefronts and bank
/// conflicts, global-memory 32-byte sectors. Pure functions of the lanes' addresses, used by the
/// simulator's counters (emulated ldmatrix in every build; plain loads and stores, and cp.async,
/// in a traffic build: sim/traffic.hpp) and testable on their own.
///
/// Shared memory (the model of NVIDIA's shared-memory documentation and of Nsight Compute's
/// "wavefronts"): 32 banks of 4-byte words, bank = (address / 4) mod 32. A warp-wide request is
/// served in phases of lanes — all 32 lanes for accesses of up to 4 bytes, half-warps for 8-byte
/// accesses, quarter-warps for 16-byte accesses; ldmatrix serves one 8x8 matrix (its 8 row
/// addresses of 16 bytes) per phase. A phase takes as many wavefronts as the most distinct words
/// any one bank must deliver (lanes reading the same word share it: a broadcast costs nothing). A
/// phase without a conflict takes ceil(distinct words / 32) wavefronts, at least 1; the excess
/// over that is the bank-conflict count. So a conflict-free request moves 128 bytes per wavefront.
///
/// Global memory: a request touches the distinct 32-byte sectors that its lanes' bytes fall in;
/// its sector efficiency is the distinct bytes requested over 32 bytes per sector.
///
/// Limits: the host compiler decides the width of each plain access in the simulator (nvcc may
/// vectorise differently: 128-bit loads where g++ emits two 64-bit ones, say); ldmatrix and
/// cp.async have their PTX widths. Nothing here models latency, caches or in-flight limits.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <unordered_map>
#include <vector>

#include "strata/sim/counters.hpp"
#include "strata/sim/sanitizers.hpp"

namespace strata::sim {

/// One lane's part of a warp-wide access: `bytes` from `addr` (bytes == 0: lane inactive).
struct LaneAccess {
  uintptr_t addr = 0;
  uint32_t bytes = 0;
};

/// Wavefronts of one warp-wide shared-memory request and how many of them are bank conflicts.
struct SmemCost {
  uint32_t wavefronts = 0;
  uint32_t conflicts = 0;  ///< wavefronts beyond the conflict-free count
};

namespace detail {
/// One phase: lanes [first, first + count) of `lanes`.
STRATA_SIM_NO_TRAFFIC inline SmemCost smem_phase(const LaneAccess* lanes, int first, int count) {
  // the distinct words of the phase (at most 8 lanes x 4 words or 32 lanes x 2 words = 64)
  uintptr_t words[64];
  int nw = 0;
  for (int l = first; l < first + count; ++l) {
    const LaneAccess& a = lanes[l];
    if (!a.bytes) continue;
    const uintptr_t w0 = a.addr >> 2, w1 = (a.addr + a.bytes - 1) >> 2;
    for (uintptr_t w = w0; w <= w1; ++w) {
      bool seen = false;
      for (int i = 0; i < nw && !seen; ++i) seen = words[i] == w;
      if (!seen && nw < 64) words[nw++] = w;
    }
  }
  if (nw == 0) return {};
  uint32_t per_bank[32] = {};
  uint32_t most = 0;
  for (int i = 0; i < nw; ++i) most = std::max(most, ++per_bank[words[i] & 31]);
  const uint32_t ideal = uint32_t((nw + 31) / 32);
  return {most, most - ideal};
}
}  // namespace detail

/// A warp-wide ld/st.shared (or the shared side of cp.async) whose lanes access `lanes[0..31]`:
/// phases of 32, 16 or 8 lanes by the widest lane access (<= 4, 8, 16 bytes).
STRATA_SIM_NO_TRAFFIC inline SmemCost smem_request_cost(const LaneAccess (&lanes)[32]) {
  uint32_t width = 0;
  for (const auto& a : lanes) width = std::max(width, a.bytes);
  const int phase = width <= 4 ? 32 : width <= 8 ? 16 : 8;
  SmemCost c;
  for (int first = 0; first < 32; first += phase) {
    const SmemCost p = detail::smem_phase(lanes, first, phase);
    c.wavefronts += p.wavefronts;
    c.conflicts += p.conflicts;
  }
  return c;
}

/// ldmatrix .x`num`: matrix i's rows are the 16 bytes at rows[8i .. 8i+7], one phase each.
STRATA_SIM_NO_TRAFFIC inline SmemCost ldmatrix_cost(const unsigned char* const* rows, int num) {
  LaneAccess lanes[32];
  for (int l = 0; l < 8 * num; ++l) lanes[l] = {reinterpret_cast<uintptr_t>(rows[l]), 16};
  SmemCost c;
  for (int i = 0; i < num; ++i) {
    const SmemCost p = detail::smem_phase(lanes, 8 * i, 8);
    c.wavefronts += p.wavefronts;
    c.conflicts += p.conflicts;
  }
  return c;
}

/// Global sectors of one warp-wide request: distinct 32-byte sectors and distinct bytes touched.
struct SectorCost {
  uint32_t sectors = 0;
  uint32_t bytes = 0;
};
STRATA_SIM_NO_TRAFFIC inline SectorCost gmem_request_cost(const LaneAccess (&lanes)[32]) {
  // distinct byte ranges: sort the lanes' [addr, addr + bytes) and sweep
  LaneAccess a[32];
  int n = 0;
  for (const auto& l : lanes)
    if (l.bytes) a[n++] = l;
  std::sort(a, a + n, [](const LaneAccess& x, const LaneAccess& y) { return x.addr < y.addr; });
  SectorCost c;
  uintptr_t covered = 0;  // bytes below this are counted
  uintptr_t last_sector = ~uintptr_t(0);
  for (int i = 0; i < n; ++i) {
    const uintptr_t lo = std::max(a[i].addr, covered), hi = a[i].addr + a[i].bytes;
    if (hi <= lo) continue;
    c.bytes += uint32_t(hi - lo);
    for (uintptr_t s = lo >> 5; s <= (hi - 1) >> 5; ++s)
      if (s != last_sector) {
        ++c.sectors;
        last_sector = s;
      }
    covered = hi;
  }
  return c;
}

namespace detail {

#if STRATA_SIM_TRAFFIC
/// Per OS thread: the traffic callbacks count and log (between traffic_begin and traffic_end,
/// off while the simulator tallies). volatile: see sim/traffic.hpp.
inline thread_local volatile bool g_traffic_on = false;
#endif
/// Per OS thread: the shared memory of the block it runs, dynamic and static (named
/// thread-locals, which a traffic build does not instrument).
inline thread_local uintptr_t g_smem_lo = 0, g_smem_hi = 0, g_static_smem_lo = 0,
                              g_static_smem_hi = 0;
/// Per OS thread: Options::access_profile of the running launch.
inline thread_local bool g_access_profile = false;
STRATA_SIM_NO_TRAFFIC inline bool in_shared(uintptr_t a) {
  return (a >= g_smem_lo && a < g_smem_hi) || (a >= g_static_smem_lo && a < g_static_smem_hi);
}

/// What a logged access was.
enum AccessKind : uint8_t { kSmemLoad, kSmemStore, kGmemLoad, kGmemStore, kGmemCpAsync, kKinds };

/// One access of one thread, keyed by the instruction that made it (a return address in the
/// kernel's code, or a tagged cp.async site).
struct AccessRec {
  uintptr_t key;
  uintptr_t addr;
  uint32_t bytes;
  uint8_t kind;
};

/// A thread's accesses since its warp's last tally. A raw buffer: the traffic callbacks append
/// to it and must not call instrumented code (std::vector's inline members would be).
struct AccessLog {
  AccessRec* p = nullptr;
  size_t n = 0, cap = 0;
  AccessLog() = default;
  AccessLog(const AccessLog&) : AccessLog() {}  // a copied Thread starts with an empty log
  AccessLog& operator=(const AccessLog&) {
    n = 0;
    return *this;
  }
  ~AccessLog() { std::free(p); }
  STRATA_SIM_NO_TRAFFIC void push(uintptr_t key, uintptr_t addr, uint32_t bytes, uint8_t kind) {
    if (n == cap) {
      const size_t c = cap ? 2 * cap : 256;
      auto* q = static_cast<AccessRec*>(std::realloc(p, c * sizeof(AccessRec)));
      if (!q) std::abort();
      p = q;
      cap = c;
    }
    AccessRec* r = p + n++;
    r->key = key;
    r->addr = addr;
    r->bytes = bytes;
    r->kind = kind;
  }
};

/// Groups one warp's logged accesses into warp-wide requests and adds their cost to `c`; the
/// logs are emptied. The k-th execution of an instruction by each lane is one request (lanes
/// run an instruction together unless they diverge; a diverged path is its own instruction
/// anyway). Runs with the traffic callbacks off, so its own accesses are not logged.
inline void tally_warp(AccessLog* const (&lanes)[32], Counters& c) {
  struct Group {
    uint8_t kind;
    LaneAccess lanes[32];
  };
  std::vector<Group> groups;
  std::unordered_map<uintptr_t, std::vector<uint32_t>> by_key;  // key -> groups by occurrence
  std::unordered_map<uintptr_t, uint32_t> seen;                 // this lane's occurrences
  for (int l = 0; l < 32; ++l) {
    AccessLog* log = lanes[l];
    if (!log || !log->n) continue;
    seen.clear();
    for (size_t i = 0; i < log->n; ++i) {
      const AccessRec& r = log->p[i];
      const uintptr_t key = r.key * kKinds + r.kind;
      const uint32_t k = seen[key]++;
      auto& occ = by_key[key];
      if (occ.size() <= k) {
        occ.push_back(uint32_t(groups.size()));
        groups.push_back(Group{r.kind, {}});
      }
      groups[occ[k]].lanes[l] = {r.addr, r.bytes};
    }
    log->n = 0;
  }
  for (const Group& g : groups) {
    if (g.kind == kSmemLoad || g.kind == kSmemStore) {
      SmemStats& s = g.kind == kSmemLoad ? c.smem_load : c.smem_store;
      const SmemCost cost = smem_request_cost(g.lanes);
      ++s.requests;
      for (const auto& a : g.lanes) s.bytes += a.bytes;
      s.wavefronts += cost.wavefronts;
      s.conflicts += cost.conflicts;
    } else {
      GmemStats& s = g.kind == kGmemLoad    ? c.gmem_load
                     : g.kind == kGmemStore ? c.gmem_store
                                            : c.gmem_cp_async;
      const SectorCost cost = gmem_request_cost(g.lanes);
      ++s.requests;
      s.bytes += cost.bytes;
      s.sectors += cost.sectors;
    }
  }
}

}  // namespace detail
}  // namespace strata::sim
