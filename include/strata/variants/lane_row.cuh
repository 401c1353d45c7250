/// \file
/// One (token, head) row split over a group of W lanes, and the fragment I/O every token-local
/// pass shares (Depth-Attention's, ExoFormer's, MEA's): a lane's share of a row loaded to fp32,
/// stored rounded to T, added to / accumulated into fp32 rows, gathered from a staged fp32 row,
/// rotated by RoPE. Lane i owns columns [i D/2W, (i+1) D/2W) and their RoPE partners D/2 + the
/// same, so a rotation pairs two elements of one lane's fragment and needs no shuffle.
#pragma once

#include <cstdint>

#include "strata/core/numeric.hpp"
#include "strata/core/rope.hpp"
#include "strata/strata.cuh"

namespace strata::variants {

/// A row split over a group of W lanes: the lane's columns are col(e), e < D / W; elements
/// [0, D/2W) of its fragment are the first half's, [D/2W, D/W) their RoPE partners.
template <int D, int W>
struct LaneRow {
  static constexpr int kN = D / W, kHalf = D / (2 * W);
  int col0;  ///< the lane's first column: lane * D / 2W
  STRATA_HOST_DEVICE int col(int e) const {
    return e < kHalf ? col0 + e : D / 2 + col0 + e - kHalf;
  }
};

/// Row (t, h) of a dense [total, heads, D] tensor of T.
template <class T, int D>
STRATA_HOST_DEVICE const T* dense_row(const void* base, int heads, int t, int h) {
  return static_cast<const T*>(base) + (int64_t(t) * heads + h) * D;
}
template <class T, int D>
STRATA_HOST_DEVICE T* dense_row(void* base, int heads, int t, int h) {
  return static_cast<T*>(base) + (int64_t(t) * heads + h) * D;
}

STRATA_EXECUTOR_BEGIN

/// The lane's share of row `p` in fp32; zeros when !valid (p is not read).
template <class T, int D, int W>
STRATA_DEVICE void lane_load(bool valid, const T* p, const LaneRow<D, W>& r, float (&x)[D / W]) {
  STRATA_UNROLL
  for (int e = 0; e < D / W; ++e) x[e] = valid ? core::to_float(p[r.col(e)]) : 0.f;
}
/// Stores the lane's share rounded to T.
template <class T, int D, int W>
STRATA_DEVICE void lane_store(T* p, const LaneRow<D, W>& r, const float (&x)[D / W]) {
  STRATA_UNROLL
  for (int e = 0; e < D / W; ++e) p[r.col(e)] = core::from_float<T>(x[e]);
}
/// x += the lane's share of fp32 row `p`.
template <int D, int W>
STRATA_DEVICE void lane_add(const float* p, const LaneRow<D, W>& r, float (&x)[D / W]) {
  STRATA_UNROLL
  for (int e = 0; e < D / W; ++e) x[e] += p[r.col(e)];
}
/// fp32 row `p` += the lane's share.
template <int D, int W>
STRATA_DEVICE void lane_accumulate(float* p, const LaneRow<D, W>& r, const float (&x)[D / W]) {
  STRATA_UNROLL
  for (int e = 0; e < D / W; ++e) p[r.col(e)] += x[e];
}
/// The lane's share of an fp32 row always there (a gain staged in shared memory, a parameter).
template <int D, int W>
STRATA_DEVICE void lane_gather(const float* p, const LaneRow<D, W>& r, float (&x)[D / W]) {
  STRATA_UNROLL
  for (int e = 0; e < D / W; ++e) x[e] = p[r.col(e)];
}
/// x rounded to T and back: what a stored operand reads as.
template <class T, int N>
STRATA_DEVICE void lane_round(float (&x)[N]) {
  STRATA_UNROLL
  for (int e = 0; e < N; ++e) x[e] = core::to_float(core::from_float<T>(x[e]));
}
/// Rotate-half RoPE of the lane's share at position `pos` (its transpose when kBackward).
template <bool kBackward, int D, int W>
STRATA_DEVICE void lane_rope(float (&x)[D / W], const LaneRow<D, W>& r, float pos, float theta) {
  constexpr int kHalf = D / (2 * W);
  STRATA_UNROLL
  for (int e = 0; e < kHalf; ++e) {
    float c, s;
    core::rope_cos_sin(pos, r.col0 + e, D, theta, c, s);
    if (kBackward)
      core::rope_rotate_back(x[e], x[e + kHalf], c, s);
    else
      core::rope_rotate(x[e], x[e + kHalf], c, s);
  }
}

// The same on row (t, h) of a dense [total, heads, D] tensor (the passes' contiguous operands).
template <class T, int D, int W>
STRATA_DEVICE void load_dense(bool valid, const void* base, int heads, int t, int h,
                              const LaneRow<D, W>& r, float (&x)[D / W]) {
  lane_load(valid, dense_row<T, D>(base, heads, t, h), r, x);
}
// (the stores and adds below test `valid` before they form the address: a row past the end is
// never addressed, and the address is not kept live across the test)
template <class T, int D, int W>
STRATA_DEVICE void store_dense(bool valid, void* base, int heads, int t, int h,
                               const LaneRow<D, W>& r, const float (&x)[D / W]) {
  if (!valid) return;
  lane_store(dense_row<T, D>(base, heads, t, h), r, x);
}
/// x += fp32 row (t, h) of `base` (nothing when base is null: an optional accumulator).
template <int D, int W>
STRATA_DEVICE void add_dense(bool valid, const float* base, int heads, int t, int h,
                             const LaneRow<D, W>& r, float (&x)[D / W]) {
  if (!valid || !base) return;
  lane_add(dense_row<float, D>(base, heads, t, h), r, x);
}
template <int D, int W>
STRATA_DEVICE void accumulate_dense(bool valid, float* base, int heads, int t, int h,
                                    const LaneRow<D, W>& r, const float (&x)[D / W]) {
  if (!valid) return;
  lane_accumulate(dense_row<float, D>(base, heads, t, h), r, x);
}

STRATA_EXECUTOR_END
}  // namespace strata::variants
