// A host tensor that the simulator's traffic counter watches (sim/traffic.hpp), for the traffic
// builds among the benchmarks (strata_perf_model, strata_claims): 128-byte aligned, filled with a
// small deterministic pattern, watched for its whole life.
#pragma once

#include <strata/strata.cuh>

#include <cstddef>
#include <new>

namespace strata_bench {

template <class T>
struct WatchedTensor {
  T* p;
  explicit WatchedTensor(size_t n, float fill = 0.f)
      : p(static_cast<T*>(::operator new(n * sizeof(T), std::align_val_t(128)))) {
    for (size_t i = 0; i < n; ++i) p[i] = strata::core::from_float<T>(fill + 0.01f * float(i % 17));
    strata::sim::traffic::watch(p, n * sizeof(T));
  }
  ~WatchedTensor() { ::operator delete(p, std::align_val_t(128)); }
  WatchedTensor(const WatchedTensor&) = delete;
  WatchedTensor& operator=(const WatchedTensor&) = delete;
};

}  // namespace strata_bench
