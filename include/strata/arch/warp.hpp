/// \file
/// Strata's warp helpers: the only callers of __shfl*_sync, __ballot_sync and __syncwarp in the
/// library. Each takes the member mask last-but-one (default: the full warp) and, in the
/// simulator, the caller's source location, so a mask fault names the kernel's line.
#pragma once

#include <cstdint>

#include "strata/config.hpp"
#if STRATA_SIM
#include "strata/sim/cuda_host.hpp"
#endif

namespace strata::arch {
STRATA_EXECUTOR_BEGIN

/// All 32 lanes.
inline constexpr unsigned kFullMask = 0xffffffffu;

/// Value of `v` held by lane `src` of the segment of `width` lanes.
template <class T>
STRATA_DEVICE T shfl(T v, int src, int width = 32, unsigned mask = kFullMask STRATA_SITE_DECL) {
  return __shfl_sync(mask, v, src, width STRATA_SITE_ARG);
}
/// Value of `v` held by lane (this lane - delta); lanes below keep their own.
template <class T>
STRATA_DEVICE T shfl_up(T v, unsigned delta, int width = 32,
                        unsigned mask = kFullMask STRATA_SITE_DECL) {
  return __shfl_up_sync(mask, v, delta, width STRATA_SITE_ARG);
}
/// Value of `v` held by lane (this lane + delta); lanes past the segment keep their own.
template <class T>
STRATA_DEVICE T shfl_down(T v, unsigned delta, int width = 32,
                          unsigned mask = kFullMask STRATA_SITE_DECL) {
  return __shfl_down_sync(mask, v, delta, width STRATA_SITE_ARG);
}
/// Value of `v` held by lane (this lane ^ lane_mask): the butterfly of reductions.
template <class T>
STRATA_DEVICE T shfl_xor(T v, int lane_mask, int width = 32,
                         unsigned mask = kFullMask STRATA_SITE_DECL) {
  return __shfl_xor_sync(mask, v, lane_mask, width STRATA_SITE_ARG);
}
/// Bit i set iff lane i of `mask` has `pred` true.
STRATA_DEVICE unsigned ballot(bool pred, unsigned mask = kFullMask STRATA_SITE_DECL) {
  return __ballot_sync(mask, pred STRATA_SITE_ARG);
}
/// True iff `pred` holds on any lane of `mask`.
STRATA_DEVICE bool any(bool pred, unsigned mask = kFullMask STRATA_SITE_DECL) {
  return __any_sync(mask, pred STRATA_SITE_ARG) != 0;
}
/// True iff `pred` holds on every lane of `mask`.
STRATA_DEVICE bool all(bool pred, unsigned mask = kFullMask STRATA_SITE_DECL) {
  return __all_sync(mask, pred STRATA_SITE_ARG) != 0;
}
/// Synchronises the lanes of `mask` and orders their memory accesses.
STRATA_DEVICE void syncwarp(unsigned mask = kFullMask STRATA_SITE_DECL) {
  __syncwarp(mask STRATA_SITE_ARG);
}

/// Sum functor for warp reductions.
struct SumOp {
  template <class T>
  STRATA_HOST_DEVICE T operator()(T a, T b) const {
    return a + b;
  }
};
/// Maximum functor for warp reductions (NaN-propagation as `a > b ? a : b`).
struct MaxOp {
  template <class T>
  STRATA_HOST_DEVICE T operator()(T a, T b) const {
    return a > b ? a : b;
  }
};
/// Minimum functor for warp reductions.
struct MinOp {
  template <class T>
  STRATA_HOST_DEVICE T operator()(T a, T b) const {
    return a < b ? a : b;
  }
};

/// Reduces `v` over each segment of `Width` lanes (a power of two <= 32) with a butterfly:
/// every lane of the segment receives the result.
template <int Width = 32, class T, class Op>
STRATA_DEVICE T warp_allreduce(T v, Op op, unsigned mask = kFullMask STRATA_SITE_DECL) {
  static_assert(Width >= 1 && Width <= 32 && (Width & (Width - 1)) == 0,
                "Width: power of two <= 32");
  STRATA_UNROLL
  for (int offset = Width / 2; offset > 0; offset /= 2)
    v = op(v, shfl_xor(v, offset, Width, mask STRATA_SITE_ARG));
  return v;
}
/// Sum of `v` over each segment of `Width` lanes, on every lane.
template <int Width = 32, class T>
STRATA_DEVICE T warp_sum(T v, unsigned mask = kFullMask STRATA_SITE_DECL) {
  return warp_allreduce<Width>(v, SumOp{}, mask STRATA_SITE_ARG);
}
/// Maximum of `v` over each segment of `Width` lanes, on every lane.
template <int Width = 32, class T>
STRATA_DEVICE T warp_max(T v, unsigned mask = kFullMask STRATA_SITE_DECL) {
  return warp_allreduce<Width>(v, MaxOp{}, mask STRATA_SITE_ARG);
}
/// Minimum of `v` over each segment of `Width` lanes, on every lane.
template <int Width = 32, class T>
STRATA_DEVICE T warp_min(T v, unsigned mask = kFullMask STRATA_SITE_DECL) {
  return warp_allreduce<Width>(v, MinOp{}, mask STRATA_SITE_ARG);
}

/// Row-sum reducer for strata/core functions when a row is split over aligned groups of `Width`
/// lanes: every lane of the warp must call it (rows past the end compute on a clamped row).
template <int Width>
struct LaneGroupSum {
  STRATA_DEVICE float operator()(float x) const { return warp_sum<Width>(x); }
};

STRATA_EXECUTOR_END
}  // namespace strata::arch
