/// \file
/// ResFormer and SVFormer value residuals (SPEC §2, decisions §7.3) as flash-attention policies.
///
///  ValueResidual  ResFormer layer l >= 1, forward: V'_l = lambda_self V_l + lambda_first V_0,
///                 formed in shared memory from each tile's raw V_l (cp.async) and V_0 (staged in
///                 registers or a second tile); on the sm_90 forward from two TMA tiles by the
///                 producer's mixer warps (v_aux_operand, v_mix); V' is not written to global
///                 memory (api::resformer_forward may write it once instead, on long sequences).
///  ValueResidualGrad  its backward: value_residual_mix_kernel writes V' once into a workspace,
///                 attention's backward runs on it, and the dK/dV store writes dV_l = lambda_self
///                 g, adds dV_0 += lambda_first g to the stack's fp32 accumulator and writes
///                 per-row partials of dlambda (reduced by value_residual_dlambda_kernel).
///  SharedValue    SVFormer layer l >= 1: attention reads layer 0's V (p.v = V_0, no V_l exists);
///                 backward adds g to the accumulator instead of writing a dV.
///  FirstValue     layer 0 of either: plain attention; backward writes dV_0 = g_0 + accumulator
///                 (the accumulator is complete: layers L-1 .. 1 ran before).
/// lambda is fp32 in device memory, one value (scalar) or one per KV head. The accumulator is fp32
/// [total_k, h_k, d], contiguous; every element is owned by one thread of one dK/dV block, so the
/// read-modify-write needs no atomics and the backward stays deterministic.
#pragma once

#include <cstdint>
#include <cstring>

#include "strata/attention/variant.hpp"
#include "strata/core/numeric.hpp"
#include "strata/core/value_residual.hpp"

namespace strata::variants {

using attention::FlashBwdParams;
using attention::FlashFwdParams;
using attention::RowSite;
using attention::TileSite;

/// fp32 accumulator element (row, KV head, column 0) of a [total_k, h_k, d] tensor.
STRATA_HOST_DEVICE float* accumulator_row(float* acc, const FlashFwdParams& p, const RowSite& r) {
  return acc + (r.token * p.h_k + r.head) * int64_t(p.d);
}

STRATA_EXECUTOR_BEGIN

/// ResFormer, layers l >= 1.
struct ValueResidual : attention::VanillaAttention {
  const void* v_first = nullptr;  ///< V_0 as stored (T), [total_k, h_k, d] with these strides
  int64_t v_first_row_stride = 0, v_first_head_stride = 0;
  const float* lambda_self = nullptr;   ///< [1] or [h_k]
  const float* lambda_first = nullptr;  ///< [1] or [h_k]
  bool per_head = false;

  STRATA_HOST_DEVICE float lam_self(int h_k) const { return lambda_self[per_head ? h_k : 0]; }
  STRATA_HOST_DEVICE float lam_first(int h_k) const { return lambda_first[per_head ? h_k : 0]; }

  /// The forward lands V_l by cp.async and V_0 in the kernel's stage (registers: plain 16-byte
  /// loads in flight during S = Q K^T; or a second tile by cp.async) and mixes them in shared
  /// memory after the wait (transform_v).
  static constexpr int kRawVTiles = 2;

  template <int D, int Threads, bool kInRegs, int N, class T>
  STRATA_DEVICE void load_v_raw(T* dst, T* aux, uint4 (&stage)[N], int ld, const FlashFwdParams& p,
                                const TileSite& s, int nrows, int tid) const {
    attention::VanillaAttention::load_v<D, Threads>(dst, ld, p, s, nrows, tid);
    const T* v0 = attention::head_rows(static_cast<const T*>(v_first), s.sb.k_begin,
                                       v_first_row_stride, s.h_k, v_first_head_stride);
    if constexpr (!kInRegs) {
      attention::load_tile_rows<D, Threads>(aux, ld, v0, v_first_row_stride, s.row0, s.sb.tk, nrows,
                                            tid);
    } else {
      constexpr int kChunks = D / 8;
      STRATA_UNROLL
      for (int i = 0; i < N; ++i) {
        const int c = tid + i * Threads;
        int r = 0, chunk = 0;  // cp.async's order: transform_v meets V_l's chunk without conflicts
        if (c < nrows * kChunks) attention::tile_chunk<D>(c, nrows, r, chunk);
        stage[i] = uint4{0u, 0u, 0u, 0u};  // +0 in bf16 and fp16: rows past the sequence
        if (c < nrows * kChunks && s.row0 + r < s.sb.tk)
          stage[i] = arch::load16(v0 + int64_t(s.row0 + r) * v_first_row_stride + chunk * 8);
      }
    }
  }

  /// The mix of one KV head's tiles, 8 elements at a time: lambda_self a + lambda_first b in
  /// fp32, one rounding to T (the one transform of both forwards and of
  /// value_residual_mix_kernel).
  struct Mix {
    float ls, lf;
    template <class T>
    STRATA_HOST_DEVICE uint4 apply(const uint4& a, const uint4& b) const {
      return ValueResidual::mix<T>(a, b, ls, lf);
    }
  };
  STRATA_HOST_DEVICE Mix v_mix(int h_k) const { return Mix{lam_self(h_k), lam_first(h_k)}; }
  /// The sm_90 forward's second raw V tile: V_0, landed by TMA beside V_l and mixed in place by
  /// the producer's mixer warps (attention/flash_fwd_sm90.cuh).
  STRATA_HOST_DEVICE attention::RowsOperand v_aux_operand() const {
    return attention::RowsOperand{v_first, v_first_row_stride, v_first_head_stride, "v_first"};
  }

  /// V' = lambda_self V_l + lambda_first V_0 in place of V_l, 16 bytes at a time in cp.async's
  /// chunk order (tile_chunk: no bank conflicts); the zero rows past the sequence stay zero.
  template <int D, int Threads, bool kInRegs, int N, class T>
  STRATA_DEVICE void transform_v(T* dst, const T* aux, const uint4 (&stage)[N], int ld,
                                 const TileSite& s, int nrows, int tid) const {
    const Mix f = v_mix(s.h_k);
    constexpr int kChunks = D / 8;
    if constexpr (kInRegs) {
      STRATA_UNROLL
      for (int i = 0; i < N; ++i) {
        const int c = tid + i * Threads;
        if (c >= nrows * kChunks) break;
        int r, chunk;
        attention::tile_chunk<D>(c, nrows, r, chunk);
        T* out = &dst[r * ld + chunk * 8];
        arch::store16(out, f.template apply<T>(arch::load16(out), stage[i]));
      }
    } else {
      for (int c = tid; c < nrows * kChunks; c += Threads) {
        int r, chunk;
        attention::tile_chunk<D>(c, nrows, r, chunk);
        T* out = &dst[r * ld + chunk * 8];
        arch::store16(
            out, f.template apply<T>(arch::load16(out), arch::load16(&aux[r * ld + chunk * 8])));
      }
    }
  }

  /// Eight elements of V_l (a) and V_0 (b) as stored: lambda_self a + lambda_first b in fp32, one
  /// rounding to T.
  template <class T>
  STRATA_HOST_DEVICE static uint4 mix(const uint4& a, const uint4& b, float ls, float lf) {
    T va[8], vb[8], mixed[8];
    memcpy(static_cast<void*>(va), &a, 16);  // T is a class: copy its bits
    memcpy(static_cast<void*>(vb), &b, 16);
    STRATA_UNROLL
    for (int e = 0; e < 8; ++e)
      mixed[e] = core::from_float<T>(ls * core::to_float(va[e]) + lf * core::to_float(vb[e]));
    uint4 out;
    memcpy(&out, mixed, 16);
    return out;
  }

  /// The backward kernels' V tile: not this policy's (ValueResidualGrad runs the backward on V'
  /// materialised by value_residual_mix_kernel, so that its tiles are plain cp.async loads).
  template <int D, int Threads, class T>
  STRATA_DEVICE void load_v(T*, int, const FlashFwdParams&, const TileSite&, int, int) const {
    static_assert(
        sizeof(T) == 0,
        "ResFormer's backward runs with ValueResidualGrad on V' (api::resformer_backward)");
  }
};

/// ResFormer's backward, layers l >= 1: attention's backward on p.v = V'_l (materialised by
/// value_residual_mix_kernel before it: the dQ kernel reloads every V tile per query tile, and
/// mixing there would either stall on synchronous loads or cost the second shared-memory tile
/// that halves its occupancy on an A100), and the chain rule through the mix in the dK/dV store.
struct ValueResidualGrad : ValueResidual {
  const void* v_self = nullptr;  ///< V_l as stored (T), [total_k, h_k, d] with these strides
  int64_t v_self_row_stride = 0, v_self_head_stride = 0;
  float* dv_first = nullptr;      ///< the stack's fp32 dV_0 accumulator (+=)
  float* dlambda_rows = nullptr;  ///< fp32 [total_k, h_k, 2] per-row dlambda partials

  template <int D, int Threads, class T>
  STRATA_DEVICE void load_v(T* dst, int ld, const FlashFwdParams& p, const TileSite& s, int nrows,
                            int tid) const {
    VanillaAttention::load_v<D, Threads>(dst, ld, p, s, nrows, tid);
  }

  /// g = dV' of one key row (summed over the GQA group): dV_l = lambda_self g, dV_0 += lambda_first
  /// g, and the row's dlambda partials sum_d V_l g, sum_d V_0 g (V as stored).
  template <class T, int N, class Sum>
  STRATA_HOST_DEVICE void store_dk_dv(const float (&dk)[N], const float (&g)[N],
                                      const FlashBwdParams& p, const RowSite& r, Sum sum) const {
    // One element at a time (not whole-row arrays of V_l, V_0 and the accumulator): at d = 128
    // the dK/dV kernel has no registers to spare for 3 x 32 more floats.
    float dv[N];
    float d_self = 0.f, d_first = 0.f;
    if (r.valid) {
      const float ls = lam_self(r.head), lf = lam_first(r.head);
      const T* v = static_cast<const T*>(v_self) + r.token * v_self_row_stride +
                   int64_t(r.head) * v_self_head_stride;
      const T* v0 = static_cast<const T*>(v_first) + r.token * v_first_row_stride +
                    int64_t(r.head) * v_first_head_stride;
      float* a = accumulator_row(dv_first, p, r);
      STRATA_UNROLL
      for (int j = 0; j < N; ++j) {
        const int c = r.col(j);
        const float v_l[1] = {core::to_float(v[c])}, v_0[1] = {core::to_float(v0[c])},
                    g_j[1] = {g[j]};
        float dv_j[1], acc[1] = {a[c]};
        core::value_residual_backward(v_l, v_0, ls, lf, g_j, dv_j, acc, d_self, d_first);
        a[c] = acc[0];
        dv[j] = dv_j[0];
      }
    }
    d_self = sum(d_self);  // every lane of the quad: the row's partials
    d_first = sum(d_first);
    if (!r.valid) return;
    VanillaAttention::store_dk_dv<T>(dk, dv, p, r, sum);
    if (r.col0 == 0) {
      float* rows = dlambda_rows + 2 * (r.token * p.h_k + r.head);
      rows[0] = d_self;
      rows[1] = d_first;
    }
  }
};

/// SVFormer, layers l >= 1: attention on p.v = V_0; backward dV_0 += g.
struct SharedValue : attention::VanillaAttention {
  float* dv_first = nullptr;  ///< the stack's fp32 dV_0 accumulator (+=)

  template <class T, int N, class Sum>
  STRATA_HOST_DEVICE void store_dk_dv(const float (&dk)[N], const float (&g)[N],
                                      const FlashBwdParams& p, const RowSite& r, Sum) const {
    if (!r.valid) return;
    store_fragment_row(static_cast<T*>(p.dk), p.dk_row_stride, p.dk_head_stride, dk, r);
    float* a = accumulator_row(dv_first, p, r);
    STRATA_UNROLL
    for (int j = 0; j < N; ++j) a[r.col(j)] += g[j];
  }
};

/// Layer 0 of ResFormer and SVFormer: backward dV_0 = g_0 + the accumulator of layers 1..L-1.
struct FirstValue : attention::VanillaAttention {
  const float* dv_first = nullptr;  ///< the complete accumulator (null: nothing to add)

  template <class T, int N, class Sum>
  STRATA_HOST_DEVICE void store_dk_dv(const float (&dk)[N], const float (&g)[N],
                                      const FlashBwdParams& p, const RowSite& r, Sum sum) const {
    if (!r.valid) return;
    float dv[N];
    const float* a = dv_first ? dv_first + (r.token * p.h_k + r.head) * int64_t(p.d) : nullptr;
    STRATA_UNROLL
    for (int j = 0; j < N; ++j) dv[j] = g[j] + (a ? a[r.col(j)] : 0.f);
    VanillaAttention::store_dk_dv<T>(dk, dv, p, r, sum);
  }
};

/// V'_l = lambda_self V_l + lambda_first V_0 of every (row, KV head), written contiguous
/// [total_k, h_k, d] for ResFormer's backward: one thread per 16 bytes, the forward's rounding
/// (ValueResidual::mix), so the backward attends to the very V' the forward did.
template <class T, int Threads = 256>
__global__ void __launch_bounds__(Threads)
    value_residual_mix_kernel(const ValueResidual mix, const T* v, int64_t v_row_stride,
                              int64_t v_head_stride, int64_t total_k, int h_k, int d, T* v_mixed) {
  const int chunks = d / 8;
  const int64_t c = int64_t(blockIdx.x) * Threads + threadIdx.x;
  if (c >= total_k * h_k * chunks) return;
  const int64_t row = c / (int64_t(h_k) * chunks);
  const int head = int(c / chunks % h_k), col = int(c % chunks) * 8;
  const T* v0 = static_cast<const T*>(mix.v_first);
  const uint4 a = arch::load16(v + row * v_row_stride + head * v_head_stride + col);
  const uint4 b =
      arch::load16(v0 + row * mix.v_first_row_stride + head * mix.v_first_head_stride + col);
  arch::store16(v_mixed + c * 8, mix.v_mix(head).template apply<T>(a, b));
}

/// dlambda_self / dlambda_first from the per-row partials [total_k, h_k, 2]: block x reduces the
/// rows of KV head x (per_head) or all rows (scalar) in a fixed order — deterministic.
template <int Threads = 256>
__global__ void __launch_bounds__(Threads)
    value_residual_dlambda_kernel(const float* rows, int total_k, int h_k, bool per_head,
                                  float* dlambda_self, float* dlambda_first) {
  __shared__ float red[2][Threads];
  const int tid = int(threadIdx.x), head = int(blockIdx.x);
  const int64_t n = per_head ? int64_t(total_k) : int64_t(total_k) * h_k;
  float s = 0.f, f = 0.f;
  for (int64_t i = tid; i < n; i += Threads) {
    const int64_t at = per_head ? i * h_k + head : i;
    s += rows[2 * at];
    f += rows[2 * at + 1];
  }
  red[0][tid] = s;
  red[1][tid] = f;
  __syncthreads();
  for (int w = Threads / 2; w > 0; w /= 2) {
    if (tid < w) {
      red[0][tid] += red[0][tid + w];
      red[1][tid] += red[1][tid + w];
    }
    __syncthreads();
  }
  if (tid == 0) {
    dlambda_self[head] = red[0][0];
    dlambda_first[head] = red[1][0];
  }
}

/// Fills n floats with zero (the stack's accumulator before a backward). A template so that the
/// header defines it in every translation unit without an ODR clash.
template <int Threads = 256>
__global__ void __launch_bounds__(Threads) fill_zero_kernel(float* x, int64_t n) {
  const int64_t i = int64_t(blockIdx.x) * Threads + threadIdx.x;
  if (i < n) x[i] = 0.f;
}

STRATA_EXECUTOR_END
}  // namespace strata::variants

// On the sm_90a kernels: ValueResidual's forward forms V' from TMA-landed V_l and V_0 tiles (its
// sm_90 hooks); the backward policies load their tiles as stored (ResFormer's backward runs on
// the materialised V') and only store differently.
template <>
struct strata::attention::Sm90Variant<strata::variants::ValueResidual> : std::true_type {};
template <>
struct strata::attention::Sm90Variant<strata::variants::ValueResidualGrad> : std::true_type {};
template <>
struct strata::attention::Sm90Variant<strata::variants::SharedValue> : std::true_type {};
template <>
struct strata::attention::Sm90Variant<strata::variants::FirstValue> : std::true_type {};
