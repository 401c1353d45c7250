// The kernel zoo under all five schedules against fp64 references, and injected bugs that the
// simulator must catch: missing RAW/WAR barriers, swapped fragment registers, a missing
// cp.async.wait_group, an off-by-one causal mask.
#include "common.hpp"

#include "zoo/zoo.cuh"

#include <functional>

namespace {

// Racy by design: under ThreadSanitizer these are checked by tests/sanitizer (TSan must report
// them), not here.
#define SKIP_RACY_UNDER_TSAN()                                                \
  if (STRATA_SIM_TSAN)                                                        \
  GTEST_SKIP() << "racy by design; tests/sanitizer checks that TSan reports " \
                  "it"

using strata_test::all_schedules;
using strata_test::Rng;
using strata_test::SimGuard;

/// Runs `attempt` under each schedule; returns how many schedules failed (wrong result or an
/// error Status) and the first failure's description.
int failing_schedules(const std::function<bool(std::string&)>& attempt,
                      std::string* why = nullptr) {
  SimGuard guard;
  int bad = 0;
  for (const auto& s : all_schedules()) {
    strata::sim::set_schedule(s);
    std::string w;
    if (!attempt(w)) {
      ++bad;
      if (why && why->empty()) *why = s.to_string() + ": " + w;
    }
  }
  return bad;
}

bool ok_or(const strata::Status& s, std::string& why) {
  if (!s.ok()) why = s.message();
  return s.ok();
}

// -------------------------------------------------------------------------------- block_sum
TEST(Zoo, BlockSumAllSchedulesAndWorkers) {
  const int n = 1 << 15, blocks = 6;
  std::vector<float> x(n);
  Rng r(1);
  double ref = 0;
  for (auto& v : x) ref += v = r.uniform();
  for (unsigned workers : {1u, 2u}) {
    SimGuard g;
    strata::sim::set_workers(workers);
    std::string why;
    EXPECT_EQ(0, failing_schedules(
                     [&](std::string& w) {
                       std::vector<float> part(blocks, NAN);
                       if (!ok_or(strata::launch(zoo::block_sum<256>, dim3(blocks), dim3(256), 0, 0,
                                                 x.data(), part.data(), n),
                                  w))
                         return false;
                       double s = 0;
                       for (float p : part) s += p;
                       return std::fabs(s - ref) < 1e-2;
                     },
                     &why))
        << why;
  }
}

// ------------------------------------------------------------------------------ sgemm_tiled
template <int Bug>
int sgemm_failures(std::string* why) {
  const int M = 70, N = 50, K = 90;
  std::vector<float> A(M * K), B(K * N);
  std::vector<double> ref(M * N, 0.0);
  Rng r(2);
  for (auto& v : A) v = r.uniform();
  for (auto& v : B) v = r.uniform();
  for (int i = 0; i < M; ++i)
    for (int k = 0; k < K; ++k)
      for (int j = 0; j < N; ++j)
        ref[size_t(i * N + j)] += double(A[size_t(i * K + k)]) * B[size_t(k * N + j)];
  return failing_schedules(
      [&](std::string& w) {
        std::vector<float> C(M * N, -1.f);
        if (!ok_or(strata::launch(zoo::sgemm_tiled<16, Bug>, dim3((N + 15) / 16, (M + 15) / 16),
                                  dim3(16, 16), 0, 0, A.data(), B.data(), C.data(), M, N, K),
                   w))
          return false;
        const double e = strata_test::max_abs_diff(C, ref);
        w = "max error " + std::to_string(e);
        return e < 1e-4;
      },
      why);
}
TEST(Zoo, SgemmTiledAllSchedules) {
  std::string why;
  EXPECT_EQ(0, sgemm_failures<0>(&why)) << why;
}
TEST(InjectedBugs, MissingRawBarrierIsCaught) {
  SKIP_RACY_UNDER_TSAN();
  EXPECT_GT(sgemm_failures<1>(nullptr), 0);
}
TEST(InjectedBugs, MissingWarBarrierIsCaught) {
  SKIP_RACY_UNDER_TSAN();
  EXPECT_GT(sgemm_failures<2>(nullptr), 0);
}

// ------------------------------------------------------------------------------ mma_gemm_tn
template <class T, int Bug>
int mma_gemm_failures(std::string* why, int M = 96, int N = 40, int K = 80) {
  std::vector<T> A(size_t(M) * K), Bt(size_t(N) * K);
  std::vector<double> ref(size_t(M) * N, 0.0);
  Rng r(3);
  for (auto& v : A) v = T(r.uniform());
  for (auto& v : Bt) v = T(r.uniform());
  for (int i = 0; i < M; ++i)
    for (int j = 0; j < N; ++j) {
      double s = 0;
      for (int k = 0; k < K; ++k)
        s += double(float(A[size_t(i) * K + k])) * double(float(Bt[size_t(j) * K + k]));
      ref[size_t(i) * N + j] = s;
    }
  return failing_schedules(
      [&](std::string& w) {
        std::vector<float> C(size_t(M) * N, 0.f);
        if (!ok_or(strata::launch(zoo::mma_gemm_tn<T, Bug>, dim3((N + 15) / 16, (M + 63) / 64),
                                  dim3(128), zoo::mma_gemm_tn_smem_bytes<T>(), 0, A.data(),
                                  Bt.data(), C.data(), M, N, K),
                   w))
          return false;
        const double e = strata_test::max_abs_diff(C, ref);
        w = "max error " + std::to_string(e);
        return e < 1e-4;
      },
      why);
}
TEST(Zoo, MmaGemmBf16AllSchedules) {
  std::string why;
  EXPECT_EQ(0, (mma_gemm_failures<__nv_bfloat16, 0>(&why))) << why;
}
TEST(Zoo, MmaGemmF16AllSchedules) {
  std::string why;
  EXPECT_EQ(0, (mma_gemm_failures<__half, 0>(&why))) << why;
}
TEST(Zoo, MmaGemmCountsMatchTheTiling) {
  const int M = 128, N = 32, K = 64;
  std::vector<__nv_bfloat16> A(size_t(M) * K, __float2bfloat16(0.5f)),
      Bt(size_t(N) * K, __float2bfloat16(0.25f));
  std::vector<float> C(size_t(M) * N);
  ASSERT_TRUE(strata::launch(zoo::mma_gemm_tn<__nv_bfloat16, 0>, dim3(N / 16, M / 64), dim3(128),
                             zoo::mma_gemm_tn_smem_bytes<__nv_bfloat16>(), 0, A.data(), Bt.data(),
                             C.data(), M, N, K)
                  .ok());
  const auto c = strata::sim::last_launch_counters();
  const uint64_t blocks = (N / 16) * (M / 64), warps = 4, ktiles = K / 32;
  EXPECT_EQ(c.mma, blocks * warps * ktiles * 2 /* k16 steps */ * 2 /* n8 tiles */);
  EXPECT_EQ(c.ldmatrix, blocks * warps * ktiles * 2 * 2);
  EXPECT_EQ(c.barriers, blocks * ktiles * 2);
  for (float v : C) EXPECT_EQ(v, 0.125f * K);
}
TEST(InjectedBugs, SwappedAFragmentRegistersAreCaught) {
  EXPECT_EQ(5, (mma_gemm_failures<__nv_bfloat16, 1>(nullptr)));
}
TEST(InjectedBugs, MissingWaitGroupIsCaught) {
  EXPECT_EQ(5, (mma_gemm_failures<__nv_bfloat16, 2>(nullptr)));
}
TEST(InjectedBugs, SwappedBFragmentRegistersAreCaught) {
  EXPECT_EQ(5, (mma_gemm_failures<__nv_bfloat16, 3>(nullptr)));
}

// ------------------------------------------------------------------------------ mma_tile_nn
TEST(Zoo, MmaTileNnWithTransposedLdmatrix) {
  std::vector<__half> A(256), B(256);
  std::vector<double> ref(256, 0.0);
  Rng r(5);
  for (auto& v : A) v = __float2half(r.uniform());
  for (auto& v : B) v = __float2half(r.uniform());
  for (int i = 0; i < 16; ++i)
    for (int j = 0; j < 16; ++j)
      for (int k = 0; k < 16; ++k)
        ref[size_t(i * 16 + j)] +=
            double(__half2float(A[size_t(i * 16 + k)])) * __half2float(B[size_t(k * 16 + j)]);
  std::string why;
  EXPECT_EQ(0, failing_schedules(
                   [&](std::string& w) {
                     std::vector<float> C(256, NAN);
                     if (!ok_or(strata::launch(zoo::mma_tile_nn<__half>, dim3(1), dim3(32), 0, 0,
                                               A.data(), B.data(), C.data()),
                                w))
                       return false;
                     return strata_test::max_abs_diff(C, ref) < 1e-5;
                   },
                   &why))
      << why;
}

// --------------------------------------------------------------------------- flash forward
struct FlashCase {
  int BH, S;
  bool causal;
};
template <bool kCausal, int Bug>
int flash_failures(FlashCase fc, std::string* why, double* worst = nullptr) {
  constexpr int D = 64;
  const size_t sz = size_t(fc.BH) * fc.S * D;
  std::vector<float> Q(sz), K(sz), V(sz);
  Rng r(4);
  for (auto& v : Q) v = r.uniform();
  for (auto& v : K) v = r.uniform();
  for (auto& v : V) v = r.uniform();
  const float scale = 1.f / std::sqrt(float(D));
  std::vector<double> ref(sz), ref_lse(size_t(fc.BH) * fc.S);
  for (int b = 0; b < fc.BH; ++b)
    for (int i = 0; i < fc.S; ++i) {
      std::vector<double> p(size_t(fc.S));
      double mx = -INFINITY;
      for (int j = 0; j < fc.S; ++j) {
        double s = 0;
        for (int c = 0; c < D; ++c)
          s += double(Q[(size_t(b) * fc.S + i) * D + c]) * K[(size_t(b) * fc.S + j) * D + c];
        p[size_t(j)] = (kCausal && j > i) ? -INFINITY : s * scale;
        mx = std::max(mx, p[size_t(j)]);
      }
      double sum = 0;
      for (auto& x : p) sum += x = std::exp(x - mx);
      ref_lse[size_t(b) * fc.S + i] = mx + std::log(sum);
      for (int c = 0; c < D; ++c) {
        double o = 0;
        for (int j = 0; j < fc.S; ++j) o += p[size_t(j)] * V[(size_t(b) * fc.S + j) * D + c];
        ref[(size_t(b) * fc.S + i) * D + c] = o / sum;
      }
    }
  double w0 = 0;
  const int bad = failing_schedules(
      [&](std::string& w) {
        std::vector<float> O(sz, NAN), lse(size_t(fc.BH) * fc.S, NAN);
        if (!ok_or(strata::launch(zoo::flash_fwd_simt<D, kCausal, Bug>,
                                  dim3((fc.S + 15) / 16, fc.BH), dim3(128), 0, 0, Q.data(),
                                  K.data(), V.data(), O.data(), lse.data(), fc.S, scale),
                   w))
          return false;
        const double e =
            std::max(strata_test::max_abs_diff(O, ref), strata_test::max_abs_diff(lse, ref_lse));
        w0 = std::max(w0, e);
        w = "max error " + std::to_string(e);
        return e < 2e-5;
      },
      why);
  if (worst) *worst = w0;
  return bad;
}
TEST(Zoo, FlashForwardNonCausalRaggedAllSchedules) {
  std::string why;
  EXPECT_EQ(0, (flash_failures<false, 0>({3, 100, false}, &why))) << why;
}
TEST(Zoo, FlashForwardCausalAllSchedules) {
  std::string why;
  EXPECT_EQ(0, (flash_failures<true, 0>({2, 77, true}, &why))) << why;
}
TEST(Zoo, FlashForwardLengthOne) {
  std::string why;
  EXPECT_EQ(0, (flash_failures<true, 0>({2, 1, true}, &why))) << why;
}
TEST(InjectedBugs, FlashMissingBarrierBeforeTileReloadIsCaught) {
  SKIP_RACY_UNDER_TSAN();
  EXPECT_GT((flash_failures<false, 1>({2, 100, false}, nullptr)), 0);
}
TEST(InjectedBugs, FlashCausalOffByOneIsCaught) {
  EXPECT_EQ(5, (flash_failures<true, 2>({2, 77, true}, nullptr)));
}

// --------------------------------------------------------------- schedule-dependent bug
template <int Bug>
__global__ void smem_broadcast(const float* in, float* out) {
  __shared__ float s;
  if (threadIdx.x == 0) s = in[blockIdx.x];
  if (Bug == 0) __syncthreads();
  out[blockIdx.x * blockDim.x + threadIdx.x] = s * float(threadIdx.x);
}

TEST(InjectedBugs, MissingBroadcastBarrierHiddenByForwardCaughtByOthers) {
  SKIP_RACY_UNDER_TSAN();
  std::vector<float> in = {1, 2, 3, 4};
  auto run = [&](auto kernel, std::string& w) {
    std::vector<float> out(4 * 64);
    if (!ok_or(strata::launch(kernel, dim3(4), dim3(64), 0, 0, in.data(), out.data()), w))
      return false;
    for (int b = 0; b < 4; ++b)
      for (int t = 0; t < 64; ++t)
        if (out[size_t(b * 64 + t)] != in[size_t(b)] * float(t)) return false;
    return true;
  };
  std::string why;
  EXPECT_EQ(0, failing_schedules([&](std::string& w) { return run(smem_broadcast<0>, w); }, &why))
      << why;
  {
    SimGuard g;
    strata::sim::set_schedule(strata::sim::Schedule::Forward());
    std::string w;
    EXPECT_TRUE(run(smem_broadcast<1>, w)) << "forward schedule hides the bug";
  }
  EXPECT_GE(failing_schedules([&](std::string& w) { return run(smem_broadcast<1>, w); }), 1);
}

// ------------------------------------------------------------------------------- atomics
TEST(Atomics, CorrectWithSeveralWorkers) {
  const int n = 20000, nbins = 7;
  std::vector<int> x(n);
  for (int i = 0; i < n; ++i) x[size_t(i)] = (i * 31) % 1000;
  std::vector<int> expect(nbins, 0);
  for (int v : x) ++expect[size_t(v % nbins)];
  for (unsigned workers : {1u, 2u, 4u}) {
    SimGuard g;
    strata::sim::set_workers(workers);
    std::vector<int> bins(nbins, 0);
    float total = 0.f;
    ASSERT_TRUE(strata::launch(zoo::histogram<int>, dim3(16), dim3(128), 0, 0, x.data(), n,
                               bins.data(), nbins, &total)
                    .ok());
    EXPECT_EQ(bins, expect) << workers << " workers";
    EXPECT_EQ(total, float(n));
  }
}

__global__ void atomic_ops(int* v, unsigned* u) {
  atomicMax(&v[0], int(threadIdx.x + blockIdx.x * blockDim.x));
  atomicMin(&v[1], -int(threadIdx.x));
  atomicCAS(&u[0], 0u, 1u + threadIdx.x);  // exactly one thread wins
  atomicAdd(&u[1], 1u);
}
TEST(Atomics, MaxMinCasAdd) {
  SimGuard g;
  strata::sim::set_workers(2);
  std::vector<int> v = {-5, 5};
  std::vector<unsigned> u = {0, 0};
  ASSERT_TRUE(strata::launch(atomic_ops, dim3(8), dim3(64), 0, 0, v.data(), u.data()).ok());
  EXPECT_EQ(v[0], 8 * 64 - 1);
  EXPECT_EQ(v[1], -63);
  EXPECT_GE(u[0], 1u);
  EXPECT_LE(u[0], 64u);
  EXPECT_EQ(u[1], 8u * 64);
}

// ------------------------------------------------------------------------------- counters
TEST(Counters, LaunchCountersAreReadableAfterALaunch) {
  strata::sim::reset_counters();
  std::vector<float> x(1024, 1.f), part(4);
  ASSERT_TRUE(
      strata::launch(zoo::block_sum<256>, dim3(4), dim3(256), 0, 0, x.data(), part.data(), 1024)
          .ok());
  const auto c = strata::sim::last_launch_counters();
  EXPECT_EQ(c.launches, 1u);
  EXPECT_EQ(c.blocks, 4u);
  EXPECT_EQ(c.threads, 4u * 256);
  EXPECT_EQ(c.barriers, 4u);
  EXPECT_EQ(c.barrier_arrivals, 4u * 256);
  // per block: 8 warps x 5 butterfly steps, then warp 0 x 5
  EXPECT_EQ(c.shuffles, 4u * (8 * 5 + 5));
  EXPECT_GT(c.fiber_switches, 0u);
  EXPECT_EQ(strata::sim::total_counters().launches, 1u);
}

}  // namespace
