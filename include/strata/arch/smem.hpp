/// \file
/// Shared-memory plumbing that differs between the executors: the dynamic shared memory of a
/// launch, and the 32-bit shared-window address PTX instructions take.
#pragma once

#include <cstdint>

#include "strata/config.hpp"

#if STRATA_SIM
#include "strata/sim/runtime.hpp"
/// Declares `T* name` pointing at the launch's dynamic shared memory (128-byte aligned on the
/// GPU, 1024-byte aligned in the simulator).
#define STRATA_DYNAMIC_SMEM(T, name) \
  T* name = reinterpret_cast<T*>(::strata::sim::detail::g_block->dyn.data())
#else
#define STRATA_DYNAMIC_SMEM(T, name)                                     \
  extern __shared__ __align__(128) unsigned char strata_dynamic_smem_[]; \
  T* name = reinterpret_cast<T*>(strata_dynamic_smem_)
#endif

namespace strata::arch {
STRATA_EXECUTOR_BEGIN

#if STRATA_DEVICE_PASS
/// Address of a shared-memory object in the shared window, as PTX instructions expect it.
STRATA_DEVICE uint32_t smem_u32(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}
#elif STRATA_SIM
/// In the simulator: the byte offset of `p` in the launch's dynamic shared memory, the address
/// space its wgmma descriptors are decoded in (dynamic shared memory starts at 0 there).
STRATA_DEVICE uint32_t smem_u32(const void* p) {
  return static_cast<uint32_t>(static_cast<const unsigned char*>(p) -
                               ::strata::sim::detail::g_block->dyn.data());
}
#endif

STRATA_EXECUTOR_END
}  // namespace strata::arch
