/// \file
/// TMA (sm_90): one thread copies a whole box of a tiled tensor between global and shared
/// memory (cp.async.bulk.tensor). Loads complete their bytes on an mbarrier (announce them first
/// with mbarrier_arrive_expect_tx; consumers wait on the barrier); stores are grouped like
/// cp.async (commit, then wait until the sources have been read before reusing them). The box's
/// shape, element type and swizzle live in the tensor map (arch/tensor_map.hpp), passed by
/// address: a __grid_constant__ kernel parameter, or global memory.
///
/// Shared boxes are 128-byte aligned, and a swizzled box is aligned to its pattern (256, 512,
/// 1024 bytes for 32B, 64B, 128B swizzles) so that wgmma descriptors can name it with a base
/// offset of 0. A shared buffer written by the generic proxy (st.shared, stmatrix) needs
/// fence_proxy_async before a TMA store reads it.
///
/// In the simulator (sim/tma.hpp) a load's destination reads NaN until the barrier phase it
/// completes is waited for, and misaligned boxes, foreign tensor maps, overlapping loads in
/// flight, byte counts that disagree with expect_tx, store sources changed before the read and
/// missing proxy fences after stmatrix are faults.
#pragma once

#include <cstdint>

#include "strata/arch/smem.hpp"
#include "strata/arch/tensor_map.hpp"
#include "strata/config.hpp"
#if STRATA_SIM
#include "strata/sim/tma.hpp"
#endif

namespace strata::arch {
STRATA_EXECUTOR_BEGIN

/// Loads the 2D box at (c0, c1) (c0: the contiguous dimension, in elements; negative or past the
/// end reads zeros) into `smem_dst`, completing its bytes on `bar`.
STRATA_DEVICE void tma_load_2d(void* smem_dst, const tma::TensorMap* map, uint64_t* bar, int c0,
                               int c1 STRATA_SITE_DECL) {
#if STRATA_DEVICE_PASS && STRATA_HAS_SM90
  asm volatile(
      "cp.async.bulk.tensor.2d.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1, {%2, "
      "%3}], [%4];\n" ::"r"(smem_u32(smem_dst)),
      "l"(map), "r"(c0), "r"(c1), "r"(smem_u32(bar))
      : "memory");
#elif STRATA_SIM
  const int32_t c[2] = {c0, c1};
  sim::emu::tma_load<2>(smem_dst, map, bar, c, strata_site_);
#endif
}

/// Loads the 3D box at (c0, c1, c2) into `smem_dst`, completing its bytes on `bar`.
STRATA_DEVICE void tma_load_3d(void* smem_dst, const tma::TensorMap* map, uint64_t* bar, int c0,
                               int c1, int c2 STRATA_SITE_DECL) {
#if STRATA_DEVICE_PASS && STRATA_HAS_SM90
  asm volatile(
      "cp.async.bulk.tensor.3d.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1, {%2, "
      "%3, %4}], [%5];\n" ::"r"(smem_u32(smem_dst)),
      "l"(map), "r"(c0), "r"(c1), "r"(c2), "r"(smem_u32(bar))
      : "memory");
#elif STRATA_SIM
  const int32_t c[3] = {c0, c1, c2};
  sim::emu::tma_load<3>(smem_dst, map, bar, c, strata_site_);
#endif
}

/// Stores the 2D box at `smem_src` to (c0, c1) (elements out of bounds are not written).
STRATA_DEVICE void tma_store_2d(const tma::TensorMap* map, const void* smem_src, int c0,
                                int c1 STRATA_SITE_DECL) {
#if STRATA_DEVICE_PASS && STRATA_HAS_SM90
  asm volatile(
      "cp.async.bulk.tensor.2d.global.shared::cta.bulk_group [%0, {%2, %3}], [%1];\n" ::"l"(map),
      "r"(smem_u32(smem_src)), "r"(c0), "r"(c1)
      : "memory");
#elif STRATA_SIM
  const int32_t c[2] = {c0, c1};
  sim::emu::tma_store<2>(map, smem_src, c, strata_site_);
#endif
}

/// Stores the 3D box at `smem_src` to (c0, c1, c2).
STRATA_DEVICE void tma_store_3d(const tma::TensorMap* map, const void* smem_src, int c0, int c1,
                                int c2 STRATA_SITE_DECL) {
#if STRATA_DEVICE_PASS && STRATA_HAS_SM90
  asm volatile(
      "cp.async.bulk.tensor.3d.global.shared::cta.bulk_group [%0, {%2, %3, %4}], [%1];\n" ::"l"(
          map),
      "r"(smem_u32(smem_src)), "r"(c0), "r"(c1), "r"(c2)
      : "memory");
#elif STRATA_SIM
  const int32_t c[3] = {c0, c1, c2};
  sim::emu::tma_store<3>(map, smem_src, c, strata_site_);
#endif
}

/// cp.async.bulk.commit_group: closes the group of TMA stores this thread issued since the last.
STRATA_DEVICE void tma_store_commit() {
#if STRATA_DEVICE_PASS && STRATA_HAS_SM90
  asm volatile("cp.async.bulk.commit_group;\n" ::: "memory");
#elif STRATA_SIM
  sim::emu::tma_store_commit();
#endif
}

/// cp.async.bulk.wait_group.read N: waits until at most `N` committed groups have not yet read
/// their shared sources (which may then be overwritten).
template <int N>
STRATA_DEVICE void tma_store_wait_read() {
  static_assert(N >= 0 && N < 8, "wait_group takes a small non-negative immediate");
#if STRATA_DEVICE_PASS && STRATA_HAS_SM90
  asm volatile("cp.async.bulk.wait_group.read %0;\n" ::"n"(N) : "memory");
#elif STRATA_SIM
  sim::emu::tma_store_wait_read(N);
#endif
}

STRATA_EXECUTOR_END
}  // namespace strata::arch
