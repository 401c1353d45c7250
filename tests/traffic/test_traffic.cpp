// The global-memory traffic counter of a traffic build (strata/sim/traffic.hpp): exact byte
// counts for kernels whose traffic is known, and zero for everything that is not a watched
// global access of a running launch.
#include "common.hpp"

#include <cuda_bf16.h>

#include <cstring>
#include <vector>

static_assert(strata::sim::traffic::kEnabled, "tests/traffic must be compiled as a traffic build");

namespace {

using strata::sim::last_launch_counters;
namespace traffic = strata::sim::traffic;
using strata_test::SimGuard;

constexpr int kBlock = 128;

/// Restores the simulator's options and forgets the watched ranges when a test ends.
struct TrafficTest : ::testing::Test {
  SimGuard guard;
  void SetUp() override { traffic::clear(); }
  void TearDown() override { traffic::clear(); }
};

template <class T>
void watch(const std::vector<T>& v) {
  traffic::watch(v.data(), v.size() * sizeof(T));
}

unsigned blocks_for(int n) {
  return unsigned((n + kBlock - 1) / kBlock);
}

// ---------------------------------------------------------------------------------- kernels
__global__ void copy(const float* x, float* y, int n) {
  const int i = int(blockIdx.x * blockDim.x + threadIdx.x);
  if (i < n) y[i] = x[i];
}

// Each element is read twice: as x[i] by thread i and as x[n - 1 - i] by thread n - 1 - i.
__global__ void read_twice(const float* x, float* y, int n) {
  const int i = int(blockIdx.x * blockDim.x + threadIdx.x);
  if (i < n) y[i] = x[i] - x[n - 1 - i];
}

// Global -> static shared -> dynamic shared -> global, reversed within the block: the shared
// accesses (three per element) must not count.
__global__ void stage_through_smem(const float* x, float* y) {
  __shared__ float tile[kBlock];
  STRATA_DYNAMIC_SMEM(float, dyn);
  const int t = int(threadIdx.x), i = int(blockIdx.x) * kBlock + t;
  tile[t] = x[i];
  __syncthreads();
  dyn[t] = tile[kBlock - 1 - t] * 2.f;
  __syncthreads();
  y[i] = dyn[t];
}

// Thread t copies 16 bytes of x into shared memory by cp.async with src_bytes = `src_bytes[t]`
// (the rest is zero-filled, not read), then writes the 16 bytes to y.
__global__ void cp_async_copy(const float* x, const int* src_bytes, float* y) {
  STRATA_DYNAMIC_SMEM(float, s);
  const int t = int(threadIdx.x), i = int(blockIdx.x) * int(blockDim.x) + t;
  const int sb = src_bytes[i];
  strata::arch::cp_async<16>(s + 4 * t, x + 4 * i, sb);
  strata::arch::cp_async_wait_all();
  for (int k = 0; k < 4; ++k) y[4 * i + k] = s[4 * t + k];
}

// bf16 gather with stride `stride`: y[i] = x[stride * i].
__global__ void strided_bf16(const __nv_bfloat16* x, __nv_bfloat16* y, int n, int stride) {
  const int i = int(blockIdx.x * blockDim.x + threadIdx.x);
  if (i < n) y[i] = x[size_t(stride) * size_t(i)];
}

__global__ void count_atomically(int* counter) {
  atomicAdd(counter, 1);
}

// -------------------------------------------------------------------------------- (1) copy
TEST_F(TrafficTest, CopyReadsAndWritesEachElementOnce) {
  const int n = 1000;  // not a multiple of the block: the tail threads touch nothing
  std::vector<float> x(n), y(n, 0.f);
  for (int i = 0; i < n; ++i) x[size_t(i)] = float(i) * 0.5f;
  watch(x);
  watch(y);
  const strata::Status st =
      strata::launch(copy, dim3(blocks_for(n)), dim3(kBlock), 0, 0, x.data(), y.data(), n);
  ASSERT_TRUE(st.ok()) << st.message();
  EXPECT_EQ(x, y);
  const auto c = last_launch_counters();
  EXPECT_EQ(c.global_load_bytes, 4u * n);
  EXPECT_EQ(c.global_store_bytes, 4u * n);
}

// ------------------------------------------------------------------------- (2) read twice
TEST_F(TrafficTest, ReadingEachElementTwiceCountsTwice) {
  const int n = 1024;
  std::vector<float> x(n), y(n, 0.f);
  for (int i = 0; i < n; ++i) x[size_t(i)] = float(i);
  watch(x);
  watch(y);
  const strata::Status st =
      strata::launch(read_twice, dim3(blocks_for(n)), dim3(kBlock), 0, 0, x.data(), y.data(), n);
  ASSERT_TRUE(st.ok()) << st.message();
  for (int i = 0; i < n; ++i) ASSERT_EQ(y[size_t(i)], float(i - (n - 1 - i))) << i;
  const auto c = last_launch_counters();
  EXPECT_EQ(c.global_load_bytes, 8u * n);
  EXPECT_EQ(c.global_store_bytes, 4u * n);
}

// ---------------------------------------------------------------- (3) shared-memory staging
TEST_F(TrafficTest, SharedMemoryStagingCountsOnlyTheGlobalSide) {
  const int n = 4 * kBlock;
  std::vector<float> x(n), y(n, 0.f);
  for (int i = 0; i < n; ++i) x[size_t(i)] = float(i);
  watch(x);
  watch(y);
  const strata::Status st = strata::launch(stage_through_smem, dim3(n / kBlock), dim3(kBlock),
                                           kBlock * sizeof(float), 0, x.data(), y.data());
  ASSERT_TRUE(st.ok()) << st.message();
  for (int i = 0; i < n; ++i) {
    const int b = i / kBlock, t = i % kBlock;
    ASSERT_EQ(y[size_t(i)], 2.f * x[size_t(b * kBlock + kBlock - 1 - t)]) << i;
  }
  const auto c = last_launch_counters();
  EXPECT_EQ(c.global_load_bytes, 4u * n);
  EXPECT_EQ(c.global_store_bytes, 4u * n);
}

// -------------------------------------------------------------------------- (4) cp.async
// Deferred (the default) and immediate landing; src_bytes = 16 except every 8th thread, which
// reads 8 bytes and every 32nd, which reads none: only the bytes read from x count.
TEST_F(TrafficTest, CpAsyncCountsTheSourceBytesItReads) {
  const int threads = 4 * 64;
  std::vector<float> x(4 * threads);
  for (size_t i = 0; i < x.size(); ++i) x[i] = float(i) + 1.f;
  std::vector<int> sb(threads);
  uint64_t read = 0;
  for (int i = 0; i < threads; ++i) {
    sb[size_t(i)] = i % 32 == 0 ? 0 : i % 8 == 0 ? 8 : 16;
    read += uint64_t(sb[size_t(i)]);
  }
  for (bool defer : {true, false}) {
    strata::sim::options().defer_cp_async = defer;
    std::vector<float> y(x.size(), -1.f);
    traffic::clear();
    watch(x);
    watch(y);  // src_bytes is not watched
    const strata::Status st =
        strata::launch(cp_async_copy, dim3(4), dim3(64), 64 * 16, 0, x.data(), sb.data(), y.data());
    ASSERT_TRUE(st.ok()) << st.message();
    for (int i = 0; i < threads; ++i)
      for (int k = 0; k < 4; ++k)
        ASSERT_EQ(y[size_t(4 * i + k)], 4 * k < sb[size_t(i)] ? x[size_t(4 * i + k)] : 0.f)
            << "defer " << defer << " thread " << i << " float " << k;
    const auto c = last_launch_counters();
    EXPECT_EQ(c.cp_async_bytes, 16u * threads);
    EXPECT_EQ(read, 16u * threads - 8u * (threads / 8 - threads / 32) - 16u * (threads / 32));
    EXPECT_EQ(c.global_load_bytes, read) << "defer " << defer;
    EXPECT_EQ(c.global_store_bytes, 16u * threads) << "defer " << defer;
  }
}

// ------------------------------------------------------ (5) unwatched memory and host code
TEST_F(TrafficTest, UnwatchedMemoryAndHostCodeCountNothing) {
  strata::sim::set_workers(1);  // the launch runs on this thread: host code shares its counter
  const int n = 512;
  std::vector<float> x(n, 1.f), y(n, 0.f);
  auto launch_copy = [&] {
    const strata::Status st =
        strata::launch(copy, dim3(blocks_for(n)), dim3(kBlock), 0, 0, x.data(), y.data(), n);
    ASSERT_TRUE(st.ok()) << st.message();
  };

  launch_copy();  // nothing watched
  EXPECT_EQ(last_launch_counters().global_load_bytes, 0u);
  EXPECT_EQ(last_launch_counters().global_store_bytes, 0u);

  watch(x);  // only the input
  launch_copy();
  EXPECT_EQ(last_launch_counters().global_load_bytes, 4u * n);
  EXPECT_EQ(last_launch_counters().global_store_bytes, 0u);

  // part of a range: the first quarter and the last quarter stay watched
  traffic::unwatch(x.data() + n / 4, n / 2 * sizeof(float));
  EXPECT_EQ(traffic::watched_bytes(), n / 2 * sizeof(float));
  launch_copy();
  EXPECT_EQ(last_launch_counters().global_load_bytes, 2u * n);

  // host code touching watched memory before and after a launch counts nowhere
  watch(x);
  watch(y);
  const uint64_t before = strata::sim::detail::g_traffic_load;
  for (int i = 0; i < n; ++i) x[size_t(i)] = x[size_t(i)] + float(i);
  float sum = 0;
  for (int i = 0; i < n; ++i) sum += y[size_t(i)];
  EXPECT_EQ(sum, float(n));
  EXPECT_FALSE(strata::sim::detail::g_traffic_on);
  EXPECT_EQ(strata::sim::detail::g_traffic_load, before);
  launch_copy();
  EXPECT_EQ(last_launch_counters().global_load_bytes, 4u * n);
  EXPECT_EQ(last_launch_counters().global_store_bytes, 4u * n);
  const uint64_t after = strata::sim::detail::g_traffic_store;
  for (int i = 0; i < n; ++i) sum += y[size_t(i)];
  for (int i = 0; i < n; ++i) y[size_t(i)] = 0.f;
  EXPECT_EQ(strata::sim::detail::g_traffic_store, after);

  traffic::clear();
  launch_copy();
  EXPECT_EQ(last_launch_counters().global_load_bytes, 0u);
  EXPECT_EQ(last_launch_counters().global_store_bytes, 0u);
}

// ------------------------------------------------------------------------ (6) many workers
TEST_F(TrafficTest, CountsDoNotDependOnWorkersOrSchedule) {
  const int n = 12 * kBlock + 17;
  std::vector<float> x(n), y(n);
  for (int i = 0; i < n; ++i) x[size_t(i)] = float(i);
  watch(x);
  watch(y);
  for (unsigned workers : {1u, 3u}) {
    strata::sim::set_workers(workers);
    for (const auto& sched : strata_test::all_schedules()) {
      strata::sim::set_schedule(sched);
      std::fill(y.begin(), y.end(), 0.f);
      strata::sim::reset_counters();
      for (int rep = 0; rep < 3; ++rep) {
        const strata::Status st = strata::launch(read_twice, dim3(blocks_for(n)), dim3(kBlock), 0,
                                                 0, x.data(), y.data(), n);
        ASSERT_TRUE(st.ok()) << st.message();
        const auto c = last_launch_counters();
        EXPECT_EQ(c.global_load_bytes, 8u * n) << "workers " << workers;
        EXPECT_EQ(c.global_store_bytes, 4u * n) << "workers " << workers;
      }
      const auto t = strata::sim::total_counters();
      EXPECT_EQ(t.launches, 3u);
      EXPECT_EQ(t.global_load_bytes, 3u * 8u * n) << "workers " << workers;
      EXPECT_EQ(t.global_store_bytes, 3u * 4u * n) << "workers " << workers;
    }
  }
}

// ------------------------------------------------------------------- (7) strided bf16 reads
TEST_F(TrafficTest, StridedBf16CountsTwoBytesPerElement) {
  const int n = 300, stride = 3;
  std::vector<__nv_bfloat16> x(size_t(n) * stride), y(n);
  for (size_t i = 0; i < x.size(); ++i) x[i] = __float2bfloat16(float(i % 97));
  watch(x);
  watch(y);
  const strata::Status st = strata::launch(strided_bf16, dim3(blocks_for(n)), dim3(kBlock), 0, 0,
                                           x.data(), y.data(), n, stride);
  ASSERT_TRUE(st.ok()) << st.message();
  for (int i = 0; i < n; ++i)
    ASSERT_EQ(__bfloat162float(y[size_t(i)]), float(size_t(stride) * size_t(i) % 97)) << i;
  const auto c = last_launch_counters();
  EXPECT_EQ(c.global_load_bytes, 2u * n);  // a third of x
  EXPECT_EQ(c.global_store_bytes, 2u * n);
}

// ------------------------------------------------------------------ partly watched accesses
// Only the watched bytes of an access count: a 4-byte load of which 2 bytes are watched counts
// 2, and a 16-byte load that covers two watched ranges counts the bytes of both.
__global__ void load_float_and_float4(const float* x, const float4* v, float* y) {
  const float4 w = v[0];
  y[0] = x[0] + w.x + w.y + w.z + w.w;
}

TEST_F(TrafficTest, AccessesStraddlingARangeEdgeCountOnlyTheWatchedBytes) {
  std::vector<float> x(1, 1.f), y(1, 0.f);
  std::vector<float4> v(1, make_float4(1.f, 2.f, 3.f, 4.f));
  const auto* xb = reinterpret_cast<const unsigned char*>(x.data());
  const auto* vb = reinterpret_cast<const unsigned char*>(v.data());
  traffic::watch(xb + 1, 2);
  traffic::watch(vb + 2, 3);
  traffic::watch(vb + 8, 6);
  const strata::Status st =
      strata::launch(load_float_and_float4, dim3(1), dim3(1), 0, 0, x.data(), v.data(), y.data());
  ASSERT_TRUE(st.ok()) << st.message();
  EXPECT_EQ(y[0], 11.f);
  const auto c = last_launch_counters();
  EXPECT_EQ(c.global_load_bytes, 2u + 3u + 6u);
  EXPECT_EQ(c.global_store_bytes, 0u);
}

// --------------------------------------------------------------------------------- atomics
// g++ instruments an atomic read-modify-write as one store check: it counts once, as a store.
TEST_F(TrafficTest, AtomicReadModifyWriteCountsOnceAsAStore) {
  std::vector<int> counter(1, 0);
  watch(counter);
  const strata::Status st =
      strata::launch(count_atomically, dim3(3), dim3(kBlock), 0, 0, counter.data());
  ASSERT_TRUE(st.ok()) << st.message();
  EXPECT_EQ(counter[0], 3 * kBlock);
  const auto c = last_launch_counters();
  EXPECT_EQ(c.global_load_bytes, 0u);
  EXPECT_EQ(c.global_store_bytes, 4u * 3 * kBlock);
}

}  // namespace
