/// \file
/// Public entry points of the flash-attention core: validate() checks every field of the Params
/// (the message names the field), and the launchers validate first, then pick the compiled
/// instantiation for (dtype, head dim) and launch it. Bad input never reaches a kernel, so nothing
/// is written.
#pragma once

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstdint>
#include <string>

#include "strata/api/dispatch.hpp"
#include "strata/api/flash_sm90.hpp"
#include "strata/attention/flash_bwd.cuh"
#include "strata/attention/flash_fwd.cuh"
#include "strata/launch.hpp"
#include "strata/status.hpp"

namespace strata::api {

using attention::Dtype;
using attention::FlashBwdParams;
using attention::FlashFwdParams;

/// The longest sequence (queries or keys) the kernels' int32 tile arithmetic allows: the end of
/// its last tile must fit int32.
inline constexpr int kMaxSeqlen = INT32_MAX - 128;
/// The most (token, head) rows of one operand (total_q * h, total_k * h_k): the token-local
/// passes and the grids count rows in int32.
inline constexpr int64_t kMaxRows = INT32_MAX - 256;

namespace detail {

inline bool aligned16(const void* p) {
  return reinterpret_cast<uintptr_t>(p) % 16 == 0;
}

/// A [tokens, heads, d] operand: non-null, 16-byte aligned, strides that keep every row
/// 16-byte aligned (cp.async moves 16-byte chunks).
inline Status check_operand(const void* ptr, const char* name, int64_t row_stride,
                            int64_t head_stride) {
  const std::string n = name;
  if (!ptr) return Status::InvalidArgument(n + " is null");
  if (!aligned16(ptr)) return Status::InvalidArgument(n + " is not 16-byte aligned");
  if (row_stride <= 0 || row_stride % 8 != 0)
    return Status::InvalidArgument(n + "_row_stride = " + std::to_string(row_stride) +
                                   ": must be a positive multiple of 8 elements (16 bytes)");
  if (head_stride <= 0 || head_stride % 8 != 0)
    return Status::InvalidArgument(n + "_head_stride = " + std::to_string(head_stride) +
                                   ": must be a positive multiple of 8 elements (16 bytes)");
  return Status::Ok();
}

/// A [total, heads, d] operand of a token-local pass (element loads, no 16-byte vectors): not
/// null, 2-byte aligned, and rows and heads that do not overlap.
inline Status check_rows(const void* ptr, const std::string& name, int64_t row_stride,
                         int64_t head_stride, int heads, int d) {
  if (!ptr) return Status::InvalidArgument(name + " is null");
  if (reinterpret_cast<uintptr_t>(ptr) % 2) return Status::InvalidArgument(name + " is misaligned");
  if (head_stride < d || row_stride < head_stride * heads)
    return Status::InvalidArgument(name + " strides (" + std::to_string(row_stride) + ", " +
                                   std::to_string(head_stride) + ") overlap rows or heads");
  return Status::Ok();
}

/// Two cu_seqlens arrays are the same offsets: the same pointer, or host copies with equal
/// contents (each validated against its device array's role by the attention's checks).
inline bool same_offsets(const int* x, const int* x_host, const int* y, const int* y_host, int b) {
  if (x == y) return true;
  if (!x || !y || !x_host || !y_host) return false;
  for (int i = 0; i <= b; ++i)
    if (x_host[i] != y_host[i]) return false;
  return true;
}

/// Layer attention `a` runs over the tokens of a stack's layer 0 attention `f`, as cross-layer
/// methods that read other layers' rows at the same token need: self-attention (seqlen_k =
/// seqlen_q, the same offsets; total_k = total_q in the backward) with f's tokens, KV heads, head
/// dim, dtype and batch.
inline bool same_token_attention(const FlashBwdParams& a, const FlashBwdParams& f, bool backward) {
  return a.total_q == f.total_q && a.h_k == f.h_k && a.d == f.d && a.dtype == f.dtype &&
         a.b == f.b && a.seqlen_q == f.seqlen_q && a.seqlen_k == a.seqlen_q &&
         (!backward || a.total_k == a.total_q) &&
         same_offsets(a.cu_seqlens_q, a.cu_seqlens_q_host, a.cu_seqlens_k, a.cu_seqlens_k_host,
                      a.b) &&
         same_offsets(a.cu_seqlens_q, a.cu_seqlens_q_host, f.cu_seqlens_q, f.cu_seqlens_q_host,
                      a.b);
}

/// The storage type is one Strata compiles (bf16, fp16) and d a compiled head dimension.
inline Status check_dtype_and_head_dim(Dtype dtype, int d) {
  if (dtype != Dtype::kBf16 && dtype != Dtype::kFp16)
    return Status::InvalidArgument("dtype: must be kBf16 or kFp16");
  for (int c : kFlashHeadDims)
    if (d == c) return Status::Ok();
  return Status::InvalidArgument("d = " + std::to_string(d) +
                                 " is not a compiled head dimension (64, 96, 128)");
}

/// The kernels index tokens, tiles and mask bounds with int32: every position a tile or the mask
/// computes (a sequence's last tile end, key i - offset - window_left) must stay inside it. A
/// window at least as long as the keys is no window (-1).
inline Status check_int32_extent(int seqlen_q, int seqlen_k, int window_left) {
  if (seqlen_q > kMaxSeqlen || seqlen_k > kMaxSeqlen)
    return Status::InvalidArgument(
        std::string(seqlen_q > kMaxSeqlen ? "seqlen_q = " : "seqlen_k = ") +
        std::to_string(std::max(seqlen_q, seqlen_k)) +
        ": more than 2^31 - 129 tokens (int32 tile arithmetic)");
  if (window_left >= 0 && int64_t(window_left) + std::max(seqlen_q, seqlen_k) > INT32_MAX)
    return Status::InvalidArgument(
        "window_left = " + std::to_string(window_left) +
        ": window_left + the sequence length overflows int32 (a window as long as the keys is no "
        "window: give -1)");
  return Status::Ok();
}

/// Host copy of cu_seqlens: starts at 0, never decreases, ends at `total`, lengths <= max_len.
inline Status check_cu_seqlens(const int* cu, int b, int total, int max_len, const char* name,
                               const char* max_name) {
  const std::string n = name;
  if (cu[0] != 0) return Status::InvalidArgument(n + "[0] = " + std::to_string(cu[0]) + ", not 0");
  for (int i = 0; i < b; ++i) {
    const int64_t len = int64_t(cu[i + 1]) - cu[i];  // int64: garbage offsets cannot wrap
    if (len < 0) return Status::InvalidArgument(n + " decreases at index " + std::to_string(i + 1));
    if (len > max_len)
      return Status::InvalidArgument(n + ": sequence " + std::to_string(i) + " has " +
                                     std::to_string(len) + " tokens, more than " + max_name +
                                     " = " + std::to_string(max_len));
  }
  if (total >= 0 && cu[b] != total)
    return Status::InvalidArgument(n + "[b] = " + std::to_string(cu[b]) +
                                   " differs from total_q = " + std::to_string(total));
  return Status::Ok();
}

}  // namespace detail

/// Checks every field of a forward problem; Ok means the forward's launcher will run it. A
/// FlashBwdParams passed here gets the forward's checks only (its backward fields are not read).
inline Status validate_forward(const FlashFwdParams& p) {
  using detail::check_operand;
  if (Status s = detail::check_dtype_and_head_dim(p.dtype, p.d); !s.ok()) return s;
  if (p.b < 1 || p.b > 65535)
    return Status::InvalidArgument("b = " + std::to_string(p.b) + ": must be in [1, 65535]");
  if (p.h < 1 || p.h > 65535)
    return Status::InvalidArgument("h = " + std::to_string(p.h) + ": must be in [1, 65535]");
  if (p.h_k < 1 || p.h % p.h_k != 0)
    return Status::InvalidArgument("h_k = " + std::to_string(p.h_k) +
                                   ": must divide h = " + std::to_string(p.h));
  if (p.seqlen_q < 0 || p.seqlen_k < 0)
    return Status::InvalidArgument(std::string(p.seqlen_q < 0 ? "seqlen_q" : "seqlen_k") +
                                   " is negative");
  if (p.total_q < 0) return Status::InvalidArgument("total_q is negative");
  if (!std::isfinite(p.softmax_scale) || p.softmax_scale == 0.f)
    return Status::InvalidArgument("softmax_scale must be finite and non-zero");
  if (p.window_left < -1)
    return Status::InvalidArgument("window_left = " + std::to_string(p.window_left) +
                                   ": must be -1 (unlimited) or >= 0");
  if (Status s = detail::check_int32_extent(p.seqlen_q, p.seqlen_k, p.window_left); !s.ok())
    return s;
  if (int64_t(p.total_q) * p.h > kMaxRows)
    return Status::InvalidArgument("total_q * h = " + std::to_string(int64_t(p.total_q) * p.h) +
                                   ": more than 2^31 - 257 rows (int32 row arithmetic)");
  if (bool(p.cu_seqlens_q) != bool(p.cu_seqlens_k))
    return Status::InvalidArgument(std::string(p.cu_seqlens_q ? "cu_seqlens_k" : "cu_seqlens_q") +
                                   " is null while the other cu_seqlens is set");
  const bool varlen = p.cu_seqlens_q != nullptr;
  // Token counts index rows with int32 (cu_seqlens are int32), LSE with int64.
  if (!varlen) {
    if (int64_t(p.b) * p.seqlen_q != p.total_q)
      return Status::InvalidArgument("total_q = " + std::to_string(p.total_q) +
                                     ": a fixed-length batch needs b * seqlen_q = " +
                                     std::to_string(int64_t(p.b) * p.seqlen_q));
    if (int64_t(p.b) * p.seqlen_k > INT_MAX)
      return Status::InvalidArgument("b * seqlen_k overflows int32");
  } else {
    if (p.cu_seqlens_q_host) {
      if (Status s = detail::check_cu_seqlens(p.cu_seqlens_q_host, p.b, p.total_q, p.seqlen_q,
                                              "cu_seqlens_q", "seqlen_q");
          !s.ok())
        return s;
    }
    if (p.cu_seqlens_k_host) {
      if (Status s = detail::check_cu_seqlens(p.cu_seqlens_k_host, p.b, -1, p.seqlen_k,
                                              "cu_seqlens_k", "seqlen_k");
          !s.ok())
        return s;
    }
  }
  if (p.total_q == 0) return Status::Ok();  // nothing to compute: no operand is read
  if (Status s = check_operand(p.q, "q", p.q_row_stride, p.q_head_stride); !s.ok()) return s;
  if (Status s = check_operand(p.k, "k", p.k_row_stride, p.k_head_stride); !s.ok()) return s;
  if (Status s = check_operand(p.v, "v", p.v_row_stride, p.v_head_stride); !s.ok()) return s;
  if (Status s = check_operand(p.o, "o", p.o_row_stride, p.o_head_stride); !s.ok()) return s;
  if (!p.lse) return Status::InvalidArgument("lse is null");
  return Status::Ok();
}

namespace detail {
STRATA_EXECUTOR_BEGIN
template <class T, int D, class Variant>
Status launch_fwd(const FlashFwdParams& p, const Variant& var, cudaStream_t stream) {
  using Tr = attention::FlashFwdTraits<D>;
  return launch(attention::flash_fwd_kernel<T, D, Variant>, attention::flash_fwd_grid<D>(p),
                dim3(Tr::kThreads), Tr::template kSmemBytesOf<T, Variant>, stream, p, var);
}
STRATA_EXECUTOR_END
}  // namespace detail

STRATA_EXECUTOR_BEGIN
/// Forward: validates, then launches the instantiation for (dtype, d). The workspace it needs is
/// none. An empty problem (total_q = 0) launches nothing.
/// `var` is the variant policy (attention/variant.hpp); a variant's own fields are checked by its
/// API before it calls this.
/// Which kernel: the sm_90a one (attention/flash_fwd_sm90.cuh) where the device runs sm_90a code
/// (sim::Options::device_arch = 90 in the simulator), the variant loads its tiles as stored
/// (attention::Sm90Variant) and its TMA maps describe `p` (strides, the K/V extent of a packed
/// batch from cu_seqlens_k_host); the sm_80 one otherwise, on every device.
template <class Variant>
Status flash_fwd(const FlashFwdParams& p, const Variant& var, cudaStream_t stream = 0) {
  if (Status s = validate_forward(p); !s.ok()) return s;
  if (p.total_q == 0 || p.seqlen_q == 0) return Status::Ok();
  if constexpr (attention::Sm90Variant<Variant>::value) {
    // refusals come before any launch: Unsupported (no sm_90a here) or InvalidArgument (the
    // TMA path cannot describe p) fall back to the sm_80 kernel, anything else is the result
    const Status s = detail::run_fwd_sm90(p, var, stream, FlashFwdSm90Options{});
    if (s.code() != StatusCode::kUnsupported && s.code() != StatusCode::kInvalidArgument) return s;
  }
  return detail::with_dtype_and_head_dim(
      p.dtype, p.d, [&]<class T, int D>() { return detail::launch_fwd<T, D>(p, var, stream); });
}
/// Forward on the sm_90a kernel only: the same problem and results as flash_fwd, for variants
/// whose tiles are loaded as stored (attention::Sm90Variant). Refused with a Status, nothing
/// written: what validate(p) refuses; a packed batch without cu_seqlens_k_host; operands whose
/// strides no TMA map describes (InvalidArgument naming the operand); a device that does not run
/// sm_90a code (Unsupported).
template <class Variant>
Status flash_fwd_sm90(const FlashFwdParams& p, const Variant& var, cudaStream_t stream = 0,
                      const FlashFwdSm90Options& opt = {}) {
  if (Status s = validate_forward(p); !s.ok()) return s;
  if (p.total_q == 0 || p.seqlen_q == 0) return Status::Ok();
  return detail::run_fwd_sm90(p, var, stream, opt);
}
inline Status flash_fwd_sm90(const FlashFwdParams& p, cudaStream_t stream = 0,
                             const FlashFwdSm90Options& opt = {}) {
  return flash_fwd_sm90(p, attention::VanillaAttention{}, stream, opt);
}
inline Status flash_fwd(const FlashFwdParams& p, cudaStream_t stream = 0) {
  return flash_fwd(p, attention::VanillaAttention{}, stream);
}

STRATA_EXECUTOR_END
/// Bytes of the fp32 workspace the backward needs (p.dsum): D for every (head, query row).
inline size_t flash_bwd_workspace_bytes(const FlashBwdParams& p) {
  return size_t(p.h > 0 ? p.h : 0) * size_t(p.total_q > 0 ? p.total_q : 0) * sizeof(float);
}

STRATA_EXECUTOR_BEGIN  // asks the device (arch::device_runs_sm90a)
/// Bytes of the fp32 dQ accumulator (p.dq_accum) the backward of `p` needs on the current device:
///  * where the device runs sm_90a code (the sm_90 backward): one [total_q, h, d] slice in the
///    fast mode, FlashBwdSm90Options::num_splits of them (`opt`; by default
///    attention::flash_bwd_sm90_splits, at most 8) in the deterministic mode;
///  * elsewhere: one slice in the fast mode, 0 when p.deterministic.
/// flash_bwd runs the sm_90 backward only when p.dq_accum is set and, in the deterministic mode,
/// p.dq_accum_bytes says it holds this many (a deterministic caller that allocates nothing, or
/// gives no size, keeps the sm_80 kernels, which need no accumulator).
inline size_t flash_bwd_dq_accum_bytes(const FlashBwdParams& p,
                                       const FlashBwdSm90Options& opt = {}) {
  if (p.total_q <= 0 || p.h <= 0 || p.d <= 0) return 0;
  if (const int splits = detail::bwd_sm90_splits(p, opt); splits > 0)
    return size_t(attention::flash_bwd_sm90_dq_accum_floats(p, splits)) * sizeof(float);
  if (p.deterministic) return 0;
  return size_t(p.total_q) * size_t(p.h) * size_t(p.d) * sizeof(float);
}
STRATA_EXECUTOR_END

/// Checks every field of a backward problem: the forward's, then dO, dQ, dK, dV, the workspace
/// and total_k.
inline Status validate_backward(const FlashBwdParams& p) {
  if (Status s = validate_forward(p); !s.ok()) return s;
  if (p.total_k < 0) return Status::InvalidArgument("total_k is negative");
  if (int64_t(p.total_k) * p.h_k > kMaxRows)
    return Status::InvalidArgument("total_k * h_k = " + std::to_string(int64_t(p.total_k) * p.h_k) +
                                   ": more than 2^31 - 257 rows (int32 row arithmetic)");
  if (!p.cu_seqlens_q && int64_t(p.b) * p.seqlen_k != p.total_k)
    return Status::InvalidArgument(
        "total_k = " + std::to_string(p.total_k) +
        ": a fixed-length batch needs b * seqlen_k = " + std::to_string(int64_t(p.b) * p.seqlen_k));
  if (p.cu_seqlens_k_host && p.cu_seqlens_k_host[p.b] != p.total_k)
    return Status::InvalidArgument("cu_seqlens_k[b] = " + std::to_string(p.cu_seqlens_k_host[p.b]) +
                                   " differs from total_k = " + std::to_string(p.total_k));
  if (p.total_k > int64_t(p.b) * p.seqlen_k)  // seqlen_k is the longest key sequence
    return Status::InvalidArgument(
        "total_k = " + std::to_string(p.total_k) +
        ": more than b * seqlen_k = " + std::to_string(int64_t(p.b) * p.seqlen_k));
  if (p.total_q > 0) {
    using detail::check_operand;
    if (Status s = check_operand(p.dout, "do", p.do_row_stride, p.do_head_stride); !s.ok())
      return s;
    if (Status s = check_operand(p.dq, "dq", p.dq_row_stride, p.dq_head_stride); !s.ok()) return s;
    if (!p.dsum)
      return Status::InvalidArgument("dsum (workspace of flash_bwd_workspace_bytes) is null");
    if (!p.deterministic && !p.dq_accum)
      return Status::InvalidArgument(
          "dq_accum (workspace of flash_bwd_dq_accum_bytes) is null with deterministic = false");
    const size_t slice = size_t(p.total_q) * size_t(p.h) * size_t(p.d) * sizeof(float);
    if (!p.deterministic && p.dq_accum_bytes != 0 && p.dq_accum_bytes < slice)
      return Status::InvalidArgument("dq_accum_bytes = " + std::to_string(p.dq_accum_bytes) +
                                     ": the fast mode accumulates dQ in total_q * h * d floats, " +
                                     std::to_string(slice) + " bytes");
  }
  if (p.total_k > 0) {
    using detail::check_operand;
    if (Status s = check_operand(p.dk, "dk", p.dk_row_stride, p.dk_head_stride); !s.ok()) return s;
    if (Status s = check_operand(p.dv, "dv", p.dv_row_stride, p.dv_head_stride); !s.ok()) return s;
    if (p.total_q == 0) {  // K and V are still read to write zero gradients
      if (Status s = check_operand(p.k, "k", p.k_row_stride, p.k_head_stride); !s.ok()) return s;
      if (Status s = check_operand(p.v, "v", p.v_row_stride, p.v_head_stride); !s.ok()) return s;
    }
  }
  return Status::Ok();
}

/// The checks by the Params' static type: validate_forward for a FlashFwdParams,
/// validate_backward for a FlashBwdParams (so a FlashBwdParams a forward-only caller filled gets
/// the backward's checks here: name the one meant).
inline Status validate(const FlashFwdParams& p) {
  return validate_forward(p);
}
inline Status validate(const FlashBwdParams& p) {
  return validate_backward(p);
}

namespace detail {
STRATA_EXECUTOR_BEGIN
template <class T, int D, class Variant>
Status launch_bwd(const FlashBwdParams& p, const Variant& var, cudaStream_t stream) {
  using Tr = attention::FlashBwdTraits<D>;
  if (p.total_q > 0) {
    if (Status s = launch(attention::flash_bwd_preprocess_kernel<T, D, Variant>,
                          attention::flash_bwd_preprocess_grid<D>(p), dim3(128), 0, stream, p, var);
        !s.ok())
      return s;
    if (p.deterministic)
      if (Status s = launch(attention::flash_bwd_dq_kernel<T, D, Variant>,
                            attention::flash_bwd_dq_grid<D>(p), dim3(Tr::kThreads),
                            Tr::template kSmemDq<T>, stream, p, var);
          !s.ok())
        return s;
  }
  if (p.total_k > 0 && p.seqlen_k > 0) {
    const Status s = p.deterministic
                         ? launch(attention::flash_bwd_dkdv_kernel<T, D, Variant, false>,
                                  attention::flash_bwd_dkdv_grid<D>(p), dim3(Tr::kThreads),
                                  Tr::template kSmemDkDv<T>, stream, p, var)
                         : launch(attention::flash_bwd_dkdv_kernel<T, D, Variant, true>,
                                  attention::flash_bwd_dkdv_grid<D>(p), dim3(Tr::kThreads),
                                  Tr::template kSmemDkDv<T>, stream, p, var);
    if (!s.ok()) return s;
  }
  if (!p.deterministic && p.total_q > 0)  // after every dK/dV block has added its dQ share
    return launch(attention::flash_bwd_dq_convert_kernel<T, D, Variant>,
                  attention::flash_bwd_dq_convert_grid(p), dim3(128), 0, stream, p, var, 1,
                  int64_t(0));
  return Status::Ok();
}
STRATA_EXECUTOR_END
}  // namespace detail

STRATA_EXECUTOR_BEGIN
/// Backward: validates, then runs the preprocess (D = rowsum(dO o O) into p.dsum), the dQ kernel
/// and the dK/dV kernel; deterministic: bitwise identical results from run to run. With
/// p.deterministic = false: the preprocess (which also zeroes p.dq_accum), the dK/dV kernel that
/// adds dQ into p.dq_accum, and the kernel that scales and stores dQ.
/// With a variant policy: the same one the forward ran with.
/// Which kernels: the sm_90a backward (attention/flash_bwd_sm90.cuh; 5 products per tile pair,
/// deterministic through per-block dQ slices) where the device runs sm_90a code, the variant
/// loads its tiles as stored (attention::Sm90Variant), p.dq_accum holds what
/// flash_bwd_dq_accum_bytes asks for there (in both modes; p.dq_accum_bytes says so, or, left 0,
/// the fast mode's one slice is taken as given) and its TMA maps describe `p`; the sm_80 ones
/// otherwise, on every device.
template <class Variant>
Status flash_bwd(const FlashBwdParams& p, const Variant& var, cudaStream_t stream = 0) {
  if (Status s = validate_backward(p); !s.ok()) return s;
  if constexpr (attention::Sm90Variant<Variant>::value) {
    if (p.dq_accum || p.total_q == 0) {
      // as in flash_fwd: refusals come before any launch and fall back to the sm_80 kernels
      const Status s = detail::run_bwd_sm90(p, var, stream, FlashBwdSm90Options{});
      if (s.code() != StatusCode::kUnsupported && s.code() != StatusCode::kInvalidArgument)
        return s;
    }
  }
  return detail::with_dtype_and_head_dim(
      p.dtype, p.d, [&]<class T, int D>() { return detail::launch_bwd<T, D>(p, var, stream); });
}
/// Backward on the sm_90a kernel only: the same problem and results as flash_bwd (dQ's last bits
/// aside: it sums in another order), for variants whose tiles are loaded as stored
/// (attention::Sm90Variant). p.dq_accum: flash_bwd_dq_accum_bytes(p, opt) in either mode, and
/// p.dq_accum_bytes its size (required in the deterministic mode).
/// Refused with a Status, nothing written: what validate(p) refuses; a null dq_accum, or one
/// p.dq_accum_bytes says is too small (or does not say, in the deterministic mode); operands
/// whose strides no TMA map describes (InvalidArgument naming the operand); num_splits outside
/// [0, 8]; a device that does not run sm_90a code (Unsupported).
template <class Variant>
Status flash_bwd_sm90(const FlashBwdParams& p, const Variant& var, cudaStream_t stream = 0,
                      const FlashBwdSm90Options& opt = {}) {
  if (Status s = validate_backward(p); !s.ok()) return s;
  return detail::run_bwd_sm90(p, var, stream, opt);
}
inline Status flash_bwd_sm90(const FlashBwdParams& p, cudaStream_t stream = 0,
                             const FlashBwdSm90Options& opt = {}) {
  return flash_bwd_sm90(p, attention::VanillaAttention{}, stream, opt);
}
inline Status flash_bwd(const FlashBwdParams& p, cudaStream_t stream = 0) {
  return flash_bwd(p, attention::VanillaAttention{}, stream);
}

STRATA_EXECUTOR_END
}  // namespace strata::api
