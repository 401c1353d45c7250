/// \file
/// Whether the current device runs sm_90a code (wgmma, setmaxnreg): what the API's dispatch asks
/// before it picks a Hopper kernel (api/flash_sm90.hpp). On a GPU: compute capability 9.x and
/// device code of this translation unit compiled for sm_90a (a build for sm_80, or plain sm_90,
/// runs on an H100 without those instructions); in the simulator: sim::Options::device_arch.
#pragma once

#include "strata/config.hpp"
#if STRATA_SIM
#include "strata/sim/options.hpp"
#else
#include <cuda_runtime.h>
#endif

namespace strata::arch {
STRATA_EXECUTOR_BEGIN

#if !STRATA_SIM
/// A marker of what this translation unit's device code for the current device was compiled for:
/// static shared memory in its sm_90a variant (wgmma, setmaxnreg; cuobjdump shows 1,152 bytes for
/// its 16 there), none in the others (a build for sm_80, or plain sm_90, runs on an H100 without
/// them). Never launched: its attributes tell (cudaFuncGetAttributes: no launch, no
/// synchronisation, legal while a stream is captured). static: each translation unit asks about
/// its own code.
static __global__ void sm90a_marker_kernel(int* out) {
#if STRATA_HAS_SM90A
  __shared__ int mark[4];
  mark[threadIdx.x % 4] = int(threadIdx.x);
  __syncthreads();
  *out = mark[(threadIdx.x + 1) % 4];
#else
  (void)out;
#endif
}
#endif

/// Whether the current device runs the sm_90a kernels: compute capability 9.x and, on a GPU,
/// code compiled for sm_90a; in the simulator, sim::Options::device_arch == 90. `sms` receives
/// the device's SM count (132 simulated). On a GPU the answer is found once per device (its
/// attributes, then sm90a_marker_kernel's) and cached: a launch then costs one cudaGetDevice.
/// static: the cache belongs to this translation unit's code.
static inline bool device_runs_sm90a(int* sms) {
#if STRATA_SIM
  *sms = 132;
  return sim::options().device_arch == 90;
#else
  static int known[64] = {};  // per device: 0 not asked yet, 1 runs sm_90a code, 2 does not
  static int known_sms[64] = {};
  int dev = 0;
  *sms = 0;
  if (cudaGetDevice(&dev) != cudaSuccess || dev < 0 || dev >= 64) return false;
  if (known[dev] == 0) {
    int major = 0, count = 0;
    cudaFuncAttributes marker{};
    const bool ok =
        cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) == cudaSuccess &&
        cudaDeviceGetAttribute(&count, cudaDevAttrMultiProcessorCount, dev) == cudaSuccess &&
        major == 9 &&
        cudaFuncGetAttributes(&marker, reinterpret_cast<const void*>(&sm90a_marker_kernel)) ==
            cudaSuccess &&
        marker.sharedSizeBytes > 0;
    known_sms[dev] = count;
    known[dev] = ok ? 1 : 2;
  }
  *sms = known_sms[dev];
  return known[dev] == 1;
#endif
}

STRATA_EXECUTOR_END
}  // namespace strata::arch
