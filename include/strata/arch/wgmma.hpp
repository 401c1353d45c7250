/// \file
/// wgmma (sm_90a): the warpgroup's asynchronous tensor-core GEMM, D[64 x N] (+)= A[64 x 16] *
/// B[16 x N] with f32 accumulators and bf16 / f16 inputs. B is always in shared memory, named by
/// a 64-bit descriptor (strata/arch/wgmma_layout.hpp builds and decodes them); A is in shared
/// memory too (SS) or in registers (RS, FlashAttention-3's P). The four warps of a warpgroup
/// issue the same op; warp w owns accumulator rows 16w..16w+15.
///
/// The op is asynchronous, and its rules are the caller's (PTX ISA, wgmma):
///  * wgmma_fence() before the first wgmma and after any access to its accumulator or A
///    registers (a chain of wgmmas on the same accumulators needs none between them);
///  * wgmma_commit() closes a group; wgmma_wait<N>() waits until at most N groups are pending;
///    the accumulators and A registers of a pending op must not be read or written;
///  * shared operands written by the generic proxy need fence_proxy_async (arch/sm90.hpp) first,
///    and must not change until the op's group has been waited for.
/// FlashAttention-3 overlaps its softmax with the next GEMM within these rules.
///
/// In the simulator (sim/wgmma.hpp) every rule is checked: the accumulators read as NaN until
/// their group is waited for, a wgmma without a fence since the registers were last touched, an
/// operand changed under an op in flight, a TMA load into one, and warps of a warpgroup issuing
/// different ops are faults.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>
#include <type_traits>

#include "strata/config.hpp"
#if STRATA_SIM
#include "strata/sim/wgmma.hpp"
#endif

namespace strata::arch {
STRATA_EXECUTOR_BEGIN

/// The accumulators of one m64nN wgmma chain, per thread: N/2 floats (thread 32w + l holds rows
/// 16w + l/4 and 16w + l/4 + 8, columns 8j + 2(l%4) and + 1). A class rather than a bare array
/// so that the simulator can check that no op on it is in flight when it dies.
template <int N>
struct WgmmaAcc {
  static_assert(N % 8 == 0 && N >= 8 && N <= 256, "wgmma: N is a multiple of 8 in 8..256");
  float r[N / 2];
#if STRATA_SIM
  WgmmaAcc() = default;
  WgmmaAcc(const WgmmaAcc&) = default;
  WgmmaAcc& operator=(const WgmmaAcc&) = default;
  ~WgmmaAcc() {
    sim::emu::wgmma_acc_dies(r);
  }
#endif
};

/// wgmma.fence.sync.aligned: orders this warpgroup's register accesses before the wgmmas after it.
STRATA_DEVICE void wgmma_fence(STRATA_SITE_DECL_FIRST) {
#if STRATA_DEVICE_PASS && STRATA_HAS_SM90A
  asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
#elif STRATA_SIM
  sim::emu::wgmma_fence(strata_site_);
#endif
}

/// wgmma.commit_group.sync.aligned: the wgmmas issued since the last commit form a group.
STRATA_DEVICE void wgmma_commit(STRATA_SITE_DECL_FIRST) {
#if STRATA_DEVICE_PASS && STRATA_HAS_SM90A
  asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
#elif STRATA_SIM
  sim::emu::wgmma_commit(strata_site_);
#endif
}

/// wgmma.wait_group.sync.aligned N: at most `N` groups remain pending; the others' accumulators
/// are written and their operands released.
template <int N>
STRATA_DEVICE void wgmma_wait(STRATA_SITE_DECL_FIRST) {
  static_assert(N >= 0 && N < 8, "wgmma.wait_group takes a small non-negative immediate");
#if STRATA_DEVICE_PASS && STRATA_HAS_SM90A
  asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory");
#elif STRATA_SIM
  sim::emu::wgmma_wait(N, strata_site_);
#endif
}

/// Keeps the compiler from moving accesses of `acc` across the asynchronous region (CUTLASS's
/// warpgroup_fence_operand): an empty asm that reads and writes every register.
template <int N>
STRATA_DEVICE void wgmma_fence_operand(WgmmaAcc<N>& acc) {
#if STRATA_DEVICE_PASS
  STRATA_UNROLL
  for (int i = 0; i < N / 2; ++i) asm volatile("" : "+f"(acc.r[i])::"memory");
#else
  (void)acc;
#endif
}

/// The same for the A registers of an RS wgmma (`K` k16 steps of 4 registers), so that the code
/// computing them (P from S) is not sunk past wgmma_fence, where ptxas would have to inject a
/// warpgroup.arrive (C7519).
template <int K>
STRATA_DEVICE void wgmma_fence_operand(uint32_t (&a)[K][4]) {
#if STRATA_DEVICE_PASS
  STRATA_UNROLL
  for (int k = 0; k < K; ++k) {
    STRATA_UNROLL
    for (int i = 0; i < 4; ++i) asm volatile("" : "+r"(a[k][i])::"memory");
  }
#else
  (void)a;
#endif
}

namespace wgmma_detail {
/// True for __nv_bfloat16 inputs, false for __half (the two types wgmma takes here).
template <class T>
inline constexpr bool kInputIsBf16 = std::is_same_v<T, __nv_bfloat16>;
template <class T>
inline constexpr bool kInputOk = std::is_same_v<T, __nv_bfloat16> || std::is_same_v<T, __half>;

template <int N, bool kBf16, bool kRs, int TransA, int TransB>
STRATA_DEVICE void issue(float (&d)[N / 2], uint64_t desc_a, const uint32_t (&a)[4],
                         uint64_t desc_b, int scale_d) {
#if STRATA_DEVICE_PASS && STRATA_HAS_SM90A
#include "strata/arch/wgmma_asm.inc"
  else static_assert(N < 0, "wgmma: no asm body for this N (scripts/gen_wgmma_asm.py lists them)");
#else
  (void)d, (void)desc_a, (void)a, (void)desc_b, (void)scale_d;
#endif
}
}  // namespace wgmma_detail

/// SS: acc (+)= A * B with A (64 x 16) and B (16 x N) in shared memory. `TransA` / `TransB` = 1:
/// the operand is MN-major (the transpose of the K-major canonical layout). `accumulate` = false
/// ignores acc's old contents (scale-d = 0).
template <int N, class T, int TransA = 0, int TransB = 0>
STRATA_DEVICE void wgmma_ss(WgmmaAcc<N>& acc, uint64_t desc_a, uint64_t desc_b,
                            bool accumulate STRATA_SITE_DECL) {
  static_assert(wgmma_detail::kInputOk<T>, "wgmma inputs: __nv_bfloat16 or __half");
  static_assert(TransA == 0 || TransA == 1, "TransA: 0 or 1");
  static_assert(TransB == 0 || TransB == 1, "TransB: 0 or 1");
#if STRATA_DEVICE_PASS
  constexpr uint32_t none[4] = {0, 0, 0, 0};
  wgmma_detail::issue<N, wgmma_detail::kInputIsBf16<T>, false, TransA, TransB>(
      acc.r, desc_a, none, desc_b, accumulate ? 1 : 0);
#elif STRATA_SIM
  sim::emu::wgmma<N>(acc.r, wgmma_detail::kInputIsBf16<T>, desc_a, nullptr, desc_b, accumulate,
                     TransA, TransB, strata_site_);
#endif
}

/// RS: acc (+)= A * B with A in registers (4 x 2 halves per thread, the accumulator map's rows,
/// k = 8(v/4) + 2(l%4) + v%2 for half v) and B (16 x N) in shared memory.
template <int N, class T, int TransB = 0>
STRATA_DEVICE void wgmma_rs(WgmmaAcc<N>& acc, const uint32_t (&a)[4], uint64_t desc_b,
                            bool accumulate STRATA_SITE_DECL) {
  static_assert(wgmma_detail::kInputOk<T>, "wgmma inputs: __nv_bfloat16 or __half");
  static_assert(TransB == 0 || TransB == 1, "TransB: 0 or 1");
#if STRATA_DEVICE_PASS
  wgmma_detail::issue<N, wgmma_detail::kInputIsBf16<T>, true, 0, TransB>(acc.r, 0, a, desc_b,
                                                                         accumulate ? 1 : 0);
#elif STRATA_SIM
  sim::emu::wgmma<N>(acc.r, wgmma_detail::kInputIsBf16<T>, 0, a, desc_b, accumulate, 0, TransB,
                     strata_site_);
#endif
}

STRATA_EXECUTOR_END
}  // namespace strata::arch
