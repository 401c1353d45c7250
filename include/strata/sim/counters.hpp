/// \file
/// Simulator counters: what a launch did, for performance work and for tests that assert on it
/// (e.g. that a kernel issued the analytic number of mma instructions).
#pragma once

#include <cstdint>
#include <mutex>

namespace strata::sim {

/// Warp-wide shared-memory requests (sim/access_model.hpp has the bank model).
struct SmemStats {
  uint64_t requests = 0;    ///< warp-wide instructions
  uint64_t bytes = 0;       ///< bytes the lanes accessed (a broadcast word counts per lane)
  uint64_t wavefronts = 0;  ///< shared-memory cycles the requests took
  uint64_t conflicts = 0;   ///< wavefronts beyond the conflict-free count (bank conflicts)
  SmemStats& operator+=(const SmemStats& o) {
    requests += o.requests;
    bytes += o.bytes;
    wavefronts += o.wavefronts;
    conflicts += o.conflicts;
    return *this;
  }
};

/// Warp-wide global-memory requests to watched memory (sim/traffic.hpp).
struct GmemStats {
  uint64_t requests = 0;  ///< warp-wide instructions
  uint64_t bytes = 0;     ///< distinct bytes each request touched, summed over requests
  uint64_t sectors = 0;   ///< 32-byte sectors each request touched, summed over requests
  /// Useful bytes per byte moved: 1 when every sector a request touches is fully used.
  double sector_efficiency() const {
    return sectors ? double(bytes) / (32.0 * double(sectors)) : 1.0;
  }
  GmemStats& operator+=(const GmemStats& o) {
    requests += o.requests;
    bytes += o.bytes;
    sectors += o.sectors;
    return *this;
  }
};

/// Event counts of one launch (or, summed, of many).
struct Counters {
  uint64_t launches = 0;          ///< kernel launches
  uint64_t blocks = 0;            ///< thread blocks executed
  uint64_t threads = 0;           ///< CUDA threads executed
  uint64_t barriers = 0;          ///< completed block-wide barriers (__syncthreads)
  uint64_t barrier_arrivals = 0;  ///< thread arrivals at block-wide barriers
  uint64_t warp_collectives = 0;  ///< completed warp collectives of any kind
  uint64_t shuffles = 0;          ///< completed __shfl*_sync collectives
  uint64_t votes = 0;             ///< completed __ballot/__any/__all collectives
  uint64_t syncwarps = 0;         ///< completed __syncwarp collectives
  uint64_t ldmatrix = 0;          ///< emulated ldmatrix (warp-level)
  uint64_t mma = 0;               ///< emulated mma.sync (warp-level)
  uint64_t cp_async = 0;          ///< cp.async copies issued (per thread)
  uint64_t cp_async_bytes = 0;    ///< bytes requested by those copies
  uint64_t fiber_switches = 0;    ///< context switches between fibers
  /// Bytes read from / written to watched global memory (sim/traffic.hpp); 0 outside a
  /// traffic build.
  uint64_t global_load_bytes = 0;
  uint64_t global_store_bytes = 0;
  /// Shared-memory requests: emulated ldmatrix in every build (in smem_load); plain loads and
  /// stores and cp.async's shared side (in smem_store) in a traffic build with
  /// Options::access_profile set.
  SmemStats smem_load, smem_store;
  /// Global requests to watched memory, in a traffic build with Options::access_profile set:
  /// plain loads, plain stores (atomics count here), and cp.async's global side.
  GmemStats gmem_load, gmem_store, gmem_cp_async;
  /// Special-function unit operations per thread (exp2, log2, rcp, rsqrt, sin, cos through
  /// strata/arch/sfu.hpp).
  uint64_t sfu = 0;
  /// Hopper synchronisation (sim/hopper_sync.hpp): mbarrier arrivals (arrive, arrive.expect_tx;
  /// complete_tx is not an arrival), try_wait calls, completed mbarrier phases, completed named
  /// barrier phases, elect.sync, stmatrix and setmaxnreg collectives, fence.proxy.async.
  uint64_t mbarrier_arrivals = 0, mbarrier_waits = 0, mbarrier_phases = 0;
  uint64_t named_barriers = 0, elects = 0, stmatrix = 0, setmaxnreg = 0, proxy_fences = 0;
  /// TMA (sim/tma.hpp): loads and stores issued, and the bytes of their boxes.
  uint64_t tma_loads = 0, tma_load_bytes = 0, tma_stores = 0, tma_store_bytes = 0;
  /// wgmma (sim/wgmma.hpp): warp collectives (four per warpgroup op), and their FLOPs.
  uint64_t wgmma_collectives = 0, wgmma_flops = 0;

  Counters& operator+=(const Counters& o) {
    launches += o.launches;
    blocks += o.blocks;
    threads += o.threads;
    barriers += o.barriers;
    barrier_arrivals += o.barrier_arrivals;
    warp_collectives += o.warp_collectives;
    shuffles += o.shuffles;
    votes += o.votes;
    syncwarps += o.syncwarps;
    ldmatrix += o.ldmatrix;
    mma += o.mma;
    cp_async += o.cp_async;
    cp_async_bytes += o.cp_async_bytes;
    fiber_switches += o.fiber_switches;
    global_load_bytes += o.global_load_bytes;
    global_store_bytes += o.global_store_bytes;
    smem_load += o.smem_load;
    smem_store += o.smem_store;
    gmem_load += o.gmem_load;
    gmem_store += o.gmem_store;
    gmem_cp_async += o.gmem_cp_async;
    sfu += o.sfu;
    mbarrier_arrivals += o.mbarrier_arrivals;
    mbarrier_waits += o.mbarrier_waits;
    mbarrier_phases += o.mbarrier_phases;
    named_barriers += o.named_barriers;
    elects += o.elects;
    stmatrix += o.stmatrix;
    setmaxnreg += o.setmaxnreg;
    proxy_fences += o.proxy_fences;
    tma_loads += o.tma_loads;
    tma_load_bytes += o.tma_load_bytes;
    tma_stores += o.tma_stores;
    tma_store_bytes += o.tma_store_bytes;
    wgmma_collectives += o.wgmma_collectives;
    wgmma_flops += o.wgmma_flops;
    return *this;
  }
};

namespace detail {
struct CounterStore {
  std::mutex mu;
  Counters last, total;
};
inline CounterStore& counter_store() {
  static CounterStore s;
  return s;
}
inline void publish_launch_counters(const Counters& c) {
  auto& s = counter_store();
  std::lock_guard<std::mutex> lk(s.mu);
  s.last = c;
  s.total += c;
}
}  // namespace detail

/// Counters of the most recent launch (complete once strata::launch has returned).
inline Counters last_launch_counters() {
  auto& s = detail::counter_store();
  std::lock_guard<std::mutex> lk(s.mu);
  return s.last;
}
/// Counters summed over all launches since the start or the last reset_counters().
inline Counters total_counters() {
  auto& s = detail::counter_store();
  std::lock_guard<std::mutex> lk(s.mu);
  return s.total;
}
/// Zeroes both the last-launch and the total counters.
inline void reset_counters() {
  auto& s = detail::counter_store();
  std::lock_guard<std::mutex> lk(s.mu);
  s.last = Counters{};
  s.total = Counters{};
}

}  // namespace strata::sim
