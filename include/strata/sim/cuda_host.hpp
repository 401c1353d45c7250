/// \file
/// CUDA C++ on the host: the keywords, built-in variables and intrinsics a kernel uses, mapped
/// onto the simulator. Included (through <strata/strata.cuh>) by translation units that g++ or
/// clang compile; never under nvcc.
///
/// Every synchronising built-in takes a defaulted ::strata::Site, so a fault names the line
/// of the kernel that called it.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <atomic>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "strata/config.hpp"
#include "strata/sim/runtime.hpp"

// ------------------------------------------------------------------------------- keywords
#undef __shared__
#if STRATA_SIM_ASAN || STRATA_SIM_TSAN
// ASan puts red zones around statics but not thread-locals, and ThreadSanitizer understands the
// initialisation guard of a static (not of a thread-local) as synchronisation: sanitizer builds
// use plain statics and run one block at a time.
#define __shared__ static __attribute__((aligned(16), used))
#else
// One instance per worker OS thread, i.e. per running block; the section lets the simulator
// poison it at block start (see sim/smem.hpp). `used`: without it clang folds loads from a
// never-written static to 0, but the simulator writes it behind the compiler's back.
#define __shared__ \
  static thread_local __attribute__((section("strata_sim_smem"), aligned(16), used))
#endif
#undef __global__
#define __global__
#undef __launch_bounds__
#define __launch_bounds__(...)
#undef __grid_constant__
#define __grid_constant__

// ------------------------------------------------------------------ built-in variables
#undef threadIdx
#undef blockIdx
#undef blockDim
#undef gridDim
#define threadIdx (::strata::sim::detail::g_cur->tid)
#define blockIdx (::strata::sim::detail::g_block->bid)
#define blockDim (::strata::sim::detail::g_block->bdim)
#define gridDim (::strata::sim::detail::g_block->gdim)
#ifndef STRATA_SIM_NO_WARPSIZE
static constexpr int warpSize = 32;
#endif

// ----------------------------------------------------------------------------- barriers
inline void __syncthreads(::strata::Site s = ::strata::Site::current()) {
  ::strata::sim::detail::block_barrier(s, 1, ::strata::sim::detail::BarrierOp::kPlain);
}
inline int __syncthreads_count(int pred, ::strata::Site s = ::strata::Site::current()) {
  return ::strata::sim::detail::block_barrier(s, pred, ::strata::sim::detail::BarrierOp::kCount);
}
inline int __syncthreads_and(int pred, ::strata::Site s = ::strata::Site::current()) {
  return ::strata::sim::detail::block_barrier(s, pred, ::strata::sim::detail::BarrierOp::kAnd);
}
inline int __syncthreads_or(int pred, ::strata::Site s = ::strata::Site::current()) {
  return ::strata::sim::detail::block_barrier(s, pred, ::strata::sim::detail::BarrierOp::kOr);
}

// ------------------------------------------------------------------------ warp built-ins
namespace strata::sim::detail {

template <class T>
struct ShflIO {
  T in;
  T out;
  int arg;
  int width;
};

// CUDA semantics: lanes form segments of `width`; idx reads base + (arg mod width), up/down
// keep their own value past the segment's ends, xor may read earlier segments but keeps its own
// value for a later one. Reading a lane outside the member mask is undefined: a fault.
template <class T, int Kind>
STRATA_SIM_NO_TSAN void shfl_fn(Thread* lanes, unsigned mask) {
  for (unsigned m = mask; m; m &= m - 1) {
    const int l = __builtin_ctz(m);
    auto* io = static_cast<ShflIO<T>*>(lanes[l].wio);
    const int w = io->width;
    if (w <= 0 || w > 32 || (w & (w - 1)))
      fault_at(lanes[l], lanes[l].site,
               "shuffle width " + std::to_string(w) + " is not a power of two <= 32");
    const int base = l & ~(w - 1);
    const int arg = io->arg & 31;  // shfl.sync uses the low five bits of the lane operand
    int src = l;
    if constexpr (Kind == kShflIdx) src = base + (arg & (w - 1));
    if constexpr (Kind == kShflUp) src = (l - base - arg >= 0) ? l - arg : l;
    if constexpr (Kind == kShflDown) src = (l - base + arg < w) ? l + arg : l;
    if constexpr (Kind == kShflXor) {
      src = l ^ arg;
      if (src >= base + w) src = l;
    }
    if (!(mask >> src & 1u))
      fault_at(lanes[l], lanes[l].site,
               "shuffle reads lane " + std::to_string(src) +
                   ", which is not in the member mask (undefined value)");
    io->out = static_cast<ShflIO<T>*>(lanes[src].wio)->in;
  }
}

template <class T, int Kind>
STRATA_SIM_NO_TSAN inline T shfl(unsigned mask, T v, int arg, int width, const ::strata::Site& s) {
  static_assert(std::is_trivially_copyable_v<T>, "a shuffled value must be trivially copyable");
  ShflIO<T> io{v, v, arg, width};
  warp_collective(Kind, mask, &shfl_fn<T, Kind>, &io, s, false, &Counters::shuffles);
  return io.out;
}

struct VoteIO {
  int pred;
  unsigned out;
};
STRATA_SIM_NO_TSAN inline void vote_fn(Thread* lanes, unsigned mask) {
  unsigned r = 0;
  for (unsigned m = mask; m; m &= m - 1)
    if (static_cast<VoteIO*>(lanes[__builtin_ctz(m)].wio)->pred) r |= 1u << __builtin_ctz(m);
  for (unsigned m = mask; m; m &= m - 1) static_cast<VoteIO*>(lanes[__builtin_ctz(m)].wio)->out = r;
}
STRATA_SIM_NO_TSAN inline unsigned vote(unsigned mask, int pred, const ::strata::Site& s) {
  VoteIO io{pred, 0};
  warp_collective(kVote, mask, &vote_fn, &io, s, false, &Counters::votes);
  return io.out;
}
inline void nop_fn(Thread*, unsigned) {}

}  // namespace strata::sim::detail

template <class T>
inline T __shfl_sync(unsigned mask, T v, int src_lane, int width = 32,
                     ::strata::Site s = ::strata::Site::current()) {
  return ::strata::sim::detail::shfl<T, ::strata::sim::detail::kShflIdx>(mask, v, src_lane, width,
                                                                         s);
}
template <class T>
inline T __shfl_up_sync(unsigned mask, T v, unsigned delta, int width = 32,
                        ::strata::Site s = ::strata::Site::current()) {
  return ::strata::sim::detail::shfl<T, ::strata::sim::detail::kShflUp>(mask, v, int(delta), width,
                                                                        s);
}
template <class T>
inline T __shfl_down_sync(unsigned mask, T v, unsigned delta, int width = 32,
                          ::strata::Site s = ::strata::Site::current()) {
  return ::strata::sim::detail::shfl<T, ::strata::sim::detail::kShflDown>(mask, v, int(delta),
                                                                          width, s);
}
template <class T>
inline T __shfl_xor_sync(unsigned mask, T v, int lane_mask, int width = 32,
                         ::strata::Site s = ::strata::Site::current()) {
  return ::strata::sim::detail::shfl<T, ::strata::sim::detail::kShflXor>(mask, v, lane_mask, width,
                                                                         s);
}
inline unsigned __ballot_sync(unsigned mask, int pred,
                              ::strata::Site s = ::strata::Site::current()) {
  return ::strata::sim::detail::vote(mask, pred, s);
}
inline int __any_sync(unsigned mask, int pred, ::strata::Site s = ::strata::Site::current()) {
  return ::strata::sim::detail::vote(mask, pred, s) != 0;
}
inline int __all_sync(unsigned mask, int pred, ::strata::Site s = ::strata::Site::current()) {
  return ::strata::sim::detail::vote(mask, pred, s) == mask;
}
inline void __syncwarp(unsigned mask = 0xffffffffu, ::strata::Site s = ::strata::Site::current()) {
  ::strata::sim::detail::warp_collective(::strata::sim::detail::kSyncWarp, mask,
                                         &::strata::sim::detail::nop_fn, nullptr, s, true,
                                         &::strata::sim::Counters::syncwarps);
}

// ------------------------------------------------------------------------------- atomics
// Fibers of a block share one OS thread, but blocks run on several workers: every atomic is a
// real atomic read-modify-write.
template <class T>
inline T atomicAdd(T* p, T v) {
  static_assert(std::is_arithmetic_v<T>, "atomicAdd on an arithmetic type");
  return std::atomic_ref<T>(*p).fetch_add(v, std::memory_order_relaxed);
}
template <class T>
inline T atomicSub(T* p, T v) {
  static_assert(std::is_integral_v<T>, "atomicSub on an integer type");
  return std::atomic_ref<T>(*p).fetch_sub(v, std::memory_order_relaxed);
}
template <class T>
inline T atomicMax(T* p, T v) {
  static_assert(std::is_integral_v<T>, "atomicMax on an integer type (as in CUDA)");
  std::atomic_ref<T> r(*p);
  T old = r.load(std::memory_order_relaxed);
  while (old < v && !r.compare_exchange_weak(old, v, std::memory_order_relaxed)) {
  }
  return old;
}
template <class T>
inline T atomicMin(T* p, T v) {
  static_assert(std::is_integral_v<T>, "atomicMin on an integer type (as in CUDA)");
  std::atomic_ref<T> r(*p);
  T old = r.load(std::memory_order_relaxed);
  while (v < old && !r.compare_exchange_weak(old, v, std::memory_order_relaxed)) {
  }
  return old;
}
template <class T>
inline T atomicCAS(T* p, T compare, T v) {
  static_assert(std::is_integral_v<T>, "atomicCAS on an integer type");
  std::atomic_ref<T>(*p).compare_exchange_strong(compare, v, std::memory_order_relaxed);
  return compare;
}
template <class T>
inline T atomicExch(T* p, T v) {
  return std::atomic_ref<T>(*p).exchange(v, std::memory_order_relaxed);
}
inline void __threadfence_block() {
  std::atomic_thread_fence(std::memory_order_seq_cst);
}
inline void __threadfence() {
  std::atomic_thread_fence(std::memory_order_seq_cst);
}

/// A kernel's `__trap()` aborts the launch with a fault at the calling line.
inline void __trap(::strata::Site s = ::strata::Site::current()) {
  ::strata::sim::detail::fault_at(*::strata::sim::detail::g_cur, s, "__trap() called");
}

// ------------------------------------------------------------------- math and bit intrinsics
// The fast-math intrinsics are computed exactly here; on the GPU they carry the documented
// error of the CUDA Math API (e.g. __expf: 2 + 1.16*|1.16*x| ulp).
inline float __expf(float x) {
  return std::exp(x);
}
inline float __logf(float x) {
  return std::log(x);
}
inline float __fdividef(float a, float b) {
  return a / b;
}
inline float __frcp_rn(float x) {
  return 1.0f / x;
}
inline float rsqrtf(float x) {
  return 1.0f / std::sqrt(x);
}
inline float __saturatef(float x) {
  return x < 0.f ? 0.f : (x > 1.f ? 1.f : x);
}
inline float __int_as_float(int x) {
  return std::bit_cast<float>(x);
}
inline int __float_as_int(float x) {
  return std::bit_cast<int>(x);
}
inline float __uint_as_float(unsigned x) {
  return std::bit_cast<float>(x);
}
inline unsigned __float_as_uint(float x) {
  return std::bit_cast<unsigned>(x);
}
inline int __popc(unsigned x) {
  return __builtin_popcount(x);
}
inline int __popcll(unsigned long long x) {
  return __builtin_popcountll(x);
}
inline int __ffs(int x) {
  return __builtin_ffs(x);
}
inline int __clz(int x) {
  return x == 0 ? 32 : __builtin_clz(unsigned(x));
}
inline unsigned __brev(unsigned x) {
  x = ((x >> 1) & 0x55555555u) | ((x & 0x55555555u) << 1);
  x = ((x >> 2) & 0x33333333u) | ((x & 0x33333333u) << 2);
  x = ((x >> 4) & 0x0F0F0F0Fu) | ((x & 0x0F0F0F0Fu) << 4);
  x = ((x >> 8) & 0x00FF00FFu) | ((x & 0x00FF00FFu) << 8);
  return (x >> 16) | (x << 16);
}
template <class T>
inline T __ldg(const T* p) {
  return *p;
}
