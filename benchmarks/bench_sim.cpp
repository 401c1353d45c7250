// Simulator throughput (one core unless a benchmark says otherwise): fiber switches per second,
// __syncthreads arrivals per second, emulated mma.sync warp-ops per second, and the kernel zoo's
// flash forward. These run on the CPU by design: they measure the executor, not a GPU.
#include <strata/strata.cuh>

#include <benchmark/benchmark.h>

#include <vector>

#include "zoo/zoo.cuh"

namespace {

// Each __syncwarp makes every lane block once: 32 switches per warp-op.
__global__ void syncwarp_loop(int* out, int iters) {
  int acc = int(threadIdx.x);
  for (int i = 0; i < iters; ++i) {
    strata::arch::syncwarp();
    acc += i;
  }
  out[blockIdx.x * blockDim.x + threadIdx.x] = acc;
}

__global__ void barrier_loop(int* out, int iters) {
  __shared__ int s[256];
  int acc = 0;
  for (int i = 0; i < iters; ++i) {
    s[threadIdx.x] = i + int(threadIdx.x);
    __syncthreads();
    acc += s[(threadIdx.x + 1) % blockDim.x];
    __syncthreads();
  }
  out[blockIdx.x * blockDim.x + threadIdx.x] = acc;
}

// Register-resident mma chain: every warp issues `iters` dependent mma.sync.
__global__ void mma_loop(float* out, int iters) {
  uint32_t a[4], b[2];
  for (int i = 0; i < 4; ++i) a[i] = 0x3f803f80u + threadIdx.x;  // bf16 pairs near 1.0
  for (int i = 0; i < 2; ++i) b[i] = 0x3c003c00u;
  float d[4] = {0.f, 0.f, 0.f, 0.f};
  for (int i = 0; i < iters; ++i) strata::arch::mma_m16n8k16_bf16(d, a, b, d);
  out[blockIdx.x * blockDim.x + threadIdx.x] = d[0] + d[1] + d[2] + d[3];
}

void report(benchmark::State& state, uint64_t strata::sim::Counters::*field, const char* name) {
  state.counters[name] =
      benchmark::Counter(double(strata::sim::total_counters().*field), benchmark::Counter::kIsRate);
  state.counters["simulator"] = 1;  // these are CPU timings of the SIMT simulator
}

void BM_FiberSwitches(benchmark::State& state) {
  const int threads = int(state.range(0)), iters = 2000;
  std::vector<int> out(static_cast<size_t>(threads));
  strata::sim::reset_counters();
  for (auto _ : state)
    if (!strata::launch(syncwarp_loop, dim3(1), dim3(unsigned(threads)), 0, 0, out.data(), iters)
             .ok())
      state.SkipWithError("launch failed");
  report(state, &strata::sim::Counters::fiber_switches, "switches/s");
}
BENCHMARK(BM_FiberSwitches)->Arg(32)->Arg(128)->Arg(256)->Unit(benchmark::kMillisecond);

void BM_SyncthreadsArrivals(benchmark::State& state) {
  const int threads = int(state.range(0)), iters = 1000;
  std::vector<int> out(static_cast<size_t>(threads));
  strata::sim::reset_counters();
  for (auto _ : state)
    if (!strata::launch(barrier_loop, dim3(1), dim3(unsigned(threads)), 0, 0, out.data(), iters)
             .ok())
      state.SkipWithError("launch failed");
  report(state, &strata::sim::Counters::barrier_arrivals, "arrivals/s");
}
BENCHMARK(BM_SyncthreadsArrivals)->Arg(128)->Arg(256)->Unit(benchmark::kMillisecond);

void BM_EmulatedMma(benchmark::State& state) {
  const int threads = int(state.range(0)), iters = 2000;
  std::vector<float> out(static_cast<size_t>(threads));
  strata::sim::reset_counters();
  for (auto _ : state)
    if (!strata::launch(mma_loop, dim3(1), dim3(unsigned(threads)), 0, 0, out.data(), iters).ok())
      state.SkipWithError("launch failed");
  report(state, &strata::sim::Counters::mma, "mma/s");
}
BENCHMARK(BM_EmulatedMma)->Arg(32)->Arg(128)->Unit(benchmark::kMillisecond);

void BM_MmaGemm(benchmark::State& state) {
  const int M = 256, N = 256, K = 256;
  std::vector<__nv_bfloat16> A(size_t(M) * K, __float2bfloat16(0.5f)),
      Bt(size_t(N) * K, __float2bfloat16(0.25f));
  std::vector<float> C(size_t(M) * N);
  strata::sim::reset_counters();
  for (auto _ : state)
    if (!strata::launch(zoo::mma_gemm_tn<__nv_bfloat16>, dim3(N / 16, M / 64), dim3(128),
                        zoo::mma_gemm_tn_smem_bytes<__nv_bfloat16>(), 0, A.data(), Bt.data(),
                        C.data(), M, N, K)
             .ok())
      state.SkipWithError("launch failed");
  state.counters["FLOP/s"] =
      benchmark::Counter(2.0 * M * N * K * double(state.iterations()), benchmark::Counter::kIsRate);
  report(state, &strata::sim::Counters::mma, "mma/s");
}
BENCHMARK(BM_MmaGemm)->Unit(benchmark::kMillisecond);

void BM_FlashForwardSimt(benchmark::State& state) {
  const int BH = 4, S = 256, D = 64;
  const unsigned workers = unsigned(state.range(0));
  const size_t n = size_t(BH) * S * D;
  std::vector<float> Q(n, 0.01f), K(n, 0.02f), V(n, 0.5f), O(n), L(size_t(BH) * S);
  const auto saved = strata::sim::options();
  strata::sim::set_workers(workers);
  for (auto _ : state)
    if (!strata::launch(zoo::flash_fwd_simt<64, false>, dim3(S / 16, BH), dim3(128), 0, 0, Q.data(),
                        K.data(), V.data(), O.data(), L.data(), S, 0.125f)
             .ok())
      state.SkipWithError("launch failed");
  strata::sim::options() = saved;
  state.counters["FLOP/s"] = benchmark::Counter(4.0 * BH * S * S * D * double(state.iterations()),
                                                benchmark::Counter::kIsRate);
  state.counters["workers"] = workers;
}
BENCHMARK(BM_FlashForwardSimt)->Arg(1)->Arg(2)->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
