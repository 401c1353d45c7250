// The C ABI's shared part: StrataTensor -> Strata's Params, checks that name the Python
// argument, and the error channel. Included by every capi_*.cpp, which each executor compiles:
// g++ with the simulator (STRATA_SIM) and nvcc (-x cu).
#pragma once

#include <strata/api/flash.hpp>
#include <strata/strata.cuh>

#include <climits>
#include <cstdint>
#include <exception>
#include <string>

#include "strata_capi.h"

namespace strata_capi {

using strata::Status;
using strata::StatusCode;
using strata::api::FlashBwdParams;
using strata::api::FlashFwdParams;

/// This thread's last error (capi_core.cpp).
std::string& last_error();

/// Records a failed Status for strata_capi_last_error() and returns its code.
inline int fail(const Status& s) {
  last_error() = s.message();
  return static_cast<int>(s.code());
}

inline Status invalid(const std::string& m) {
  return Status::InvalidArgument(m);
}

/// Runs `body` (returning Status), turning a C++ exception into an error: nothing may unwind
/// through the C ABI.
template <class F>
int guarded(F&& body) {
  try {
    const Status s = body();
    if (!s.ok()) return fail(s);
    last_error() = "ok";
    return 0;
  } catch (const std::exception& e) {
    return fail(Status(StatusCode::kInvalidArgument, std::string("internal error: ") + e.what()));
  } catch (...) {
    return fail(Status(StatusCode::kInvalidArgument, "internal error"));
  }
}

inline const char* dtype_name(int32_t dt) {
  switch (dt) {
    case STRATA_DTYPE_BF16:
      return "bfloat16";
    case STRATA_DTYPE_FP16:
      return "float16";
    case STRATA_DTYPE_FP32:
      return "float32";
    case STRATA_DTYPE_INT32:
      return "int32";
    case STRATA_DTYPE_UINT8:
      return "uint8";
    case STRATA_DTYPE_INT64:
      return "int64";
    case STRATA_DTYPE_NONE:
      return "none (not given)";
  }
  return "a dtype Strata does not take";
}

inline std::string shape_str(const StrataTensor& t) {
  std::string s = "[";
  for (int i = 0; i < t.ndim && i < 4; ++i) s += (i ? ", " : "") + std::to_string(t.shape[i]);
  return s + "]";
}

/// The tensor was given (its dtype is set).
inline bool given(const StrataTensor& t) {
  return t.dtype != STRATA_DTYPE_NONE;
}

inline int64_t numel(const StrataTensor& t);

/// Given, and with memory behind it unless it is empty.
inline Status check_given(const StrataTensor& t, const std::string& name) {
  if (!given(t)) return Status::InvalidArgument(name + " is missing");
  if (!t.data && numel(t) != 0) return Status::InvalidArgument(name + ": data is null");
  return Status::Ok();
}

inline Status check_dtype(const StrataTensor& t, const char* name, int32_t want) {
  if (t.dtype != want)
    return invalid(std::string(name) + ": dtype is " + dtype_name(t.dtype) + ", expected " +
                   dtype_name(want));
  return Status::Ok();
}

/// A tensor given as one dense block of its shape (row-major strides); an empty one is.
inline bool contiguous(const StrataTensor& t) {
  for (int i = 0; i < t.ndim; ++i)
    if (t.shape[i] == 0) return true;
  int64_t expect = 1;
  for (int i = t.ndim - 1; i >= 0; --i) {
    if (t.shape[i] != 1 && t.stride[i] != expect) return false;
    expect *= t.shape[i];
  }
  return true;
}

inline int64_t numel(const StrataTensor& t) {
  int64_t n = 1;
  for (int i = 0; i < t.ndim; ++i) n *= t.shape[i];
  return n;
}

/// Rows and heads of a [b, s, heads, (d)] or [total, heads, (d)] operand: the kernels address
/// token t of the packed batch at t * row_stride, so a 4-d tensor's batch stride must be
/// seqlen * row_stride (true of contiguous tensors and of slices of a packed qkv).
struct Rows {
  int64_t tokens = 0;  ///< b * s, or total
  int64_t heads = 0;
  int64_t d = 0;  ///< 1 for a tensor without a head_dim (a headwise gate)
  int64_t b = 0, s = 0;
  int64_t row_stride = 0, head_stride = 0;
};

/// `has_d`: the tensor ends in a contiguous head_dim (q, k, v, ...); otherwise it ends at heads.
inline Status rows_of(const StrataTensor& t, const char* name, bool varlen, bool has_d, Rows* r) {
  const std::string n = name;
  if (Status s = check_given(t, n); !s.ok()) return s;
  const int want = (varlen ? 3 : 4) - (has_d ? 0 : 1);
  if (t.ndim != want)
    return invalid(n + ": expected " + std::to_string(want) + " dimensions " +
                   (varlen
                        ? (has_d ? "[total_tokens, heads, head_dim]" : "[total_tokens, heads]")
                        : (has_d ? "[batch, seqlen, heads, head_dim]" : "[batch, seqlen, heads]")) +
                   (varlen ? " (cu_seqlens given)" : "") + ", got shape " + shape_str(t));
  for (int i = 0; i < t.ndim; ++i)
    if (t.shape[i] < 0 || t.shape[i] > INT_MAX)
      return invalid(n + ": dimension " + std::to_string(i) + " = " + std::to_string(t.shape[i]) +
                     " is outside [0, 2^31)");
  const int tok = varlen ? 0 : 1;  // the token dimension
  r->b = varlen ? 0 : t.shape[0];
  r->s = varlen ? 0 : t.shape[1];
  r->tokens = varlen ? t.shape[0] : t.shape[0] * t.shape[1];
  r->heads = t.shape[tok + 1];
  r->d = has_d ? t.shape[tok + 2] : 1;
  r->row_stride = t.stride[tok];
  r->head_stride = t.stride[tok + 1];
  // int32 index arithmetic in the kernels: every element offset must fit
  if (r->tokens > INT_MAX)
    return invalid(n + ": " + std::to_string(r->tokens) + " tokens, more than 2^31 - 1");
  if (has_d && r->d > 1 && t.stride[tok + 2] != 1)
    return invalid(n +
                   ": the last dimension (head_dim) must be contiguous (stride 1), got stride " +
                   std::to_string(t.stride[tok + 2]));
  // a dimension of size 1 has a free stride in torch (views and slices leave any value)
  if (r->heads == 1) r->head_stride = r->d;
  if (r->tokens == 1) {
    r->row_stride = r->heads * r->head_stride;  // one row: any stride that holds it
  } else if (!varlen && r->s == 1) {
    r->row_stride = t.stride[0];  // one token per sequence: token b sits at b * batch stride
  } else if (!varlen && r->b > 1 && r->s > 0 && t.stride[0] != r->s * r->row_stride) {
    return invalid(n + ": the batch stride (" + std::to_string(t.stride[0]) +
                   ") must be seqlen * the token stride (" + std::to_string(r->s) + " * " +
                   std::to_string(r->row_stride) + "): call .contiguous()");
  }
  return Status::Ok();
}

inline Status same_shape(const StrataTensor& t, const char* name, const StrataTensor& ref,
                         const char* ref_name) {
  bool same = t.ndim == ref.ndim;
  for (int i = 0; same && i < t.ndim; ++i) same = t.shape[i] == ref.shape[i];
  if (!same)
    return invalid(std::string(name) + ": shape " + shape_str(t) + " differs from " + ref_name +
                   "'s " + shape_str(ref));
  return Status::Ok();
}

/// An fp32 tensor of exactly `n` contiguous elements.
inline Status check_f32_block(const StrataTensor& t, const char* name, int64_t n) {
  if (Status s = check_given(t, name); !s.ok()) return s;
  if (Status s = check_dtype(t, name, STRATA_DTYPE_FP32); !s.ok()) return s;
  if (numel(t) != n)
    return invalid(std::string(name) + ": " + std::to_string(numel(t)) + " elements, expected " +
                   std::to_string(n));
  if (!contiguous(t)) return invalid(std::string(name) + " must be contiguous");
  return Status::Ok();
}

/// cu_seqlens: int32 [b + 1] contiguous.
inline Status check_cu(const StrataTensor& t, const char* name) {
  if (Status s = check_dtype(t, name, STRATA_DTYPE_INT32); !s.ok()) return s;
  if (t.ndim != 1 || t.shape[0] < 2)
    return invalid(std::string(name) + ": expected int32 [batch + 1] with batch >= 1, got shape " +
                   shape_str(t));
  if (t.stride[0] != 1) return invalid(std::string(name) + " must be contiguous");
  if (t.shape[0] - 1 > 65535)
    return invalid(std::string(name) + ": batch " + std::to_string(t.shape[0] - 1) +
                   " is more than 65535");
  return Status::Ok();
}

/// fp32 [rows, cols] parameter.
inline Status matrix(const StrataTensor& t, const char* name, int64_t rows, int64_t cols) {
  if (Status s = check_given(t, name); !s.ok()) return s;
  if (t.ndim != 2 || t.shape[0] != rows || t.shape[1] != cols)
    return invalid(std::string(name) + ": expected fp32 [" + std::to_string(rows) + ", " +
                   std::to_string(cols) + "], got " + shape_str(t));
  return check_f32_block(t, name, rows * cols);
}

/// Whether lambda `t` of a stream with `heads` heads has granularity `g`: [heads, d], [heads] or
/// one value ([1] is both headwise and scalar when there is one head).
inline bool lambda_fits(const StrataTensor& t, strata::core::MixGranularity g, int heads, int d) {
  using strata::core::MixGranularity;
  switch (g) {
    case MixGranularity::kElementwise:
      return t.ndim == 2 && t.shape[0] == heads && t.shape[1] == d;
    case MixGranularity::kHeadwise:
      return (t.ndim == 1 && t.shape[0] == heads) || (heads == 1 && numel(t) == 1 && t.ndim <= 1);
    case MixGranularity::kScalar:
      return numel(t) == 1 && t.ndim <= 1;
  }
  return false;
}

/// lambda of `heads` heads: fp32 [heads, d] (elementwise), [heads] (headwise) or one value; the
/// first stream's decides the layer's granularity (`first`), the others must fit it.
inline Status lambda_granularity(const StrataTensor& t, const std::string& name, int heads, int d,
                                 bool first, strata::core::MixGranularity* g) {
  using strata::core::MixGranularity;
  if (Status s = check_given(t, name); !s.ok()) return s;
  if (first) {
    for (MixGranularity c :
         {MixGranularity::kElementwise, MixGranularity::kHeadwise, MixGranularity::kScalar})
      if (lambda_fits(t, c, heads, d) && (c != MixGranularity::kHeadwise || heads > 1)) {
        *g = c;
        break;
      }
    if (!lambda_fits(t, *g, heads, d))
      return invalid(name + ": expected fp32 [" + std::to_string(heads) + ", " + std::to_string(d) +
                     "], [" + std::to_string(heads) + "] or one value, got " + shape_str(t));
  } else if (!lambda_fits(t, *g, heads, d)) {
    return invalid(name + ": every lambda of a layer has one granularity (elementwise [heads, " +
                   "d], headwise [heads] or one value); " + shape_str(t) + " does not match " +
                   "lambda1_q's");
  }
  return check_f32_block(t, name.c_str(), numel(t));
}

/// ResFormer's lambda_self and lambda_first: fp32, one value (a 0-d or one-element tensor) or
/// one per KV head, both alike; `*g` receives the granularity.
inline Status residual_lambdas(const StrataValueResidual& r, int64_t h_k,
                               strata::core::MixGranularity* g) {
  if (Status s = check_given(r.lambda_self, "lambda_self"); !s.ok()) return s;
  const int64_t n = numel(r.lambda_self);
  const bool scalar = n == 1 && r.lambda_self.ndim <= 1;
  if (!scalar && !(r.lambda_self.ndim == 1 && n == h_k))
    return invalid("lambda_self: expected one value or one per KV head ([" + std::to_string(h_k) +
                   "]), got shape " + shape_str(r.lambda_self));
  *g = scalar ? strata::core::MixGranularity::kScalar : strata::core::MixGranularity::kHeadwise;
  if (Status s = check_f32_block(r.lambda_self, "lambda_self", n); !s.ok()) return s;
  if (Status s = check_f32_block(r.lambda_first, "lambda_first", n); !s.ok()) return s;
  return same_shape(r.lambda_first, "lambda_first", r.lambda_self, "lambda_self");
}

inline int64_t round16(int64_t n) {
  return (n + 15) / 16 * 16;
}

/// The backward's byte workspace: a contiguous 1-d uint8 tensor, 16-byte aligned.
inline Status check_workspace(const StrataTensor& w) {
  if (Status s = check_given(w, "workspace"); !s.ok()) return s;
  if (Status s = check_dtype(w, "workspace", STRATA_DTYPE_UINT8); !s.ok()) return s;
  if (w.ndim != 1 || w.stride[0] != 1)
    return invalid("workspace: expected a contiguous 1-d uint8 tensor");
  if (!w.data) return invalid("workspace: data is null");
  if (reinterpret_cast<uintptr_t>(w.data) % 16) return invalid("workspace is not 16-byte aligned");
  return Status::Ok();
}

/// Nothing to launch (an empty batch): the checks passed and every output is empty.
inline bool empty_problem(const FlashBwdParams& p) {
  return p.b == 0 || (p.total_q == 0 && p.total_k == 0);
}

/// The attention problem of `a` as Strata's Params. `backward` adds dout, dq, dk, dv and the
/// flash part of the workspace (dsum, then dq_accum from a 16-byte boundary); `*extra_offset`
/// receives where a variant's workspace may start. Returns an error naming the argument.
inline Status attention_params(const StrataAttention& a, bool backward, FlashBwdParams* p,
                               int64_t* extra_offset = nullptr, bool need_workspace = true) {
  *p = FlashBwdParams{};
  const bool varlen = given(a.cu_seqlens_q);
  if (varlen != given(a.cu_seqlens_k))
    return invalid("cu_seqlens_q and cu_seqlens_k: give both (packed varlen) or neither");
  if (Status s = check_given(a.q, "q"); !s.ok()) return s;
  if (a.q.dtype != STRATA_DTYPE_BF16 && a.q.dtype != STRATA_DTYPE_FP16)
    return invalid(std::string("q: dtype is ") + dtype_name(a.q.dtype) +
                   ", expected bfloat16 or float16");
  Rows q, k, v;
  if (Status s = rows_of(a.q, "q", varlen, true, &q); !s.ok()) return s;
  if (Status s = rows_of(a.k, "k", varlen, true, &k); !s.ok()) return s;
  if (Status s = rows_of(a.v, "v", varlen, true, &v); !s.ok()) return s;
  if (Status s = check_dtype(a.k, "k", a.q.dtype); !s.ok()) return s;
  if (Status s = check_dtype(a.v, "v", a.q.dtype); !s.ok()) return s;
  if (Status s = same_shape(a.v, "v", a.k, "k"); !s.ok()) return s;
  if (k.d != q.d)
    return invalid("k: head_dim " + std::to_string(k.d) + " differs from q's " +
                   std::to_string(q.d));
  if (!varlen && k.b != q.b)
    return invalid("k: batch " + std::to_string(k.b) + " differs from q's " + std::to_string(q.b));
  if (k.heads == 0 || q.heads % k.heads != 0)
    return invalid("k: " + std::to_string(k.heads) + " heads do not divide q's " +
                   std::to_string(q.heads) + " (grouped-query attention needs h % h_k == 0)");
  p->dtype = a.q.dtype == STRATA_DTYPE_BF16 ? strata::attention::Dtype::kBf16
                                            : strata::attention::Dtype::kFp16;
  p->q = a.q.data, p->k = a.k.data, p->v = a.v.data;
  p->h = int(q.heads), p->h_k = int(k.heads), p->d = int(q.d);
  p->total_q = int(q.tokens), p->total_k = int(k.tokens);
  p->q_row_stride = q.row_stride, p->q_head_stride = q.head_stride;
  p->k_row_stride = k.row_stride, p->k_head_stride = k.head_stride;
  p->v_row_stride = v.row_stride, p->v_head_stride = v.head_stride;
  p->softmax_scale = a.softmax_scale;
  p->is_causal = a.causal != 0;
  p->window_left = a.window_left;
  p->deterministic = a.deterministic != 0;
  if (varlen) {
    if (Status s = check_cu(a.cu_seqlens_q, "cu_seqlens_q"); !s.ok()) return s;
    if (Status s = check_cu(a.cu_seqlens_k, "cu_seqlens_k"); !s.ok()) return s;
    if (a.cu_seqlens_k.shape[0] != a.cu_seqlens_q.shape[0])
      return invalid("cu_seqlens_k: " + std::to_string(a.cu_seqlens_k.shape[0]) +
                     " offsets, cu_seqlens_q has " + std::to_string(a.cu_seqlens_q.shape[0]));
    if (a.max_seqlen_q < 0 || a.max_seqlen_k < 0)
      return invalid(a.max_seqlen_q < 0 ? "max_seqlen_q is negative" : "max_seqlen_k is negative");
    p->b = int(a.cu_seqlens_q.shape[0] - 1);
    p->seqlen_q = a.max_seqlen_q, p->seqlen_k = a.max_seqlen_k;
    p->cu_seqlens_q = static_cast<const int*>(a.cu_seqlens_q.data);
    p->cu_seqlens_k = static_cast<const int*>(a.cu_seqlens_k.data);
#if STRATA_SIM
    p->cu_seqlens_q_host = p->cu_seqlens_q;  // host memory: always validated
    p->cu_seqlens_k_host = p->cu_seqlens_k;
#else
    if (given(a.cu_seqlens_q_host) || given(a.cu_seqlens_k_host)) {
      if (Status s = check_cu(a.cu_seqlens_q_host, "cu_seqlens_q (host copy)"); !s.ok()) return s;
      if (Status s = check_cu(a.cu_seqlens_k_host, "cu_seqlens_k (host copy)"); !s.ok()) return s;
      if (a.cu_seqlens_q_host.shape[0] != a.cu_seqlens_q.shape[0] ||
          a.cu_seqlens_k_host.shape[0] != a.cu_seqlens_k.shape[0])
        return invalid("cu_seqlens host copies: sizes differ from the device arrays");
      p->cu_seqlens_q_host = static_cast<const int*>(a.cu_seqlens_q_host.data);
      p->cu_seqlens_k_host = static_cast<const int*>(a.cu_seqlens_k_host.data);
    }
#endif
    if (p->cu_seqlens_k_host && p->cu_seqlens_k_host[p->b] != p->total_k)
      return invalid("cu_seqlens_k[-1] = " + std::to_string(p->cu_seqlens_k_host[p->b]) +
                     " differs from k's " + std::to_string(p->total_k) + " tokens");
    if (p->cu_seqlens_k_host)
      if (Status s = strata::api::detail::check_cu_seqlens(
              p->cu_seqlens_k_host, p->b, p->total_k, p->seqlen_k, "cu_seqlens_k", "max_seqlen_k");
          !s.ok())
        return s;
  } else {
    p->b = int(q.b), p->seqlen_q = int(q.s), p->seqlen_k = int(k.s);
  }
  // out and lse: written by the forward, read by the backward
  Rows o;
  if (Status s = rows_of(a.out, "out", varlen, true, &o); !s.ok()) return s;
  if (Status s = check_dtype(a.out, "out", a.q.dtype); !s.ok()) return s;
  if (Status s = same_shape(a.out, "out", a.q, "q"); !s.ok()) return s;
  p->o = a.out.data, p->o_row_stride = o.row_stride, p->o_head_stride = o.head_stride;
  if (Status s = check_given(a.lse, "lse"); !s.ok()) return s;
  if (Status s = check_dtype(a.lse, "lse", STRATA_DTYPE_FP32); !s.ok()) return s;
  if (a.lse.ndim != 2 || a.lse.shape[0] != q.heads || a.lse.shape[1] != q.tokens ||
      !contiguous(a.lse))
    return invalid("lse: expected contiguous float32 [heads, total_q] = [" +
                   std::to_string(q.heads) + ", " + std::to_string(q.tokens) + "], got " +
                   shape_str(a.lse));
  p->lse = static_cast<float*>(a.lse.data);
  if (empty_problem(*p)) return Status::Ok();  // nothing to run
  if (!backward) return Status::Ok();

  Rows g;
  if (Status s = rows_of(a.dout, "dout", varlen, true, &g); !s.ok()) return s;
  if (Status s = check_dtype(a.dout, "dout", a.q.dtype); !s.ok()) return s;
  if (Status s = same_shape(a.dout, "dout", a.q, "q"); !s.ok()) return s;
  p->dout = a.dout.data, p->do_row_stride = g.row_stride, p->do_head_stride = g.head_stride;
  const struct {
    const StrataTensor& t;
    const char* name;
    const StrataTensor& like;
    const char* like_name;
    void** ptr;
    int64_t *rs, *hs;
  } grads[] = {{a.dq, "dq", a.q, "q", &p->dq, &p->dq_row_stride, &p->dq_head_stride},
               {a.dk, "dk", a.k, "k", &p->dk, &p->dk_row_stride, &p->dk_head_stride},
               {a.dv, "dv", a.v, "v", &p->dv, &p->dv_row_stride, &p->dv_head_stride}};
  for (const auto& x : grads) {
    if (Status s = rows_of(x.t, x.name, varlen, true, &g); !s.ok()) return s;
    if (Status s = check_dtype(x.t, x.name, a.q.dtype); !s.ok()) return s;
    if (Status s = same_shape(x.t, x.name, x.like, x.like_name); !s.ok()) return s;
    *x.ptr = x.t.data, *x.rs = g.row_stride, *x.hs = g.head_stride;
  }
  // workspace: dsum [h, total_q] fp32, then dq_accum (fast mode)
  const int64_t dsum = int64_t(strata::api::flash_bwd_workspace_bytes(*p));
  const int64_t accum = int64_t(strata::api::flash_bwd_dq_accum_bytes(*p));
  const int64_t end = accum ? round16(dsum) + accum : dsum;
  if (extra_offset) *extra_offset = round16(end);
  if (!need_workspace || end == 0) return Status::Ok();
  if (Status s = check_workspace(a.workspace); !s.ok()) return s;
  if (a.workspace.shape[0] < end)
    return invalid("workspace: " + std::to_string(a.workspace.shape[0]) + " bytes, needs " +
                   std::to_string(end));
  char* ws = static_cast<char*>(a.workspace.data);
  p->dsum = reinterpret_cast<float*>(ws);
  if (accum) {
    p->dq_accum = reinterpret_cast<float*>(ws + round16(dsum));
    p->dq_accum_bytes = size_t(accum);
  }
  return Status::Ok();
}

/// A variant's workspace of `bytes` at `offset` in a.workspace (after the flash part).
inline Status variant_workspace(const StrataAttention& a, int64_t offset, int64_t bytes,
                                void** out) {
  *out = nullptr;
  if (bytes == 0) return Status::Ok();
  if (Status s = check_workspace(a.workspace); !s.ok()) return s;
  if (a.workspace.shape[0] < offset + bytes)
    return invalid("workspace: " + std::to_string(a.workspace.shape[0]) + " bytes, needs " +
                   std::to_string(offset + bytes));
  *out = static_cast<char*>(a.workspace.data) + offset;
  return Status::Ok();
}

inline cudaStream_t stream_of(const StrataAttention& a) {
  return reinterpret_cast<cudaStream_t>(a.stream);
}

}  // namespace strata_capi
