/// \file
/// The simulator's state of Hopper's asynchronous synchronisation objects (sm_90): mbarriers in
/// shared memory, the CTA's sixteen named barriers, and the register pool that setmaxnreg draws
/// from. Data only; the operations are in sim/hopper_sync.hpp, the scheduling in sim/runtime.hpp.
///
/// The PTX ISA's model (section 9.7.13.15, mbarrier): a phase completes when its pending
/// arrival count and its transaction count (tx-count, bytes announced by expect_tx and
/// delivered by complete_tx) are both zero; the pending count then resets to the expected count
/// and the next phase begins. try_wait.parity names a phase by its parity alone, so it is
/// defined only for the current phase and the one before it.
#pragma once

#include <cstdint>

#include "strata/config.hpp"
#include "strata/sim/tma_box.hpp"

namespace strata::sim::detail {

/// Most mbarriers alive at once in one block (FA3's forward uses about a dozen).
inline constexpr int kMaxMbarriers = 64;
/// Named barriers of a CTA (0 is __syncthreads').
inline constexpr int kNamedBarriers = 16;
/// The 8 bytes of a live mbarrier in shared memory: this tag in the upper 56 bits, the slot
/// of its state in the low 8. A generic store over it (or no init) breaks the tag.
inline constexpr uint64_t kMbarrierTag = 0x5354524D42415200ull;  // "STRMBAR\0"

/// One live mbarrier.
struct MbarrierSlot {
  const void* addr = nullptr;  ///< its 8 bytes in shared memory; nullptr: the slot is free
  int64_t phase = 0;           ///< phases completed since init (the current phase's number)
  int32_t expected = 0;        ///< arrivals per phase (init's count)
  int32_t pending = 0;         ///< arrivals the current phase still needs
  int64_t tx = 0;              ///< transaction bytes the current phase still needs
  int waiters = 0;             ///< threads blocked in try_wait on this barrier
  ::strata::Site init_site{};
  ::strata::Site last_arrive{};  ///< the last arrival's call site (for deadlock reports)
  char tsan[4] = {};             ///< ThreadSanitizer sync objects, one per phase mod 4
};

/// One named barrier (bar.sync / bar.arrive with an id and a thread count).
struct NamedBarrier {
  int count = 0;                 ///< threads the current phase needs; 0: no phase open
  int arrived = 0;               ///< threads arrived in the current phase
  uint32_t phase = 0;            ///< completed phases
  ::strata::Site site{};         ///< the first arrival of the current phase
  unsigned warp_lanes[32] = {};  ///< lanes of each warp arrived in the current phase
  char tsan[4] = {};             ///< ThreadSanitizer sync objects, one per phase mod 4
};

/// setmaxnreg bookkeeping of one warp.
struct WarpRegisters {
  int regs = 0;        ///< per-thread registers the warp owns now
  int want = 0;        ///< a granted-pending setmaxnreg.inc's target (0: none)
  int ops = 0;         ///< setmaxnreg instructions completed by the warp
  int values[8] = {};  ///< the targets of the first eight (the warpgroup must agree)
  ::strata::Site site{};
};

/// Most TMA loads in flight at once in one block.
inline constexpr int kMaxTmaLoads = 256;

/// A TMA load issued and not landed: its destination reads as NaN (0xFF bytes) until the
/// barrier phase it completes is needed by a waiter; then the box lands and completes its bytes.
struct TmaLoad {
  unsigned char* dst = nullptr;
  uint32_t bytes = 0;
  int slot = 0;  ///< the mbarrier it completes transaction bytes on
  tma::SimEncoding map{};
  TmaCoords at{};
  ::strata::Site site{};
};

/// A TMA store issued by a thread and not yet read (cp.async.bulk.wait_group.read).
struct TmaStore {
  const unsigned char* src = nullptr;
  uint32_t bytes = 0;
  uint64_t print = 0;  ///< fingerprint of the source at issue
  tma::SimEncoding map{};
  TmaCoords at{};
  ::strata::Site site{};
};

/// A wgmma issued by a thread and not yet retired by wgmma.wait_group (sim/wgmma.hpp).
struct PendingWgmma {
  float* acc = nullptr;         ///< the accumulators it writes at the wait
  int n = 0;                    ///< floats per thread (N / 2)
  int group = -1;               ///< its wgmma group (-1: not committed yet)
  float vals[128];              ///< the results
  const uint32_t* a = nullptr;  ///< RS: the A registers, which must not change until the wait
  uint32_t a_copy[4] = {};
  uint64_t desc_a = 0, desc_b = 0;
  int trans_a = 0, trans_b = 0, row0 = 0, bf16 = 0;
  uint64_t print = 0;   ///< fingerprint of the shared operand bytes at issue (lane 0 only)
  uint64_t serial = 0;  ///< the issuing thread's count of wgmmas (the footprint's key)
  ::strata::Site site{};
};

/// One lane's part of a warp's wgmma, and the warp's results (sim/wgmma.hpp).
struct WgmmaStage {
  /// Each lane's parameters: lanes run ahead to their next op once this one completes, so
  /// nothing here is shared but the results.
  struct Params {
    uint64_t desc_a = 0, desc_b = 0;
    int n = 0, bf16 = 0, rs = 0, accumulate = 0, trans_a = 0, trans_b = 0;
    bool operator!=(const Params& o) const {
      return desc_a != o.desc_a || desc_b != o.desc_b || n != o.n || bf16 != o.bf16 || rs != o.rs ||
             accumulate != o.accumulate || trans_a != o.trans_a || trans_b != o.trans_b;
    }
  };
  Params lane[32];
  uint32_t a[32][4];
  float old[32][128];  ///< what each lane's accumulators hold for the op (a pending chain's values)
  float out[32][128];
  uint64_t print = 0;  ///< the completed op's operand fingerprint and extent
  const unsigned char *lo[2] = {}, *hi[2] = {};  ///< extents of A and B (WgmmaFootprint)
};

/// The first warp's view of a warpgroup's op number `index`, which the other three must match.
struct WgmmaLogEntry {
  uint64_t index = ~uint64_t(0);
  WgmmaStage::Params params;
  ::strata::Site site{};
};

/// Shared bytes a wgmma in flight reads: a TMA load into them is a fault.
struct WgmmaFootprint {
  /// The extents of the shared operands, [lo, hi) each: [0] A (null for RS), [1] B. Two, not
  /// their hull: a pipeline refills a stage that lies between an in-flight op's A and B.
  const unsigned char *lo[2] = {}, *hi[2] = {};
  const void* owner = nullptr;  ///< the lane 0 that issued it
  uint64_t serial = 0;          ///< its PendingWgmma::serial
  ::strata::Site site{};
};
inline constexpr int kMaxWgmmaFootprints = 256;

}  // namespace strata::sim::detail
