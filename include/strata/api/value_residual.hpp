/// \file
/// ResFormer / SVFormer value residual (SPEC §2, §7.3): per-layer entry points for a trainer that
/// runs its layers one at a time, and ValueResidualStack, the explicit layer-stack helper that
/// shows the order and the fp32 accumulator (copy it into a trainer).
///
/// Forward, layer 0: flash_fwd on V_0. Layers l >= 1: resformer_forward (V'_l = lambda_self V_l +
/// lambda_first V_0 mixed as V tiles load, or on Hopper for long sequences written once to the
/// workspace first: resformer_forward says which) or, for SVFormer, flash_fwd with p.v = V_0.
/// Backward runs L-1 .. 0 around one fp32 accumulator dv_first [total_k, h_k, d] (zeroed first by
/// value_residual_zero): resformer_backward / svformer_backward add their layer's share of dV_0
/// to it, and value_residual_first_backward writes dV_0 = g_0 + accumulator at layer 0.
#pragma once

#include <string>
#include <vector>

#include "strata/api/flash.hpp"
#include "strata/api/workspace.hpp"
#include "strata/core/options.hpp"
#include "strata/cost/perf_model.hpp"
#include "strata/variants/value_residual.cuh"

namespace strata::api {

namespace detail {
/// Byte offset of V' in the backward workspace: after the fp32 partials of `rows` (row, KV head)
/// pairs, rounded up to 16 bytes.
inline size_t value_residual_mixed_offset(size_t rows) {
  return (rows * 2 * sizeof(float) + 15) / 16 * 16;
}
}  // namespace detail

/// The value-residual operands of one ResFormer layer l >= 1.
struct ValueResidualArgs {
  const void* v_first = nullptr;  ///< layer 0's V as stored, [total_k, h_k, d], dtype of attn
  int64_t v_first_row_stride = 0, v_first_head_stride = 0;
  const float* lambda_self = nullptr;   ///< fp32, [] (kScalar) or [h_k] (kHeadwise)
  const float* lambda_first = nullptr;  ///< fp32, same shape
  core::MixGranularity granularity = core::MixGranularity::kScalar;
  // backward only
  float* dv_first = nullptr;  ///< fp32 accumulator [total_k, h_k, d], contiguous: += lambda_first g
  float* dlambda_self = nullptr;   ///< fp32, lambda's shape: written
  float* dlambda_first = nullptr;  ///< fp32, lambda's shape: written
  /// workspace_bytes(attn, args) bytes: the backward's (required), and the forward's where given
  /// (optional: on an sm_90a device it lets the forward write V' once when that is cheaper than
  /// forming it per tile, see resformer_forward).
  float* workspace = nullptr;
  size_t workspace_bytes = 0;  ///< its size, checked
};

/// Bytes of the workspace: the per-row dlambda partials, fp32 [total_k, h_k, 2], then (from a
/// 16-byte boundary) V'_l in the attention's dtype, [total_k, h_k, d], which the backward
/// materialises once so that its kernels load V' tiles like plain V tiles.
inline size_t workspace_bytes(const FlashFwdParams& p, const ValueResidualArgs&) {
  const int64_t total_k =
      p.cu_seqlens_k_host ? p.cu_seqlens_k_host[p.b] : int64_t(p.b) * p.seqlen_k;
  const size_t rows = size_t(total_k > 0 ? total_k : 0) * size_t(p.h_k > 0 ? p.h_k : 0);
  return detail::value_residual_mixed_offset(rows) + rows * size_t(p.d > 0 ? p.d : 0) * 2;
}

/// Elements of the fp32 dV_0 accumulator: total_k * h_k * d.
inline int64_t value_residual_accumulator_size(const FlashBwdParams& p) {
  return int64_t(p.total_k) * p.h_k * p.d;
}

/// Checks the value-residual fields (the attention fields are checked by validate(attn)).
inline Status validate(const ValueResidualArgs& a, const FlashFwdParams& attn, bool backward) {
  if (Status s =
          detail::check_operand(a.v_first, "v_first", a.v_first_row_stride, a.v_first_head_stride);
      !s.ok())
    return s;
  if (a.granularity == core::MixGranularity::kElementwise)
    return Status::InvalidArgument(
        "granularity: ResFormer's lambda is a scalar or one per KV head, not elementwise");
  if (a.granularity != core::MixGranularity::kScalar &&
      a.granularity != core::MixGranularity::kHeadwise)
    return Status::InvalidArgument("granularity: not a MixGranularity value");
  if (!a.lambda_self) return Status::InvalidArgument("lambda_self is null");
  if (!a.lambda_first) return Status::InvalidArgument("lambda_first is null");
  if (backward || a.workspace)  // the forward's is optional
    if (Status s =
            detail::check_workspace(a.workspace, a.workspace_bytes, workspace_bytes(attn, a));
        !s.ok())
      return s;
  if (!backward) return Status::Ok();
  if (!a.dv_first) return Status::InvalidArgument("dv_first (the fp32 dV_0 accumulator) is null");
  if (!a.dlambda_self) return Status::InvalidArgument("dlambda_self is null");
  if (!a.dlambda_first) return Status::InvalidArgument("dlambda_first is null");
  return Status::Ok();
}

namespace detail {
STRATA_EXECUTOR_BEGIN
inline variants::ValueResidual value_residual_policy(const ValueResidualArgs& a) {
  variants::ValueResidual v;
  v.v_first = a.v_first;
  v.v_first_row_stride = a.v_first_row_stride, v.v_first_head_stride = a.v_first_head_stride;
  v.lambda_self = a.lambda_self, v.lambda_first = a.lambda_first;
  v.per_head = a.granularity == core::MixGranularity::kHeadwise;
  return v;
}
STRATA_EXECUTOR_END
}  // namespace detail

STRATA_EXECUTOR_BEGIN
/// Zeroes the fp32 dV_0 accumulator (n elements) before a stack's backward.
inline Status value_residual_zero(float* dv_first, int64_t n, cudaStream_t stream = 0) {
  if (n < 0) return Status::InvalidArgument("n is negative");
  if (n == 0) return Status::Ok();
  if (!dv_first) return Status::InvalidArgument("dv_first is null");
  return launch(variants::fill_zero_kernel<256>, dim3(unsigned((n + 255) / 256)), dim3(256), 0,
                stream, dv_first, n);
}
STRATA_EXECUTOR_END

namespace detail {
STRATA_EXECUTOR_BEGIN
/// V'_l of p's `total_k` key rows into the workspace (workspace_bytes(attn, args)'s layout) by
/// value_residual_mix_kernel; p's V then points at it (contiguous [total_k, h_k, d]).
template <class T>
Status mix_v_into_workspace(FlashFwdParams& p, int total_k, const variants::ValueResidual& mix,
                            float* workspace, cudaStream_t stream) {
  const size_t rows = size_t(total_k) * size_t(p.h_k);
  T* mixed =
      reinterpret_cast<T*>(reinterpret_cast<char*>(workspace) + value_residual_mixed_offset(rows));
  const int64_t chunks = int64_t(rows) * (p.d / 8);
  if (chunks > 0)
    if (Status s = launch(variants::value_residual_mix_kernel<T, 256>,
                          dim3(unsigned((chunks + 255) / 256)), dim3(256), 0, stream, mix,
                          static_cast<const T*>(p.v), p.v_row_stride, p.v_head_stride,
                          int64_t(total_k), p.h_k, p.d, mixed);
        !s.ok())
      return s;
  p.v = mixed;
  p.v_row_stride = int64_t(p.h_k) * p.d, p.v_head_stride = p.d;
  return Status::Ok();
}

/// ResFormer's backward on V' (validated arguments): V' into the workspace, then attention's
/// backward with the dK/dV store of the mix's chain rule.
template <class T>
Status resformer_backward_on_mixed(const FlashBwdParams& attn, const ValueResidualArgs& a,
                                   cudaStream_t stream) {
  variants::ValueResidualGrad g;
  static_cast<variants::ValueResidual&>(g) = value_residual_policy(a);
  g.v_self = attn.v, g.v_self_row_stride = attn.v_row_stride;
  g.v_self_head_stride = attn.v_head_stride;
  g.dv_first = a.dv_first, g.dlambda_rows = a.workspace;
  FlashBwdParams p = attn;
  if (Status s = mix_v_into_workspace<T>(p, attn.total_k, g, a.workspace, stream); !s.ok())
    return s;
  return flash_bwd(p, g, stream);
}

/// Whether ResFormer's forward of validated `attn` writes V' to the workspace first: on a
/// device that runs the sm_90a forward, when the per-SM model gives that plan the smaller time
/// (cost::resformer_sm90_plans: forming V per tile costs shared-memory traffic for every query
/// tile, writing it once costs three tensors of DRAM traffic), and when the K/V extent is known
/// (`total_k`: flash_fwd_sm90_total_k). Elsewhere the sm_80 kernel forms V per tile in its
/// cp.async pipeline, and nothing is written.
inline bool resformer_writes_v(const FlashFwdParams& attn, int* total_k) {
  int sms = 0;
  if (!arch::device_runs_sm90a(&sms) || !flash_fwd_sm90_total_k(attn, total_k).ok()) return false;
  const cost::ResFormerSm90Plans plans =
      cost::resformer_sm90_plans(attn.b, attn.seqlen_q, attn.seqlen_k, attn.h, attn.h_k, attn.d,
                                 attn.is_causal, attn.window_left);
  return plans.materialised_s < plans.fused_s;
}
/// ResFormer's forward of validated arguments by one plan: V formed per tile (`total_k` < 0) or
/// V' of `total_k` key rows written to a.workspace first.
inline Status resformer_forward_plan(const FlashFwdParams& attn, const ValueResidualArgs& a,
                                     int total_k, cudaStream_t stream) {
  const variants::ValueResidual mix = value_residual_policy(a);
  if (total_k < 0) return flash_fwd(attn, mix, stream);
  FlashFwdParams p = attn;
  if (Status s = attn.dtype == Dtype::kBf16
                     ? mix_v_into_workspace<__nv_bfloat16>(p, total_k, mix, a.workspace, stream)
                     : mix_v_into_workspace<__half>(p, total_k, mix, a.workspace, stream);
      !s.ok())
    return s;
  return flash_fwd(p, stream);
}
STRATA_EXECUTOR_END
}  // namespace detail

STRATA_EXECUTOR_BEGIN

/// ResFormer layer l >= 1, forward: attention on V'_l = lambda_self V_l + lambda_first V_0,
/// rounded once to the attention's dtype. Two plans, the same V' and, on one kernel, the same
/// bits: V formed per tile as the tiles load (the sm_80 kernel's cp.async pipeline; the sm_90a
/// kernel's producer warps, after TMA lands V_l and V_0), or V' written once to `a.workspace`
/// (workspace_bytes(attn, a) bytes) and attention run on it. The second runs where a
/// workspace is given, the device runs the sm_90a forward and the per-SM model prefers it
/// (long sequences: forming V per tile repeats for every query tile); the workspace is not
/// touched otherwise.
inline Status resformer_forward(const FlashFwdParams& attn, const ValueResidualArgs& a,
                                cudaStream_t stream = 0) {
  if (Status s = validate_forward(attn); !s.ok()) return s;
  if (attn.total_q == 0) return Status::Ok();
  if (Status s = validate(a, attn, false); !s.ok()) return s;
  int total_k = 0;
  const bool write_v = a.workspace && detail::resformer_writes_v(attn, &total_k);
  return detail::resformer_forward_plan(attn, a, write_v ? total_k : -1, stream);
}

/// ResFormer layer l >= 1, backward: dQ, dK, dV_l = lambda_self g; dv_first += lambda_first g;
/// dlambda_self = sum V_l o g and dlambda_first = sum V_0 o g (written, in lambda's shape).
inline Status resformer_backward(const FlashBwdParams& attn, const ValueResidualArgs& a,
                                 cudaStream_t stream = 0) {
  if (Status s = validate_backward(attn); !s.ok()) return s;
  if (Status s = validate(a, attn, true); !s.ok()) return s;
  if (Status s = attn.dtype == Dtype::kBf16
                     ? detail::resformer_backward_on_mixed<__nv_bfloat16>(attn, a, stream)
                     : detail::resformer_backward_on_mixed<__half>(attn, a, stream);
      !s.ok())
    return s;
  const bool per_head = a.granularity == core::MixGranularity::kHeadwise;
  if (attn.total_k == 0) {  // no rows: dlambda = 0
    const int n = per_head ? attn.h_k : 1;
    if (Status s = value_residual_zero(a.dlambda_self, n, stream); !s.ok()) return s;
    return value_residual_zero(a.dlambda_first, n, stream);
  }
  return launch(variants::value_residual_dlambda_kernel<256>,
                dim3(unsigned(per_head ? attn.h_k : 1)), dim3(256), 0, stream,
                static_cast<const float*>(a.workspace), attn.total_k, attn.h_k, per_head,
                a.dlambda_self, a.dlambda_first);
}

/// SVFormer layer l >= 1, backward (attn.v = V_0; attn.dv is not written and may be null):
/// dQ, dK, and dv_first += g.
inline Status svformer_backward(const FlashBwdParams& attn, float* dv_first,
                                cudaStream_t stream = 0) {
  FlashBwdParams p = attn;
  if (!p.dv) p.dv = p.dk;  // validated as an operand, never written by SharedValue
  if (Status s = validate_backward(p); !s.ok()) return s;
  if (!dv_first) return Status::InvalidArgument("dv_first (the fp32 dV_0 accumulator) is null");
  variants::SharedValue v;
  v.dv_first = dv_first;
  return flash_bwd(p, v, stream);
}

/// Layer 0 of ResFormer or SVFormer, backward: dQ, dK and dV_0 = g_0 + dv_first (the complete
/// accumulator of layers 1 .. L-1; null for a one-layer stack).
inline Status value_residual_first_backward(const FlashBwdParams& attn, const float* dv_first,
                                            cudaStream_t stream = 0) {
  variants::FirstValue v;
  v.dv_first = dv_first;
  return flash_bwd(attn, v, stream);
}

STRATA_EXECUTOR_END
/// Kind of a value-residual stack.
enum class ValueResidualKind { kResFormer, kSVFormer };

/// One layer of a stack: its attention problem (forward and backward fields; for SVFormer layers
/// l >= 1 attn.v is ignored: they read layer 0's V) and, for ResFormer layers l >= 1, lambda and
/// where dlambda goes.
struct ValueResidualLayer {
  FlashBwdParams attn;
  const float *lambda_self = nullptr, *lambda_first = nullptr;
  float *dlambda_self = nullptr, *dlambda_first = nullptr;
};

STRATA_EXECUTOR_BEGIN
/// The layer-stack helper: forward 0 .. L-1, backward L-1 .. 0 with the fp32 dV_0 accumulator.
/// Every call validates everything it launches first; an error returns before that layer.
struct ValueResidualStack {
  ValueResidualKind kind = ValueResidualKind::kResFormer;
  core::MixGranularity granularity = core::MixGranularity::kScalar;
  std::vector<ValueResidualLayer> layers;
  float* dv_first = nullptr;  ///< backward: value_residual_accumulator_size(layers[0].attn) fp32
  /// ResFormer: workspace_bytes(stack) bytes; the backward needs it, the forward uses it where
  /// writing V' once is the cheaper plan (resformer_forward).
  float* workspace = nullptr;
  size_t workspace_bytes = 0;  ///< its size, checked

  /// Layer l's attention problem as launched (SVFormer: V is layer 0's).
  FlashBwdParams layer_attn(size_t l) const {
    FlashBwdParams p = layers[l].attn;
    if (kind == ValueResidualKind::kSVFormer && l > 0) {
      p.v = layers[0].attn.v;
      p.v_row_stride = layers[0].attn.v_row_stride;
      p.v_head_stride = layers[0].attn.v_head_stride;
    }
    return p;
  }
  ValueResidualArgs layer_args(size_t l) const {
    const FlashBwdParams& first = layers[0].attn;
    ValueResidualArgs a;
    a.v_first = first.v;
    a.v_first_row_stride = first.v_row_stride, a.v_first_head_stride = first.v_head_stride;
    a.lambda_self = layers[l].lambda_self, a.lambda_first = layers[l].lambda_first;
    a.granularity = granularity;
    a.dv_first = dv_first;
    a.dlambda_self = layers[l].dlambda_self, a.dlambda_first = layers[l].dlambda_first;
    a.workspace = workspace, a.workspace_bytes = workspace_bytes;
    return a;
  }
  Status check_shape() const {
    if (layers.empty()) return Status::InvalidArgument("layers is empty");
    const FlashBwdParams& f = layers[0].attn;
    for (size_t l = 1; l < layers.size(); ++l) {
      const FlashBwdParams& p = layers[l].attn;
      if (p.total_k != f.total_k || p.h_k != f.h_k || p.d != f.d || p.dtype != f.dtype)
        return Status::InvalidArgument("layers[" + std::to_string(l) +
                                       "].attn: total_k, h_k, d and dtype must match layer 0's "
                                       "(V_0 is shared by the stack)");
    }
    return Status::Ok();
  }

  /// Every layer's fields, before anything is launched (so that an error writes nothing).
  Status validate(bool backward) const {
    if (Status s = check_shape(); !s.ok()) return s;
    if (backward && layers.size() > 1 && !dv_first)
      return Status::InvalidArgument("dv_first (the fp32 dV_0 accumulator) is null");
    for (size_t l = 0; l < layers.size(); ++l) {
      FlashBwdParams p = layer_attn(l);
      Status s = Status::Ok();
      if (backward) {
        if (kind == ValueResidualKind::kSVFormer && l > 0 && !p.dv) p.dv = p.dk;  // not written
        s = api::validate_backward(p);
      } else {
        s = api::validate_forward(p);
      }
      if (s.ok() && l > 0 && kind == ValueResidualKind::kResFormer)
        s = api::validate(layer_args(l), p, backward);
      if (!s.ok()) return Status(s.code(), "layers[" + std::to_string(l) + "]: " + s.message());
    }
    return Status::Ok();
  }

  Status forward(cudaStream_t stream = 0) const {
    if (Status s = validate(false); !s.ok()) return s;
    for (size_t l = 0; l < layers.size(); ++l) {
      const FlashBwdParams p = layer_attn(l);
      const Status s = l == 0 || kind == ValueResidualKind::kSVFormer
                           ? flash_fwd(p, stream)
                           : resformer_forward(p, layer_args(l), stream);
      if (!s.ok()) return Status(s.code(), "layer " + std::to_string(l) + ": " + s.message());
    }
    return Status::Ok();
  }

  Status backward(cudaStream_t stream = 0) const {
    if (Status s = validate(true); !s.ok()) return s;
    const bool deep = layers.size() > 1;
    if (deep) {
      if (Status s = value_residual_zero(dv_first, value_residual_accumulator_size(layers[0].attn),
                                         stream);
          !s.ok())
        return s;
    }
    for (size_t l = layers.size(); l-- > 0;) {
      const FlashBwdParams p = layer_attn(l);
      const Status s = l == 0 ? value_residual_first_backward(p, deep ? dv_first : nullptr, stream)
                       : kind == ValueResidualKind::kSVFormer
                           ? svformer_backward(p, dv_first, stream)
                           : resformer_backward(p, layer_args(l), stream);
      if (!s.ok()) return Status(s.code(), "layer " + std::to_string(l) + ": " + s.message());
    }
    return Status::Ok();
  }
};

/// Bytes of a stack's workspace: a ResFormer layer's (the layers share V_0's shape, which sizes
/// it); 0 for SVFormer and for one layer.
inline size_t workspace_bytes(const ValueResidualStack& st) {
  if (st.kind != ValueResidualKind::kResFormer || st.layers.size() < 2) return 0;
  return api::workspace_bytes(st.layers[0].attn, ValueResidualArgs{});
}

STRATA_EXECUTOR_END
}  // namespace strata::api
