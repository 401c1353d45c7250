// What the benchmarks share: operands in the executor's memory (host memory for the simulator,
// device memory under nvcc), the timed loop (Google Benchmark's wall clock of the simulator, or
// CUDA events around each launch after an L2 flush; time_iterations returns the seconds timed),
// deterministic inputs, and main().
#pragma once

#include <strata/strata.cuh>

#include <benchmark/benchmark.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace strata_bench {

#if STRATA_SIM
constexpr bool kSimulator = true;

/// An operand in the executor's memory: host memory for the simulator.
template <class T>
class Buffer {
 public:
  explicit Buffer(const std::vector<T>& init) : h_(init) {}
  T* get() { return h_.data(); }

 private:
  std::vector<T> h_;
};

/// Runs the benchmark loop; the simulator is timed by Google Benchmark's wall clock.
template <class F>
inline double time_iterations(benchmark::State& state, F launch) {
  const auto start = std::chrono::steady_clock::now();
  for (auto _ : state)
    if (!launch().ok()) state.SkipWithError("launch failed");
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}
#else
constexpr bool kSimulator = false;

#define STRATA_BENCH_CUDA(call)                                        \
  do {                                                                 \
    const cudaError_t e_ = (call);                                     \
    if (e_ != cudaSuccess) {                                           \
      std::fprintf(stderr, "%s: %s\n", #call, cudaGetErrorString(e_)); \
      std::abort();                                                    \
    }                                                                  \
  } while (0)

/// An operand in device memory, initialised from the host.
template <class T>
class Buffer {
 public:
  explicit Buffer(const std::vector<T>& init) {
    STRATA_BENCH_CUDA(cudaMalloc(&d_, init.size() * sizeof(T) + 16));
    STRATA_BENCH_CUDA(cudaMemcpy(d_, init.data(), init.size() * sizeof(T), cudaMemcpyHostToDevice));
  }
  ~Buffer() { cudaFree(d_); }
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  T* get() { return d_; }

 private:
  T* d_ = nullptr;
};

/// Times every iteration with CUDA events around the launch alone, after overwriting a buffer of
/// twice the L2 size (outside the timed range) so that every iteration starts with a cold L2.
template <class F>
inline double time_iterations(benchmark::State& state, F launch) {
  int dev = 0, l2 = 0;
  STRATA_BENCH_CUDA(cudaGetDevice(&dev));
  STRATA_BENCH_CUDA(cudaDeviceGetAttribute(&l2, cudaDevAttrL2CacheSize, dev));
  const size_t flush_bytes = 2 * size_t(l2 > 0 ? l2 : 64 << 20);
  void* flush = nullptr;
  STRATA_BENCH_CUDA(cudaMalloc(&flush, flush_bytes));
  cudaEvent_t start, stop;
  STRATA_BENCH_CUDA(cudaEventCreate(&start));
  STRATA_BENCH_CUDA(cudaEventCreate(&stop));
  int round = 0;
  double seconds = 0;
  for (auto _ : state) {
    STRATA_BENCH_CUDA(cudaMemsetAsync(flush, ++round & 0xff, flush_bytes));
    STRATA_BENCH_CUDA(cudaEventRecord(start));
    const strata::Status s = launch();
    STRATA_BENCH_CUDA(cudaEventRecord(stop));
    STRATA_BENCH_CUDA(cudaEventSynchronize(stop));
    if (!s.ok()) {
      state.SkipWithError("launch failed");
      break;
    }
    float ms = 0.f;
    STRATA_BENCH_CUDA(cudaEventElapsedTime(&ms, start, stop));
    state.SetIterationTime(double(ms) * 1e-3);
    seconds += double(ms) * 1e-3;
  }
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  cudaFree(flush);
  return seconds;
}
#endif

template <class T>
inline std::vector<T> zeros(size_t n) {
  return std::vector<T>(n, T(0.f));
}

/// Deterministic inputs: small values, so that no shape overflows.
inline std::vector<__nv_bfloat16> pattern(size_t n, int period, float step, float offset = 0.f) {
  std::vector<__nv_bfloat16> x(n);
  for (size_t i = 0; i < n; ++i)
    x[i] = strata::core::from_float<__nv_bfloat16>(float(i % period) * step + offset);
  return x;
}

/// An operand shared by every benchmark that asks for the same name and element count, filled
/// once from `init` (called only then): the GPU benchmarks run one token count (16k per batch)
/// at every sequence length, so building and uploading tens of megabytes of inputs per
/// benchmark would cost more host time than the timed launches. Outputs may be shared too: each
/// benchmark writes them before it reads them (a backward benchmark runs its forward first).
template <class T, class Init>
T* shared_operand(const std::string& name, size_t n, Init init) {
  static std::map<std::pair<std::string, size_t>, std::unique_ptr<Buffer<T>>> pool;
  auto& slot = pool[{name, n}];
  if (!slot) slot = std::make_unique<Buffer<T>>(init());
  return slot->get();
}

/// A bf16 operand of n elements with pattern(n, period, step, offset).
inline __nv_bfloat16* shared_pattern(const std::string& name, size_t n, int period, float step,
                                     float offset = 0.f) {
  return shared_operand<__nv_bfloat16>(name, n, [&] { return pattern(n, period, step, offset); });
}

/// An fp32 operand of n elements, every one `value`.
inline float* shared_fill(const std::string& name, size_t n, float value = 0.f) {
  return shared_operand<float>(name, n, [&] { return std::vector<float>(n, value); });
}

/// The FLOPs of one iteration as a rate counter ("FLOP/s"), and which executor timed it.
inline void report_flops(benchmark::State& state, double flops) {
  state.counters["FLOP/s"] =
      benchmark::Counter(flops * double(state.iterations()), benchmark::Counter::kIsRate);
  state.counters["simulator"] = kSimulator;
}

/// main() of a benchmark binary; under nvcc it refuses to run without a device.
inline int run_main(int argc, char** argv, const char* name) {
#if !STRATA_SIM
  int devices = 0;
  if (const cudaError_t e = cudaGetDeviceCount(&devices); e != cudaSuccess || devices == 0) {
    std::fprintf(stderr,
                 "%s_gpu: no usable CUDA device (%s); %s runs the same benchmarks in the "
                 "simulator\n",
                 name, e != cudaSuccess ? cudaGetErrorString(e) : "0 devices", name);
    return 1;
  }
#endif
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}

}  // namespace strata_bench
