// Buffers the kernels can use on both executors, so that the same test harness (and
// examples/layer_stack) runs in the simulator and on a GPU: plain host vectors in the simulator,
// where device memory is host memory; CUDA managed (unified) memory under nvcc, where host code
// fills and reads the same vectors the kernels use. After launching, the harness calls
// sync_device() before it reads results (a no-op in the simulator, whose launches are
// synchronous).
#pragma once

#include <cstddef>
#include <new>
#include <string>
#include <vector>

#include <strata/strata.cuh>

namespace kernel_test {
STRATA_EXECUTOR_BEGIN  // Vec and sync_device differ between the executors

#if STRATA_SIM
template <class T>
using Vec = std::vector<T>;

/// Nothing to wait for: simulated launches have finished when they return.
inline std::string sync_device() {
  return {};
}
#else
/// std::allocator's interface over cudaMallocManaged.
template <class T>
struct ManagedAllocator {
  using value_type = T;
  ManagedAllocator() = default;
  template <class U>
  ManagedAllocator(const ManagedAllocator<U>&) {}
  T* allocate(std::size_t n) {
    if (n == 0) return nullptr;
    void* p = nullptr;
    if (cudaMallocManaged(&p, n * sizeof(T)) != cudaSuccess) throw std::bad_alloc();
    return static_cast<T*>(p);
  }
  void deallocate(T* p, std::size_t) {
    if (p) cudaFree(p);
  }
  template <class U>
  bool operator==(const ManagedAllocator<U>&) const {
    return true;
  }
};
template <class T>
using Vec = std::vector<T, ManagedAllocator<T>>;

/// Waits for the device; returns its error, if any (empty: none).
inline std::string sync_device() {
  const cudaError_t e = cudaDeviceSynchronize();
  return e == cudaSuccess ? std::string() : std::string("device: ") + cudaGetErrorString(e);
}
#endif

STRATA_EXECUTOR_END
}  // namespace kernel_test
