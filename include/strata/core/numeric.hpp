/// \file
/// Storage types and fp32 compute: loads and stores of bf16 / fp16 / fp32 rows, the unit roundoff
/// of each storage type (tests derive their tolerances from it), the row-sum reducer concept, and
/// a sigmoid that is finite for every input.
///
/// All core math is fp32 in registers (SPEC §7.7); storage is bf16, fp16 or fp32. Rounding goes
/// through cuda_bf16.h / cuda_fp16.h on both executors, so the CPU simulator rounds exactly like
/// the GPU.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cmath>
#include <cstring>
#include <type_traits>

#include "strata/arch/sfu.hpp"
#include "strata/config.hpp"

namespace strata::core {

/// True for the storage types the core functions load and store.
template <class T>
inline constexpr bool kIsStorage =
    std::is_same_v<T, float> || std::is_same_v<T, __half> || std::is_same_v<T, __nv_bfloat16>;

/// Unit roundoff u = 2^-p of a storage type (p = significand bits incl. the implicit one):
/// round-to-nearest of x has |fl(x) - x| <= u |x| (in the normal range).
template <class T>
inline constexpr float kUnitRoundoff = std::is_same_v<T, __nv_bfloat16> ? 0x1p-8f
                                       : std::is_same_v<T, __half>      ? 0x1p-11f
                                                                        : 0x1p-24f;

/// Widens a storage element to fp32.
template <class T>
STRATA_HOST_DEVICE float to_float(T x) {
  static_assert(kIsStorage<T>, "storage type must be float, __half or __nv_bfloat16");
  if constexpr (std::is_same_v<T, float>)
    return x;
  else if constexpr (std::is_same_v<T, __half>)
    return __half2float(x);
  else
    return __bfloat162float(x);
}

/// Rounds fp32 to a storage type (round to nearest even).
template <class T>
STRATA_HOST_DEVICE T from_float(float x) {
  static_assert(kIsStorage<T>, "storage type must be float, __half or __nv_bfloat16");
  if constexpr (std::is_same_v<T, float>)
    return x;
  else if constexpr (std::is_same_v<T, __half>)
    return __float2half_rn(x);
  else
    return __float2bfloat16_rn(x);
}

/// Loads N consecutive elements into registers as fp32.
template <int N, class T>
STRATA_HOST_DEVICE void load_row(const T* p, float (&x)[N]) {
  STRATA_UNROLL
  for (int i = 0; i < N; ++i) x[i] = to_float(p[i]);
}

/// Stores N fp32 registers to consecutive elements of a storage type.
template <int N, class T>
STRATA_HOST_DEVICE void store_row(const float (&x)[N], T* p) {
  STRATA_UNROLL
  for (int i = 0; i < N; ++i) p[i] = from_float<T>(x[i]);
}

/// Rounds two fp32 values to a storage type and stores them to p[0] and p[1] as one access of 4
/// bytes (bf16, fp16) or 8 (fp32); `p` must be aligned to two elements. A warp storing fragment
/// rows element by element issues 2-byte stores that use a quarter of each 32-byte sector; paired,
/// half.
template <class T>
STRATA_HOST_DEVICE void store_pair(T* p, float a, float b) {
  static_assert(kIsStorage<T>, "storage type must be float, __half or __nv_bfloat16");
#if STRATA_DEVICE_PASS
  if constexpr (std::is_same_v<T, float>)
    *reinterpret_cast<float2*>(p) = make_float2(a, b);
  else if constexpr (std::is_same_v<T, __half>)
    *reinterpret_cast<__half2*>(p) = __floats2half2_rn(a, b);
  else
    *reinterpret_cast<__nv_bfloat162*>(p) = __floats2bfloat162_rn(a, b);
#else
  const T v[2] = {from_float<T>(a), from_float<T>(b)};
  std::memcpy(p, v, sizeof v);  // one 4- or 8-byte store
#endif
}

/// Loads p[0] and p[1] (fp32, `p` 8-byte aligned) as one 8-byte access, as store_pair<float>
/// stores them: the host compiler may split a float2 copy into two 4-byte accesses, which the
/// simulator's shared-memory model would charge as a 32-lane request.
STRATA_HOST_DEVICE void load_pair(const float* p, float& a, float& b) {
#if STRATA_DEVICE_PASS
  const float2 v = *reinterpret_cast<const float2*>(p);
  a = v.x, b = v.y;
#else
  float v[2];
  std::memcpy(v, p, sizeof v);  // one 8-byte load
  a = v[0], b = v[1];
#endif
}

/// The row-sum reducer of a thread that owns a whole row: the identity. Core functions take a
/// reducer so that a row split over several threads (a kernel's lane group) can pass one that
/// sums across the group (e.g. a shfl_xor butterfly); every thread of the group must call it.
struct LocalSum {
  STRATA_HOST_DEVICE float operator()(float x) const { return x; }
};

/// Logistic sigmoid 1 / (1 + e^-x), finite and without overflow for every x (including +-inf).
STRATA_HOST_DEVICE float sigmoid(float x) {
  if (x >= 0.f) return 1.f / (1.f + arch::exp_e(-x));
  const float e = arch::exp_e(x);  // x < 0: e in [0, 1), no overflow
  return e / (1.f + e);
}

}  // namespace strata::core
