/// \file
/// strata::launch: the one way Strata (and its users) launch a kernel. Under nvcc it is a
/// <<<>>> launch whose Status comes from the CUDA runtime; in a translation unit compiled by
/// g++/clang it runs the kernel in the SIMT simulator, in order, on the calling thread.
#pragma once

#include <cstdio>
#include <string>
#include <utility>

#include "strata/config.hpp"
#include "strata/status.hpp"

#if STRATA_SIM
#include "strata/sim/launch.hpp"
#else
#include <cuda_runtime.h>
#endif

namespace strata {

namespace detail {
inline std::string dim3_str(dim3 d) {
  char buf[48];
  std::snprintf(buf, sizeof buf, "(%u,%u,%u)", d.x, d.y, d.z);
  return buf;
}
}  // namespace detail

STRATA_EXECUTOR_BEGIN

/// Largest dynamic shared memory a launch may request: the device's opt-in limit under nvcc,
/// sim::Options::max_dynamic_smem in the simulator.
inline size_t max_dynamic_smem_bytes() {
#if STRATA_SIM
  return sim::options().max_dynamic_smem;
#else
  int dev = 0, bytes = 0;
  if (cudaGetDevice(&dev) != cudaSuccess ||
      cudaDeviceGetAttribute(&bytes, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev) != cudaSuccess)
    return 48 * 1024;
  return size_t(bytes);
#endif
}

/// Checks a launch configuration against the CUDA limits; the message names the bad field.
inline Status validate_launch(dim3 grid, dim3 block, size_t smem_bytes) {
  using detail::dim3_str;
  if (grid.x == 0 || grid.y == 0 || grid.z == 0)
    return Status::InvalidLaunch("grid " + dim3_str(grid) + " has a zero dimension");
  if (block.x == 0 || block.y == 0 || block.z == 0)
    return Status::InvalidLaunch("block " + dim3_str(block) + " has a zero dimension");
  if (grid.y > 65535 || grid.z > 65535 || grid.x > 2147483647u)
    return Status::InvalidLaunch("grid " + dim3_str(grid) + " exceeds (2^31-1, 65535, 65535)");
  if (block.x > 1024 || block.y > 1024 || block.z > 64)
    return Status::InvalidLaunch("block " + dim3_str(block) + " exceeds (1024, 1024, 64)");
  const unsigned long long threads = 1ull * block.x * block.y * block.z;
  if (threads > 1024)
    return Status::InvalidLaunch("block " + dim3_str(block) + " has " + std::to_string(threads) +
                                 " threads, more than 1024");
  if (smem_bytes > max_dynamic_smem_bytes())
    return Status::InvalidLaunch(
        "smem_bytes " + std::to_string(smem_bytes) + " exceeds the limit of " +
        std::to_string(max_dynamic_smem_bytes()) + " bytes of dynamic shared memory per block");
  return Status::Ok();
}

/// Launches `kernel<<<grid, block, smem_bytes, stream>>>(args...)` and returns its Status.
/// An invalid configuration is rejected before anything runs. Under nvcc the launch is
/// asynchronous, as usual; in the simulator it has completed when this returns, and `stream` is
/// ignored (launches run in order on the calling thread).
template <class... Params, class... Args>
Status launch(void (*kernel)(Params...), dim3 grid, dim3 block, size_t smem_bytes,
              cudaStream_t stream, Args&&... args) {
  static_assert(sizeof...(Params) == sizeof...(Args), "wrong number of kernel arguments");
  if (Status s = validate_launch(grid, block, smem_bytes); !s.ok()) return s;
#if STRATA_SIM
  (void)stream;
  return sim::run(kernel, grid, block, smem_bytes, std::forward<Args>(args)...);
#else
  if (smem_bytes > 48 * 1024) {
    const cudaError_t e =
        cudaFuncSetAttribute(reinterpret_cast<const void*>(kernel),
                             cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem_bytes));
    if (e != cudaSuccess)
      return Status::CudaError(std::string("cudaFuncSetAttribute: ") + cudaGetErrorString(e));
  }
  kernel<<<grid, block, smem_bytes, stream>>>(Params(std::forward<Args>(args))...);  // the launch
  const cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess)
    return Status::CudaError(std::string("kernel launch: ") + cudaGetErrorString(e));
  return Status::Ok();
#endif
}

STRATA_EXECUTOR_END
}  // namespace strata
