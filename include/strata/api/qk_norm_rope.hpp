/// \file
/// The token-local QK-norm + RoPE pass (strata/variants/qk_norm_rope.cuh) for q and k of one
/// layer: y = RoPE(RMSNorm_gamma(x)) forward; dx and dgamma backward. Run it before the attention
/// forward (its y are the attention's q and k) and after the attention backward (its dy are the
/// attention's dq and dk).
#pragma once

#include <string>

#include "strata/api/flash.hpp"
#include "strata/api/workspace.hpp"
#include "strata/variants/qk_norm_rope.cuh"

namespace strata::api {

using variants::QkNormRopeOptions;
using variants::QkRows;

/// Both sides of one layer. The kernel-internal field of QkRows (partial) are set by the
/// launchers from `workspace`; cu_seqlens, b and seqlen of each side are the attention's.
struct QkNormRopeParams {
  Dtype dtype = Dtype::kBf16;
  int d = 0;
  QkNormRopeOptions options;
  QkRows q, k;
  float* workspace = nullptr;  ///< backward with qk_norm: api::workspace_bytes(params) bytes
  size_t workspace_bytes = 0;  ///< its size, checked
};

namespace detail {
inline int64_t qk_blocks(const QkRows& s) {
  return (s.rows() + variants::kQkNormRowsPerBlock - 1) / variants::kQkNormRowsPerBlock;
}
inline size_t qk_side_workspace_floats(const QkRows& s, int d) {
  return size_t(qk_blocks(s)) * size_t(d);
}
}  // namespace detail

/// Bytes of the backward workspace: a dgamma partial per 256 rows with qk_norm, else 0.
inline size_t workspace_bytes(const QkNormRopeParams& p) {
  if (!p.options.qk_norm) return 0;
  if (p.q.heads < 0 || p.q.total < 0 || p.k.heads < 0 || p.k.total < 0 || p.d <= 0) return 0;
  return (detail::qk_side_workspace_floats(p.q, p.d) + detail::qk_side_workspace_floats(p.k, p.d)) *
         sizeof(float);
}

namespace detail {
inline Status check_side(const QkRows& s, const char* side, const QkNormRopeParams& p,
                         bool backward) {
  const std::string n = side;
  if (s.heads < 1) return Status::InvalidArgument(n + ".heads = " + std::to_string(s.heads));
  if (s.total < 0) return Status::InvalidArgument(n + ".total is negative");
  // dgamma is written (zero) even for a side without rows
  if (backward && p.options.qk_norm && !s.dgamma)
    return Status::InvalidArgument(n + ".dgamma is null");
  if (s.total == 0) return Status::Ok();
  if (int64_t(s.total) * s.heads > int64_t(INT32_MAX))
    return Status::InvalidArgument(n + ": total * heads overflows int32");
  if (s.b < 1) return Status::InvalidArgument(n + ".b = " + std::to_string(s.b));
  if (!s.cu_seqlens && (s.seqlen < 1 || int64_t(s.b) * s.seqlen != s.total))
    return Status::InvalidArgument(n + ".seqlen: a fixed-length batch needs b * seqlen = total");
  auto operand = [&](const void* ptr, const char* name, int64_t rs, int64_t hs) {
    return check_rows(ptr, n + "." + name, rs, hs, s.heads, p.d);
  };
  if (Status st = operand(s.x, "x", s.x_row_stride, s.x_head_stride); !st.ok()) return st;
  if (p.options.qk_norm && !s.gamma) return Status::InvalidArgument(n + ".gamma is null");
  if (!backward) return operand(s.y, "y", s.y_row_stride, s.y_head_stride);
  if (Status st = operand(s.dy, "dy", s.dy_row_stride, s.dy_head_stride); !st.ok()) return st;
  if (Status st = operand(s.dx, "dx", s.dx_row_stride, s.dx_head_stride); !st.ok()) return st;
  if (p.options.qk_norm && !s.dgamma) return Status::InvalidArgument(n + ".dgamma is null");
  return Status::Ok();
}
}  // namespace detail

inline Status validate(const QkNormRopeParams& p, bool backward) {
  if (Status s = detail::check_dtype_and_head_dim(p.dtype, p.d); !s.ok()) return s;
  if (p.options.qk_norm && !(p.options.eps > 0.f))
    return Status::InvalidArgument("options.eps must be positive");
  if (p.options.rope && !(p.options.rope_theta > 1.f))
    return Status::InvalidArgument("options.rope_theta must be above 1");
  if (Status s = detail::check_side(p.q, "q", p, backward); !s.ok()) return s;
  if (Status s = detail::check_side(p.k, "k", p, backward); !s.ok()) return s;
  if (backward)
    if (Status s = detail::check_workspace(p.workspace, p.workspace_bytes, workspace_bytes(p));
        !s.ok())
      return s;
  return Status::Ok();
}

namespace detail {
STRATA_EXECUTOR_BEGIN
template <class T, int D>
Status qk_launch(const QkNormRopeParams& p, bool backward, cudaStream_t stream) {
  QkRows sides[2] = {p.q, p.k};
  float* w = p.workspace;
  for (QkRows& s : sides) {
    if (s.rows() == 0) {  // no rows: dgamma = 0 (the reduction over zero blocks writes it)
      if (backward && p.options.qk_norm)
        if (Status st = launch(variants::qk_norm_dgamma_reduce_kernel<D>, dim3(1), dim3(D), 0,
                               stream, static_cast<const float*>(nullptr), 0, s.dgamma);
            !st.ok())
          return st;
      continue;
    }
    const dim3 grid(
        unsigned((s.rows() + variants::kQkNormRowsPerBlock - 1) / variants::kQkNormRowsPerBlock));
    if (!backward) {
      if (Status st = launch(variants::qk_norm_rope_forward_kernel<T, D>, grid,
                             dim3(variants::kQkNormThreads), 0, stream, s, p.options);
          !st.ok())
        return st;
      continue;
    }
    if (p.options.qk_norm) {
      s.partial = w;
      w += qk_side_workspace_floats(s, D);
    }
    if (Status st = launch(variants::qk_norm_rope_backward_kernel<T, D>, grid,
                           dim3(variants::kQkNormThreads), 0, stream, s, p.options);
        !st.ok())
      return st;
    if (!p.options.qk_norm) continue;
    if (Status st = launch(variants::qk_norm_dgamma_reduce_kernel<D>, dim3(1), dim3(D), 0, stream,
                           static_cast<const float*>(s.partial), int(qk_blocks(s)), s.dgamma);
        !st.ok())
      return st;
  }
  return Status::Ok();
}
inline Status qk_dispatch(const QkNormRopeParams& p, bool backward, cudaStream_t stream) {
  return with_dtype_and_head_dim(
      p.dtype, p.d, [&]<class T, int D>() { return qk_launch<T, D>(p, backward, stream); });
}
STRATA_EXECUTOR_END
}  // namespace detail

STRATA_EXECUTOR_BEGIN
/// Forward: q.y = RoPE(RMSNorm(q.x)), k.y likewise.
inline Status qk_norm_rope_forward(const QkNormRopeParams& p, cudaStream_t stream = 0) {
  if (Status s = validate(p, false); !s.ok()) return s;
  return detail::qk_dispatch(p, false, stream);
}

/// Backward: q.dx, k.dx from q.dy, k.dy (and q.dgamma, k.dgamma, written, with qk_norm).
inline Status qk_norm_rope_backward(const QkNormRopeParams& p, cudaStream_t stream = 0) {
  if (Status s = validate(p, true); !s.ok()) return s;
  return detail::qk_dispatch(p, true, stream);
}

STRATA_EXECUTOR_END
}  // namespace strata::api
