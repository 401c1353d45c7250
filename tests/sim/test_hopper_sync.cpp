// Hopper's synchronisation ops in the simulator (strata/arch/mbarrier.hpp, named_barrier.hpp,
// sm90.hpp, stmatrix.hpp): a warp-specialised pipeline shaped like FlashAttention-3's (a
// producer warp, two consumer warpgroups, mbarrier stages, named-barrier ping-pong, setmaxnreg)
// computes the right answer under every schedule, and each misuse the hardware would not report
// is a fault naming the kernel's line, under every schedule.
#include "common.hpp"

#include <algorithm>
#include <cstring>
#include <numeric>
#include <string>

namespace {

using strata::Status;
using strata::StatusCode;
namespace arch = strata::arch;

constexpr int kStages = 2, kTiles = 7, kTileFloats = 128;

struct PipeSmem {
  uint64_t full[kStages], empty[kStages];
  float tile[kStages][kTileFloats];
  int log[2 * kTiles];
  int nlog;
};

// The producer warp stands in for a TMA unit: the elected lane announces the stage's bytes
// (arrive.expect_tx), every lane stores its 16 bytes, completes them (complete_tx) and arrives
// (the release that publishes the stores). Consumers wait on `full`, read, and release the stage
// by one arrival per warp on `empty`. The two consumer warpgroups take turns through named
// barriers 1 and 2, as FA3's warpgroup ping-pong does; each logs its turn.
__global__ void __launch_bounds__(384, 1) ws_pipeline(const float* in, float* out, int* order) {
  STRATA_DYNAMIC_SMEM(PipeSmem, sm);
  const int wg = int(threadIdx.x) / 128, warp = int(threadIdx.x) / 32, lane = int(threadIdx.x) % 32;
  if (threadIdx.x == 0) {
    for (int s = 0; s < kStages; ++s) {
      arch::mbarrier_init(&sm->full[s], 33);
      arch::mbarrier_init(&sm->empty[s], 8);
    }
    sm->nlog = 0;
  }
  __syncthreads();
  if (wg == 0) {
    arch::setmaxnreg_dec<24>();
    if (warp != 0) return;
    for (int t = 0; t < kTiles; ++t) {
      const int s = t % kStages;
      arch::mbarrier_wait(&sm->empty[s], uint32_t((t / kStages) & 1) ^ 1u);
      if (arch::elect_one()) arch::mbarrier_arrive_expect_tx(&sm->full[s], kTileFloats * 4);
      for (int j = 0; j < 4; ++j) sm->tile[s][lane * 4 + j] = in[t * kTileFloats + lane * 4 + j];
      arch::mbarrier_complete_tx(&sm->full[s], 16);
      arch::mbarrier_arrive(&sm->full[s]);
    }
    return;
  }
  arch::setmaxnreg_inc<240>();
  const int c = wg - 1, ct = int(threadIdx.x) - 128 * wg;
  if (c == 1) arch::named_barrier_arrive(1, 256);  // consumer 0 takes the first turn
  for (int t = 0; t < kTiles; ++t) {
    const int s = t % kStages;
    arch::mbarrier_wait(&sm->full[s], uint32_t((t / kStages) & 1));
    out[(c * kTiles + t) * kTileFloats + ct] = 2.f * sm->tile[s][ct] + float(t);
    arch::syncwarp();
    if (arch::elect_one()) arch::mbarrier_arrive(&sm->empty[s]);
    arch::named_barrier_sync(1 + c, 256);
    if (ct == 0) sm->log[sm->nlog++] = c;
    if (c == 1 && ct == 0 && t == kTiles - 1)
      for (int i = 0; i < 2 * kTiles; ++i) order[i] = sm->log[i];
    arch::named_barrier_arrive(2 - c, 256);
  }
}

template <class... P, class... A>
Status run1(void (*k)(P...), unsigned threads, size_t smem, A... a) {
  return strata::launch(k, dim3(1), dim3(threads), smem, 0, a...);
}

class HopperSync : public strata_test::ScheduleTest {};

TEST_P(HopperSync, WarpSpecialisedPipeline) {
  std::vector<float> in(kTiles * kTileFloats), out(2 * kTiles * kTileFloats, -1.f);
  strata_test::Rng rng(7);
  for (float& v : in) v = rng.uniform();
  std::vector<int> order(2 * kTiles, -1);
  const Status s = run1(ws_pipeline, 384, sizeof(PipeSmem), in.data(), out.data(), order.data());
  ASSERT_TRUE(s.ok()) << s.message();
  for (int c = 0; c < 2; ++c)
    for (int t = 0; t < kTiles; ++t)
      for (int i = 0; i < kTileFloats; ++i)
        ASSERT_EQ(out[size_t((c * kTiles + t) * kTileFloats + i)],
                  2.f * in[size_t(t * kTileFloats + i)] + float(t))
            << "consumer " << c << " tile " << t << " element " << i;
  for (int i = 0; i < 2 * kTiles; ++i) EXPECT_EQ(order[size_t(i)], i % 2) << "turn " << i;
  const auto ctr = strata::sim::last_launch_counters();
  // full: 33 arrivals per tile; empty: 8 per tile
  EXPECT_EQ(ctr.mbarrier_arrivals, uint64_t(kTiles * (33 + 8)));
  EXPECT_EQ(ctr.mbarrier_phases, uint64_t(2 * kTiles));
  EXPECT_EQ(ctr.setmaxnreg, 12u);  // one per warp
  EXPECT_GE(ctr.named_barriers, uint64_t(2 * kTiles));
}

// elect.sync: one lane, the same for the same mask.
__global__ void elect_kernel(int* out) {
  const unsigned mask = threadIdx.x % 32 < 20 ? 0x000ffff0u | 0xfu : 0xfff00000u;
  out[threadIdx.x] = arch::elect_one(mask) ? 1 : 0;
}
TEST_P(HopperSync, ElectPicksOneLanePerMask) {
  std::vector<int> out(64, -1);
  ASSERT_TRUE(run1(elect_kernel, 64, 0, out.data()).ok());
  for (int w = 0; w < 2; ++w) {
    EXPECT_EQ(std::accumulate(out.begin() + 32 * w, out.begin() + 32 * w + 20, 0), 1);
    EXPECT_EQ(std::accumulate(out.begin() + 32 * w + 20, out.begin() + 32 * w + 32, 0), 1);
  }
  EXPECT_EQ(strata::sim::last_launch_counters().elects, 4u);
}

// stmatrix writes what the fragment map says, and ldmatrix of the result gives the registers
// back (the two maps are inverses).
template <int N, bool Trans>
__global__ void stmatrix_kernel(uint16_t* out, uint32_t* back) {
  __shared__ __align__(16) uint16_t tile[4 * 64];
  const int l = int(threadIdx.x);
  uint32_t r[N];
  for (int i = 0; i < N; ++i)
    r[i] = uint32_t(1000 * i + 2 * l) | (uint32_t(1000 * i + 2 * l + 1) << 16);
  void* row = &tile[(l / 8) * 64 + (l % 8) * 8];  // matrix l/8, row l%8 (lanes past 8N unused)
  arch::stmatrix<N, Trans>(row, r);
  arch::syncwarp();
  for (int i = l; i < 4 * 64; i += 32) out[i] = tile[i];
  uint32_t b[N];
  arch::ldmatrix<N, Trans>(b, row);
  for (int i = 0; i < N; ++i) back[l * N + i] = b[i];
}
template <int N, bool Trans>
void check_stmatrix() {
  std::vector<uint16_t> out(4 * 64, 0xffff);
  std::vector<uint32_t> back(32 * N, 0);
  ASSERT_TRUE(run1(stmatrix_kernel<N, Trans>, 32, 0, out.data(), back.data()).ok());
  for (int i = 0; i < N; ++i)
    for (int l = 0; l < 32; ++l)
      for (int h = 0; h < 2; ++h) {
        const int row = Trans ? 2 * (l % 4) + h : l / 4, col = Trans ? l / 4 : 2 * (l % 4) + h;
        EXPECT_EQ(out[size_t(i * 64 + row * 8 + col)], 1000 * i + 2 * l + h)
            << "N " << N << " trans " << Trans << " matrix " << i << " lane " << l;
      }
  for (int l = 0; l < 32; ++l)
    for (int i = 0; i < N; ++i)
      EXPECT_EQ(back[size_t(l * N + i)],
                uint32_t(1000 * i + 2 * l) | (uint32_t(1000 * i + 2 * l + 1) << 16));
}
TEST_P(HopperSync, StmatrixFollowsTheFragmentMapAndInvertsLdmatrix) {
  check_stmatrix<1, false>();
  check_stmatrix<2, false>();
  check_stmatrix<4, false>();
  check_stmatrix<1, true>();
  check_stmatrix<2, true>();
  check_stmatrix<4, true>();
}

// ------------------------------------------------------------------------------- faults
// The kernels below report their own lines: keep clang-format from moving them.
// clang-format off
#define MARK(name) constexpr int name = __LINE__ + 1

MARK(kNotFlippedLine);
__global__ void parity_not_flipped(int* out) {
  STRATA_DYNAMIC_SMEM(uint64_t, bar);
  if (threadIdx.x == 0) {
    arch::mbarrier_init(bar, 1);
    arch::mbarrier_arrive(bar);                   // phase 0 completes
    arch::mbarrier_wait(bar, 0);                  // sees phase 0
    arch::mbarrier_wait(bar, 0);                  // names phase 2: the hardware returns at once
    out[0] = 1;
  }
}

MARK(kStaleLine);
__global__ void stale_parity(int* out) {
  STRATA_DYNAMIC_SMEM(uint64_t, bar);
  if (threadIdx.x == 0) {
    arch::mbarrier_init(bar, 1);
    for (int i = 0; i < 3; ++i) arch::mbarrier_arrive(bar);  // phases 0, 1, 2 complete
  }
  arch::syncwarp();
  if (threadIdx.x == 1) arch::mbarrier_wait(bar, 0);  // wants phase 0; the barrier is in phase 3
  out[threadIdx.x] = 1;
}

MARK(kOverArrivalLine);
__global__ void over_arrival(int* out) {
  STRATA_DYNAMIC_SMEM(uint64_t, bar);
  if (threadIdx.x == 0) {
    arch::mbarrier_init(bar, 2);
    arch::mbarrier_arrive_expect_tx(bar, 64);
    arch::mbarrier_arrive(bar);  // all arrivals in, 64 bytes outstanding
    arch::mbarrier_arrive(bar);  // one arrival too many
  }
  out[threadIdx.x] = 1;
}

MARK(kTooManyBytesLine);
__global__ void too_many_bytes(int* out) {
  STRATA_DYNAMIC_SMEM(uint64_t, bar);
  if (threadIdx.x == 0) {
    arch::mbarrier_init(bar, 1);
    arch::mbarrier_arrive_expect_tx(bar, 64);
    arch::mbarrier_complete_tx(bar, 128);  // twice what expect_tx announced
  }
  out[threadIdx.x] = 1;
}

MARK(kUninitLine);
__global__ void wait_uninitialised(int* out) {
  STRATA_DYNAMIC_SMEM(uint64_t, bar);
  arch::mbarrier_wait(bar, 0);
  out[threadIdx.x] = 1;
}

MARK(kGenericStoreLine);
__global__ void generic_store_over_barrier(int* out) {
  STRATA_DYNAMIC_SMEM(uint64_t, bar);
  if (threadIdx.x == 0) {
    arch::mbarrier_init(bar, 1);
    *bar = 0;                     // a plain store over the barrier object
    arch::mbarrier_arrive(bar);
  }
  out[threadIdx.x] = 1;
}

MARK(kDoubleInitLine);
__global__ void double_init(int* out) {
  STRATA_DYNAMIC_SMEM(uint64_t, bar);
  if (threadIdx.x == 0) {
    arch::mbarrier_init(bar, 1);
    arch::mbarrier_init(bar, 2);
  }
  out[threadIdx.x] = 1;
}

MARK(kBadCountLine);
__global__ void init_count_zero(int* out) {
  STRATA_DYNAMIC_SMEM(uint64_t, bar);
  if (threadIdx.x == 0) arch::mbarrier_init(bar, 0);
  out[threadIdx.x] = 1;
}

MARK(kBytesNeverLine);
__global__ void bytes_never_arrive(int* out) {
  STRATA_DYNAMIC_SMEM(uint64_t, bar);
  if (threadIdx.x == 0) {
    arch::mbarrier_init(bar, 1);
    arch::mbarrier_arrive_expect_tx(bar, 4096);  // no copy ever completes these bytes
  }
  arch::syncwarp();
  arch::mbarrier_wait(bar, 0);
  out[threadIdx.x] = 1;
}

MARK(kInvalLine);
__global__ void inval_reused_as_data(int* out) {
  STRATA_DYNAMIC_SMEM(uint64_t, bar);
  if (threadIdx.x == 0) {
    arch::mbarrier_init(bar, 1);
    arch::mbarrier_inval(bar);
    arch::mbarrier_arrive(bar);  // the 8 bytes are ordinary memory again
  }
  out[threadIdx.x] = 1;
}

MARK(kNamedCountLine);
__global__ void named_count_mismatch(int* out) {
  if (threadIdx.x < 32) arch::named_barrier_sync(1, 64);  // launched with 96 threads
  else arch::named_barrier_sync(1, 96);
  out[threadIdx.x] = 1;
}

MARK(kNamedTwiceLine);
__global__ void named_arrive_twice(int* out) {
  if (threadIdx.x < 32) {  // launched with 128 threads: warp 3 never arrives
    arch::named_barrier_arrive(1, 128);
    arch::named_barrier_arrive(1, 128);  // the same warp counted twice in one phase
  } else if (threadIdx.x < 96) {
    arch::named_barrier_sync(1, 128);
  }
  out[threadIdx.x] = 1;
}

MARK(kNamedPartialLine);
__global__ void named_partial_warps(int* out) {
  if (threadIdx.x % 32 < 16) arch::named_barrier_sync(2, 32); else arch::named_barrier_sync(3, 32);
  out[threadIdx.x] = 1;
}

MARK(kNamedIdLine);
__global__ void named_barrier_zero(int* out) {
  arch::named_barrier_sync(0, 64);
  out[threadIdx.x] = 1;
}

MARK(kNamedOddCountLine);
__global__ void named_odd_count(int* out) {
  arch::named_barrier_sync(3, 48);
  out[threadIdx.x] = 1;
}

MARK(kNamedDeadlockLine);
__global__ void named_deadlock(int* out) {
  if (threadIdx.x < 32) arch::named_barrier_sync(4, 96);  // only 64 of the 96 threads arrive
  else if (threadIdx.x < 64) arch::named_barrier_arrive(4, 96);
  out[threadIdx.x] = 1;
}

MARK(kRegPoolLine);
__global__ void register_pool_exhausted(int* out) {
  arch::setmaxnreg_inc<256>();  // nobody releases registers
  out[threadIdx.x] = 1;
}

MARK(kRegDisagreeLine);
__global__ void warpgroup_disagrees(int* out) {
  if (threadIdx.x < 64) arch::setmaxnreg_dec<40>();
  else arch::setmaxnreg_dec<32>();
  out[threadIdx.x] = 1;
}

MARK(kRegPartialLine);
__global__ void warpgroup_partial(int* out) {
  if (threadIdx.x < 32) arch::setmaxnreg_dec<40>();  // warps 1..3 of the warpgroup never do
  out[threadIdx.x] = 1;
}

MARK(kRegIncBelowLine);
__global__ void inc_below_current(int* out) {
  arch::setmaxnreg_inc<32>();  // below the entry count
  out[threadIdx.x] = 1;
}

MARK(kRegBlockLine);
__global__ void setmaxnreg_partial_warpgroup_block(int* out) {
  arch::setmaxnreg_dec<40>();
  out[threadIdx.x] = 1;
}

MARK(kStmatrixLine);
__global__ void stmatrix_misaligned(int* out) {
  __shared__ __align__(16) uint16_t tile[8 * 16 + 8];
  const uint32_t r[1] = {threadIdx.x};
  arch::stmatrix<1, false>(&tile[int(threadIdx.x % 8) * 16 + 4], r);  // 8-byte offset
  out[threadIdx.x] = 1;
}
// clang-format on

void expect_fault(const Status& s, const char* needle, int line) {
  strata_test::expect_kernel_fault(s, needle, "test_hopper_sync.cpp", line);
}

std::vector<int> g_out(1024);

TEST_P(HopperSync, ParityNotFlipped) {
  expect_fault(run1(parity_not_flipped, 32, 8, g_out.data()), "parity was not flipped",
               kNotFlippedLine + 6);
}
TEST_P(HopperSync, StaleParityAfterTheBarrierMovedOn) {
  expect_fault(run1(stale_parity, 32, 8, g_out.data()), "already in phase 3", kStaleLine + 7);
}
TEST_P(HopperSync, OverArrival) {
  expect_fault(run1(over_arrival, 32, 8, g_out.data()), "waits only for transaction bytes",
               kOverArrivalLine + 6);
}
TEST_P(HopperSync, MoreBytesCompletedThanAnnounced) {
  expect_fault(run1(too_many_bytes, 32, 8, g_out.data()), "64 more transaction bytes",
               kTooManyBytesLine + 5);
}
TEST_P(HopperSync, WaitOnUninitialisedBarrier) {
  expect_fault(run1(wait_uninitialised, 32, 8, g_out.data()), "not initialised", kUninitLine + 2);
}
TEST_P(HopperSync, GenericStoreOverBarrier) {
  expect_fault(run1(generic_store_over_barrier, 32, 8, g_out.data()), "generic store",
               kGenericStoreLine + 5);
}
TEST_P(HopperSync, InitOfALiveBarrier) {
  expect_fault(run1(double_init, 32, 8, g_out.data()), "mbarrier.inval first", kDoubleInitLine + 4);
}
TEST_P(HopperSync, InitCountOutOfRange) {
  expect_fault(run1(init_count_zero, 32, 8, g_out.data()), "outside [1, 2^20 - 1]",
               kBadCountLine + 2);
}
TEST_P(HopperSync, DeadlockShowsTheTransactionCount) {
  const Status s = run1(bytes_never_arrive, 32, 8, g_out.data());
  expect_fault(s, "deadlock", 0);
  const std::string m = s.message();
  EXPECT_NE(m.find("tx-count 4096 bytes"), std::string::npos) << m;
  EXPECT_NE(m.find("0 of 1 arrivals pending"), std::string::npos) << m;
  EXPECT_NE(m.find("mbarrier.try_wait for phase 0"), std::string::npos) << m;
  EXPECT_TRUE(strata_test::names_line(m, "test_hopper_sync.cpp", kBytesNeverLine + 7)) << m;
}
TEST_P(HopperSync, BarrierUsedAfterInval) {
  expect_fault(run1(inval_reused_as_data, 32, 8, g_out.data()), "not initialised", kInvalLine + 5);
}
TEST_P(HopperSync, NamedBarrierCountMismatch) {
  expect_fault(run1(named_count_mismatch, 96, 0, g_out.data()), "gave count", 0);
}
TEST_P(HopperSync, NamedBarrierArrivalTwiceInOnePhase) {
  expect_fault(run1(named_arrive_twice, 128, 0, g_out.data()), "arrives twice",
               kNamedTwiceLine + 3);
}
TEST_P(HopperSync, NamedBarrierCompletedByPartOfAWarp) {
  expect_fault(run1(named_partial_warps, 64, 0, g_out.data()), ".aligned", kNamedPartialLine + 1);
}
TEST_P(HopperSync, NamedBarrierZeroIsSyncthreads) {
  expect_fault(run1(named_barrier_zero, 64, 0, g_out.data()), "0 is __syncthreads",
               kNamedIdLine + 1);
}
TEST_P(HopperSync, NamedBarrierCountNotAMultipleOf32) {
  expect_fault(run1(named_odd_count, 64, 0, g_out.data()), "multiple of 32",
               kNamedOddCountLine + 1);
}
TEST_P(HopperSync, NamedBarrierDeadlockShowsArrivals) {
  const Status s = run1(named_deadlock, 96, 0, g_out.data());
  expect_fault(s, "deadlock", 0);
  const std::string m = s.message();
  EXPECT_NE(m.find("named barrier 4: 64 of 96 threads arrived"), std::string::npos) << m;
  EXPECT_NE(m.find("bar.sync 4"), std::string::npos) << m;
}
TEST_P(HopperSync, SetmaxnregIncWaitsForRegistersNobodyFrees) {
  const Status s = run1(register_pool_exhausted, 256, 0, g_out.data());
  expect_fault(s, "deadlock", 0);
  const std::string m = s.message();
  EXPECT_NE(m.find("setmaxnreg.inc to 256 registers per thread (from 248)"), std::string::npos)
      << m;
  EXPECT_NE(m.find("the CTA pool has 0 free registers"), std::string::npos) << m;
}
TEST_P(HopperSync, SetmaxnregWarpsOfAWarpgroupDisagree) {
  expect_fault(run1(warpgroup_disagrees, 128, 0, g_out.data()), "all warps of a warpgroup", 0);
}
TEST_P(HopperSync, SetmaxnregByPartOfAWarpgroup) {
  expect_fault(run1(warpgroup_partial, 128, 0, g_out.data()), "all warps of a warpgroup", 0);
}
TEST_P(HopperSync, SetmaxnregIncBelowCurrent) {
  expect_fault(run1(inc_below_current, 128, 0, g_out.data()), ".inc cannot lower it",
               kRegIncBelowLine + 1);
}
TEST_P(HopperSync, SetmaxnregNeedsWholeWarpgroups) {
  expect_fault(run1(setmaxnreg_partial_warpgroup_block, 96, 0, g_out.data()),
               "whole warpgroups of 128", kRegBlockLine + 1);
}
TEST_P(HopperSync, StmatrixMisaligned) {
  expect_fault(run1(stmatrix_misaligned, 32, 0, g_out.data()), "16-byte aligned",
               kStmatrixLine + 3);
}

INSTANTIATE_TEST_SUITE_P(AllSchedules, HopperSync, ::testing::Range(0, 5));

}  // namespace
