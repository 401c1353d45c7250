/// \file
/// Gated Attention's sigmoid output gate at G1 (SPEC §5, decisions §7.6), also ExoFormer's gate,
/// as a flash-attention policy: the forward epilogue stores y' = O sigma(g) (elementwise: g per
/// head and dimension; headwise: one g per head), and the backward's preprocess — one thread per
/// (token, head) row — turns the caller's dy = dL/dy' into the attention's dO = dy sigma(g) (a T
/// workspace the dQ and dK/dV kernels then read as p.dout), writes dg, and returns
/// D = rowsum(dO o O) = rowsum(dy o y'). O is never stored: y' carries everything the backward
/// needs (core::gate_backward_from_output).
#pragma once

#include <cstdint>

#include "strata/attention/variant.hpp"
#include "strata/core/gate.hpp"
#include "strata/core/numeric.hpp"

namespace strata::variants {

STRATA_EXECUTOR_BEGIN

struct OutputGate : attention::VanillaAttention {
  const void* gate = nullptr;  ///< gate logits (T): [total_q, h, d] or, headwise, [total_q, h]
  int64_t gate_row_stride = 0, gate_head_stride = 0;
  bool headwise = false;
  // backward
  const void* dy = nullptr;  ///< dL/dy' (T), [total_q, h, d] with these strides
  int64_t dy_row_stride = 0, dy_head_stride = 0;
  void* dgate = nullptr;  ///< dL/dg (T), the layout of `gate`
  /// The attention's dO = dy' o sigma(g) (T), written by the preprocess in p.dout's strides: the
  /// API's workspace, at which it points p.dout for the dQ and dK/dV kernels that read it.
  void* dout_ws = nullptr;

  template <class T>
  STRATA_HOST_DEVICE const T* gate_row(int64_t token, int h) const {
    return static_cast<const T*>(gate) + token * gate_row_stride + int64_t(h) * gate_head_stride;
  }

  /// y' = O sigma(g) for one output row.
  template <class T, int N, class Sum>
  STRATA_HOST_DEVICE void store_o(const float (&o)[N], const attention::FlashFwdParams& p,
                                  const attention::RowSite& r, Sum sum) const {
    if (!r.valid) return;
    const T* g = gate_row<T>(r.token, r.head);
    float y[N];
    if (headwise) {
      core::gate_forward(o, core::to_float(g[0]), y);
    } else {
      float gl[N];
      STRATA_UNROLL
      for (int j = 0; j < N; ++j) gl[j] = core::to_float(g[r.col(j)]);
      core::gate_forward(o, gl, y);
    }
    VanillaAttention::store_o<T>(y, p, r, sum);
  }

  /// p.o holds y'; dO goes to dout_ws (p.dout's strides); returns D of the row.
  template <class T, int D>
  STRATA_HOST_DEVICE float preprocess(const attention::FlashBwdParams& p, int64_t token,
                                      int h) const {
    const T* y = static_cast<const T*>(p.o) + token * p.o_row_stride + int64_t(h) * p.o_head_stride;
    const T* d_y = static_cast<const T*>(dy) + token * dy_row_stride + int64_t(h) * dy_head_stride;
    T* d_o = static_cast<T*>(dout_ws) + token * p.do_row_stride + int64_t(h) * p.do_head_stride;
    const T* g = gate_row<T>(token, h);
    T* dg = static_cast<T*>(dgate) + token * gate_row_stride + int64_t(h) * gate_head_stride;
    float dsum = 0.f;
    const float g_head = headwise ? core::to_float(g[0]) : 0.f;
    STRATA_UNROLL_N(8)
    for (int e = 0; e < D; ++e) {
      float d_oe, dge;
      dsum += core::gate_backward_from_output(core::to_float(y[e]),
                                              headwise ? g_head : core::to_float(g[e]),
                                              core::to_float(d_y[e]), d_oe, dge);
      d_o[e] = core::from_float<T>(d_oe);
      if (!headwise) dg[e] = core::from_float<T>(dge);
    }
    if (headwise) dg[0] = core::from_float<T>(dsum * core::sigmoid(-g_head));
    return dsum;
  }
};

STRATA_EXECUTOR_END
}  // namespace strata::variants

/// The gate acts in store_o only: the sm_90a forward runs it.
template <>
struct strata::attention::Sm90Variant<strata::variants::OutputGate> : std::true_type {};
