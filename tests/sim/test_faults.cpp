// Every fault class of the simulator, triggered by a deliberately broken kernel: the launch
// returns an error Status whose message names the fault and the kernel's file:line.
#include "common.hpp"

namespace {

using strata::Status;
using strata::StatusCode;

// The kernels below report their own lines: keep clang-format from moving them.
// clang-format off
#define MARK(name) constexpr int name = __LINE__ + 1

MARK(kDivergentLine);
__global__ void divergent_barrier(float* out) {
  if (threadIdx.x < 16) __syncthreads();  // half the block never arrives: divergence
  out[threadIdx.x] = 1.f;
}

constexpr int kTwoSitesLine = __LINE__ + 3;
__global__ void two_barrier_sites(float* out) {
  if (threadIdx.x < 32)
    __syncthreads();
  else
    __syncthreads();
  out[threadIdx.x] = 2.f;
}

MARK(kExitedLaneLine);
__global__ void partial_warp_shuffle(float* out) {
  float v = float(threadIdx.x);
  if (threadIdx.x % 32 < 16) v = strata::arch::shfl_xor(v, 1);  // full mask, half the warp
  out[threadIdx.x] = v;
}

MARK(kOutsideMaskLine);
__global__ void shuffle_outside_mask(float* out) {
  float v = float(threadIdx.x);
  if (threadIdx.x % 32 < 16) v = strata::arch::shfl_xor(v, 16, 32, 0x0000ffffu);  // reads 16..31
  out[threadIdx.x] = v;
}

MARK(kNotInMaskLine);
__global__ void lane_not_in_mask(float* out) {
  out[threadIdx.x] = strata::arch::shfl(float(threadIdx.x), 0, 32, 0xfffffffeu);  // lane 0 runs it
}

MARK(kMissingLaneLine);
__global__ void mask_names_missing_lane(float* out) {    // launched with 48 threads
  out[threadIdx.x] = float(strata::arch::ballot(true));  // warp 1 has only 16 lanes
}

MARK(kMismatchLine);
__global__ void collective_mismatch(float* out) {
  float v = float(threadIdx.x);
  if (threadIdx.x % 2) {
    v = strata::arch::shfl_xor(v, 1);
  } else {
    v = float(strata::arch::ballot(v > 3.f));
  }
  out[threadIdx.x] = v;
}

MARK(kDeadlockLine);
__global__ void warp_op_vs_barrier(float* out) {
  float v = float(threadIdx.x);
  if (threadIdx.x != 5) v = strata::arch::warp_sum(v);  // lane 5 goes to the barrier instead
  __syncthreads();
  out[threadIdx.x] = v;
}

MARK(kLdmatrixLine);
__global__ void ldmatrix_misaligned(uint32_t* out) {
  __shared__ __align__(16) uint16_t tile[8 * 16 + 8];
  for (int i = int(threadIdx.x); i < 8 * 16 + 8; i += 32) tile[i] = uint16_t(i);
  __syncwarp();
  uint32_t r[1];
  strata::arch::ldmatrix_x1(r, &tile[int(threadIdx.x % 8) * 16 + 1]);  // 2-byte offset
  out[threadIdx.x] = r[0];
}

MARK(kOverrunReadLine);
__global__ void dynamic_smem_overrun_read(float* out, int n) {
  STRATA_DYNAMIC_SMEM(float, buf);
  out[threadIdx.x] = buf[n + 1024 * int(threadIdx.x)];  // far past the end: the guard page
}

__global__ void dynamic_smem_overrun_write(float* out, int n) {
  STRATA_DYNAMIC_SMEM(float, buf);
  buf[threadIdx.x] = 1.f;
  if (threadIdx.x == 0) buf[n] = 2.f;  // one element past the end: the canary
  out[threadIdx.x] = buf[threadIdx.x];
}

MARK(kTrapLine);
__global__ void trapping(float*) { __trap(); }

MARK(kWaitLine);
__global__ void shuffle_then_exit(float* out) {
  if (threadIdx.x == 0) return;  // lane 0 exits; the others wait for it
  out[threadIdx.x] = strata::arch::shfl(1.f, 3);
}

__global__ void read_uninitialised_static_smem(float* out) {
  __shared__ float s[64];
  out[threadIdx.x] = s[threadIdx.x];
}

template <int N>
__global__ void read_uninitialised_static_smem_tpl(float* out) {
  __shared__ float s[N];
  out[threadIdx.x] = s[threadIdx.x];
}

template <int N>
__global__ void write_static_smem_tpl(float* out, float v) {
  __shared__ float s[N];
  s[threadIdx.x] = v;
  out[threadIdx.x] = s[threadIdx.x];
}

__global__ void read_uninitialised_dynamic_smem(float* out) {
  STRATA_DYNAMIC_SMEM(float, s);
  out[threadIdx.x] = s[threadIdx.x];
}

__global__ void write_static_smem(float* out, float v) {
  __shared__ float s[64];
  s[threadIdx.x] = v;
  out[threadIdx.x] = s[threadIdx.x];
}

// clang-format on

// A fault inside a noexcept helper must still become a Status (the fiber is not unwound).
__device__ float shuffle_noexcept(float v) noexcept {
  return strata::arch::shfl_xor(v, 1);
}
__global__ void fault_in_noexcept_helper(float* out) {
  float v = float(threadIdx.x);
  if (threadIdx.x % 32 < 16) v = shuffle_noexcept(v);  // half the warp: lanes exit
  out[threadIdx.x] = v;
}

__global__ void mixed_type_shuffle(float* out) {
  if (threadIdx.x % 2) {
    out[threadIdx.x] = strata::arch::shfl(float(threadIdx.x), 0);
  } else {
    out[threadIdx.x] = float(strata::arch::shfl(double(threadIdx.x), 0));
  }
}

__global__ void huge_frame(float* out, int i) {
  volatile char frame[1 << 20];  // 1 MiB: far more than the default 256 KiB fiber stack
  frame[i] = 1;
  out[threadIdx.x] = frame[i];
}

__global__ void shuffle_wide_deltas(int* out) {
  const int l = int(threadIdx.x);
  out[l * 3 + 0] = strata::arch::shfl_up(l, 33u);            // low five bits: delta 1
  out[l * 3 + 1] = strata::arch::shfl_down(l, 0xffffffffu);  // delta 31
  out[l * 3 + 2] = strata::arch::shfl_xor(l, 32 + 3);        // lane mask 3
}

template <class... P, class... A>
Status run1(void (*k)(P...), unsigned threads, size_t smem, A... a) {
  return strata::launch(k, dim3(1), dim3(threads), smem, 0, a...);
}

void expect_fault(const Status& s, const char* needle, int line) {
  strata_test::expect_kernel_fault(s, needle, "test_faults.cpp", line);
}

class Faults : public ::testing::TestWithParam<int> {
 protected:
  void SetUp() override {
    strata::sim::set_schedule(strata_test::all_schedules()[size_t(GetParam())]);
  }
  strata_test::SimGuard guard_;
  std::vector<float> out_ = std::vector<float>(4096, 0.f);
};

TEST_P(Faults, BarrierDivergence) {
  expect_fault(run1(divergent_barrier, 64, 0, out_.data()), "divergence", 0);
  // the message names the barrier's line (as the waiting threads' site)
  EXPECT_TRUE(strata_test::names_line(run1(divergent_barrier, 64, 0, out_.data()).message(),
                                      "test_faults.cpp", kDivergentLine + 1));
}
TEST_P(Faults, BarrierAtTwoSites) {
  const Status s = run1(two_barrier_sites, 64, 0, out_.data());
  expect_fault(s, "different barriers", 0);
  const std::string m = s.message();
  EXPECT_TRUE(strata_test::names_line(m, "test_faults.cpp", kTwoSitesLine) &&
              strata_test::names_line(m, "test_faults.cpp", kTwoSitesLine + 2))
      << m;
}
TEST_P(Faults, WarpCollectiveWithExitedLane) {
  expect_fault(run1(partial_warp_shuffle, 64, 0, out_.data()), "exited", kExitedLaneLine + 2);
}
TEST_P(Faults, ShuffleReadsLaneOutsideMask) {
  expect_fault(run1(shuffle_outside_mask, 32, 0, out_.data()), "not in the member mask",
               kOutsideMaskLine + 2);
}
TEST_P(Faults, LaneNotInItsOwnMask) {
  expect_fault(run1(lane_not_in_mask, 32, 0, out_.data()), "member mask", kNotInMaskLine + 1);
}
TEST_P(Faults, MaskNamesMissingLane) {
  expect_fault(run1(mask_names_missing_lane, 48, 0, out_.data()), "does not exist",
               kMissingLaneLine + 1);
}
TEST_P(Faults, CollectiveMismatch) {
  expect_fault(run1(collective_mismatch, 32, 0, out_.data()), "mismatch", 0);
}
TEST_P(Faults, DeadlockWarpOpVersusBarrier) {
  const Status s = run1(warp_op_vs_barrier, 64, 0, out_.data());
  expect_fault(s, "deadlock", 0);
  const std::string m = s.message();
  EXPECT_TRUE(strata_test::names_line(m, "test_faults.cpp", kDeadlockLine + 2) ||
              strata_test::names_line(m, "test_faults.cpp", kDeadlockLine + 3))
      << m;
}
TEST_P(Faults, LdmatrixMisaligned) {
  std::vector<uint32_t> o(32);
  expect_fault(run1(ldmatrix_misaligned, 32, 0, o.data()), "16-byte aligned", kLdmatrixLine + 5);
}
TEST_P(Faults, DynamicSmemOverrunRead) {
  if (STRATA_SIM_ASAN || STRATA_SIM_TSAN)
    GTEST_SKIP() << "the sanitizer owns SIGSEGV and reports the overrun itself";
  expect_fault(run1(dynamic_smem_overrun_read, 32, 256, out_.data(), 64), "overrun", 0);
}
TEST_P(Faults, DynamicSmemOverrunWrite) {
  if (STRATA_SIM_ASAN) GTEST_SKIP() << "ASan reports the overrun itself (the slack is poisoned)";
  expect_fault(run1(dynamic_smem_overrun_write, 32, 40 * sizeof(float) + 4, out_.data(), 41),
               "overrun", 0);
}
TEST_P(Faults, Trap) {
  expect_fault(run1(trapping, 32, 0, out_.data()), "__trap", kTrapLine);
}
TEST_P(Faults, LaneExitsWhileOthersWait) {
  expect_fault(run1(shuffle_then_exit, 32, 0, out_.data()), "exited", kWaitLine + 2);
}

INSTANTIATE_TEST_SUITE_P(AllSchedules, Faults, ::testing::Range(0, 5));

TEST(Faults, AFaultStopsTheLaunch) {
  // later blocks do not run
  std::vector<float> out(64 * 8, 0.f);
  const Status s = strata::launch(divergent_barrier, dim3(8), dim3(64), 0, 0, out.data());
  EXPECT_FALSE(s.ok());
  EXPECT_EQ(strata::sim::last_launch_counters().blocks, 1u);
}

TEST(Faults, FaultInsideNoexceptHelperIsReported) {
  std::vector<float> out(64);
  expect_fault(run1(fault_in_noexcept_helper, 64, 0, out.data()), "exited", 0);
}

TEST(Faults, CollectiveOfDifferentOperandTypesIsAMismatch) {
  std::vector<float> out(32);
  expect_fault(run1(mixed_type_shuffle, 32, 0, out.data()), "another type", 0);
}

TEST(Faults, FiberStackOverflowIsReported) {
  if (STRATA_SIM_ASAN || STRATA_SIM_TSAN) GTEST_SKIP() << "the sanitizer owns SIGSEGV";
  std::vector<float> out(32);
  expect_fault(run1(huge_frame, 32, 0, out.data(), 5), "fiber stack overflow", 0);
  std::vector<float> o2(64);  // the simulator stays usable after the fault
  EXPECT_TRUE(run1(write_static_smem, 64, 0, o2.data(), 2.f).ok());
  for (float v : o2) EXPECT_EQ(v, 2.f);
}

TEST(WarpSemantics, ShuffleLaneOperandUsesItsLowFiveBits) {
  std::vector<int> out(96, -1);
  ASSERT_TRUE(run1(shuffle_wide_deltas, 32, 0, out.data()).ok());
  for (int l = 0; l < 32; ++l) {
    EXPECT_EQ(out[size_t(l * 3 + 0)], l >= 1 ? l - 1 : l);
    EXPECT_EQ(out[size_t(l * 3 + 1)], l + 31 < 32 ? l + 31 : l);
    EXPECT_EQ(out[size_t(l * 3 + 2)], l ^ 3);
  }
}

TEST(InvalidLaunch, SimRunGuardsItsOwnCallers) {
  std::vector<float> out(32, 4.f);
  const Status s = strata::sim::run(write_static_smem, dim3(1), dim3(0), 0, out.data(), 1.f);
  EXPECT_EQ(s.code(), StatusCode::kInvalidLaunch);
  for (float v : out) EXPECT_EQ(v, 4.f);
}

TEST(Poison, StaticAndDynamicSharedMemoryStartAsNaN) {
  std::vector<float> out(64, 0.f);
  // a previous block leaves values behind; the next block must see poison, not stale data
  if (!STRATA_SIM_ASAN && !STRATA_SIM_TSAN) {  // sanitizer builds: plain statics, not poisoned
    ASSERT_TRUE(run1(write_static_smem, 64, 0, out.data(), 3.f).ok());
    ASSERT_TRUE(run1(read_uninitialised_static_smem, 64, 0, out.data()).ok());
    for (float v : out) EXPECT_TRUE(std::isnan(v));
    std::fill(out.begin(), out.end(), 0.f);
  }
  ASSERT_TRUE(run1(read_uninitialised_dynamic_smem, 64, 64 * sizeof(float), out.data()).ok());
  for (float v : out) EXPECT_TRUE(std::isnan(v));
}

TEST(Poison, StaticSharedMemoryOfTemplateKernels) {
#if !defined(__clang__)
  GTEST_SKIP() << "g++ ignores section attributes of template statics (see sim/smem.hpp)";
#else
  if (STRATA_SIM_ASAN || STRATA_SIM_TSAN) GTEST_SKIP() << "sanitizer builds use plain statics";
  std::vector<float> out(64, 0.f);
  ASSERT_TRUE(run1(write_static_smem_tpl<64>, 64, 0, out.data(), 3.f).ok());
  ASSERT_TRUE(run1(read_uninitialised_static_smem_tpl<64>, 64, 0, out.data()).ok());
  for (float v : out) EXPECT_TRUE(std::isnan(v));
#endif
}

TEST(InvalidLaunch, RejectedBeforeRunningWithFieldNamed) {
  std::vector<float> out(2048, 7.f);
  struct Case {
    dim3 grid, block;
    size_t smem;
    const char* needle;
  } cases[] = {
      {dim3(1), dim3(1025), 0, "block (1025,1,1)"},
      {dim3(1), dim3(32, 32, 2), 0, "more than 1024"},
      {dim3(0), dim3(32), 0, "grid"},
      {dim3(1, 0), dim3(32), 0, "grid"},
      {dim3(1), dim3(0), 0, "block"},
      {dim3(1), dim3(1, 1, 65), 0, "block"},
      {dim3(1, 70000), dim3(32), 0, "grid"},
      {dim3(1), dim3(32), strata::max_dynamic_smem_bytes() + 1, "smem_bytes"},
  };
  for (const auto& c : cases) {
    const Status s = strata::launch(write_static_smem, c.grid, c.block, c.smem, 0, out.data(), 1.f);
    EXPECT_EQ(s.code(), StatusCode::kInvalidLaunch) << c.needle;
    EXPECT_NE(std::string(s.message()).find(c.needle), std::string::npos) << s.message();
  }
  for (float v : out) EXPECT_EQ(v, 7.f);  // nothing ran
}

TEST(Environment, ScheduleAndWorkersParsing) {
  using strata::sim::Schedule;
  Schedule s;
  EXPECT_TRUE(Schedule::parse("forward", &s) && s.kind == strata::sim::ScheduleKind::kForward);
  EXPECT_TRUE(Schedule::parse("reverse", &s) && s.kind == strata::sim::ScheduleKind::kReverse);
  EXPECT_TRUE(Schedule::parse("random:42", &s) && s.kind == strata::sim::ScheduleKind::kRandom &&
              s.seed == 42);
  EXPECT_FALSE(Schedule::parse("random:", &s));
  EXPECT_FALSE(Schedule::parse("random:4x", &s));
  EXPECT_FALSE(Schedule::parse("sideways", &s));
  EXPECT_EQ(Schedule::Random(7).to_string(), "random:7");

  setenv("STRATA_SIM_SCHEDULE", "random:9", 1);
  setenv("STRATA_SIM_WORKERS", "2", 1);
  auto o = strata::sim::detail::load_options_from_env();
  EXPECT_TRUE(o.env_error.empty());
  EXPECT_EQ(o.schedule.kind, strata::sim::ScheduleKind::kRandom);
  EXPECT_EQ(o.schedule.seed, 9u);
  EXPECT_EQ(o.workers, 2u);
  setenv("STRATA_SIM_SCHEDULE", "backwards", 1);
  o = strata::sim::detail::load_options_from_env();
  EXPECT_NE(o.env_error.find("STRATA_SIM_SCHEDULE"), std::string::npos);
  setenv("STRATA_SIM_SCHEDULE", "forward", 1);
  setenv("STRATA_SIM_WORKERS", "0", 1);
  o = strata::sim::detail::load_options_from_env();
  EXPECT_NE(o.env_error.find("STRATA_SIM_WORKERS"), std::string::npos);
  unsetenv("STRATA_SIM_SCHEDULE");
  unsetenv("STRATA_SIM_WORKERS");

  // a malformed environment makes launches fail with the variable named, and nothing runs
  strata_test::SimGuard guard;
  strata::sim::options().env_error = "STRATA_SIM_WORKERS='x' is not an integer in [1, 256]";
  std::vector<float> out(32, 5.f);
  const Status st = strata::launch(write_static_smem, dim3(1), dim3(32), 0, 0, out.data(), 1.f);
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(std::string(st.message()).find("STRATA_SIM_WORKERS"), std::string::npos);
  for (float v : out) EXPECT_EQ(v, 5.f);
}

}  // namespace
