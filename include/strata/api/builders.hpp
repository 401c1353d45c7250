/// \file
/// Params for the common layouts, so that a complete call takes a few lines instead of ~25 fields
/// (16 of them strides):
///  * contiguous, fixed length (FlashAttention's BSHD): q, o, dout, dq [b, seqlen_q, h, d];
///    k, v, dk, dv [b, seqlen_k, h_k, d]; lse, dsum [h, b * seqlen_q] (contiguous_params);
///  * packed, variable length (FlashAttention's varlen): q [total_q, h, d], k [total_k, h_k, d],
///    the offsets from a list of lengths (PackedBatch, packed_params).
/// Each fills every stride, the totals and lengths, the mask and softmax_scale = 1 / sqrt(d) (as
/// FlashAttention computes it: `d ** -0.5` in double, rounded to float), and returns
/// FlashBwdParams, which is also the forward's FlashFwdParams: a forward-only caller passes it to
/// flash_fwd as is and leaves the backward's buffers null. The builders check nothing but the
/// length lists (PackedBatch::of): the launchers (or api::validate_forward / validate_backward)
/// refuse bad fields by name, as for hand-filled Params.
///
///   const api::PackedBatch batch = api::PackedBatch::of({17, 130, 1});
///   const FlashBwdParams p = api::packed_params(batch, cu_device, cu_device, {.h = 8, .h_k = 2,
///       .d = 128}, {.q = q, .k = k, .v = v, .o = o, .lse = lse}, {.causal = true});
///   api::flash_fwd(p);
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "strata/attention/params.hpp"
#include "strata/status.hpp"

namespace strata::api {

using attention::Dtype;
using attention::FlashBwdParams;

/// Heads, head dimension and storage type of a problem. h_k = 0 means h (no GQA).
struct HeadShape {
  int h = 0, h_k = 0, d = 0;
  Dtype dtype = Dtype::kBf16;
};

/// The buffers of a call, each contiguous in the builder's layout: what the forward reads (q, k,
/// v) and writes (o, lse), and the backward's (null where a call does not use them). dsum is
/// flash_bwd_workspace_bytes of fp32; dq_accum and its size as flash_bwd_dq_accum_bytes says.
struct FlashBuffers {
  const void* q = nullptr;
  const void* k = nullptr;
  const void* v = nullptr;
  void* o = nullptr;
  float* lse = nullptr;
  const void* dout = nullptr;
  void* dq = nullptr;
  void* dk = nullptr;
  void* dv = nullptr;
  float* dsum = nullptr;
  float* dq_accum = nullptr;
  size_t dq_accum_bytes = 0;
};

/// Mask, scale and backward mode. softmax_scale = 0: default_softmax_scale(d).
struct FlashOptions {
  bool causal = false;
  int window_left = -1;  ///< -1: unlimited
  float softmax_scale = 0.f;
  bool deterministic = true;
};

namespace detail {
/// sqrt(x) for x >= 0 by Newton's iteration (constexpr: std::sqrt is not before C++26); equal to
/// std::sqrt on the head dimensions' range (tests/api/test_builders.cpp checks 1..4096).
constexpr double sqrt_newton(double x) {
  double r = x > 1 ? x : 1;
  for (int i = 0; i < 64; ++i) r = 0.5 * (r + x / r);
  return r;
}
}  // namespace detail

/// FlashAttention's default softmax scale, d ** -0.5 in double rounded to float (its Python
/// wrappers compute it so; 1.f / sqrtf(d) differs in the last bit for some d). 0 for d <= 0.
constexpr float default_softmax_scale(int d) {
  return d > 0 ? float(1.0 / detail::sqrt_newton(double(d))) : 0.f;
}

namespace detail {
/// The fields every layout shares: shape, buffers, mask, scale, and the strides of contiguous
/// [rows, heads, d] tensors.
constexpr FlashBwdParams contiguous_rows(const HeadShape& s, const FlashBuffers& buf,
                                         const FlashOptions& opt) {
  FlashBwdParams p;
  const int h_k = s.h_k > 0 ? s.h_k : s.h;
  p.dtype = s.dtype;
  p.h = s.h, p.h_k = h_k, p.d = s.d;
  p.q = buf.q, p.k = buf.k, p.v = buf.v, p.o = buf.o, p.lse = buf.lse;
  p.dout = buf.dout, p.dq = buf.dq, p.dk = buf.dk, p.dv = buf.dv, p.dsum = buf.dsum;
  p.dq_accum = buf.dq_accum, p.dq_accum_bytes = buf.dq_accum_bytes;
  const int64_t q_row = int64_t(s.h) * s.d, k_row = int64_t(h_k) * s.d;
  p.q_row_stride = p.o_row_stride = p.do_row_stride = p.dq_row_stride = q_row;
  p.k_row_stride = p.v_row_stride = p.dk_row_stride = p.dv_row_stride = k_row;
  p.q_head_stride = p.o_head_stride = p.do_head_stride = p.dq_head_stride = s.d;
  p.k_head_stride = p.v_head_stride = p.dk_head_stride = p.dv_head_stride = s.d;
  p.is_causal = opt.causal;
  p.window_left = opt.window_left;
  p.softmax_scale = opt.softmax_scale != 0.f ? opt.softmax_scale : default_softmax_scale(s.d);
  p.deterministic = opt.deterministic;
  return p;
}
}  // namespace detail

/// A contiguous fixed-length batch: b sequences of seqlen_q queries and seqlen_k keys (BSHD).
constexpr FlashBwdParams contiguous_params(int b, int seqlen_q, int seqlen_k, const HeadShape& s,
                                           const FlashBuffers& buf, const FlashOptions& opt = {}) {
  FlashBwdParams p = detail::contiguous_rows(s, buf, opt);
  p.b = b, p.seqlen_q = seqlen_q, p.seqlen_k = seqlen_k;
  p.total_q = b * seqlen_q, p.total_k = b * seqlen_k;
  return p;
}

/// A packed batch's offsets from its sequence lengths, on the host: cu_q / cu_k with b + 1
/// entries (FlashAttention's cu_seqlens), the totals and the longest sequences. Params that
/// packed_params builds point at cu_q / cu_k as the host copies (validation reads them, the sm_90
/// kernels size their TMA maps from them): keep the batch alive while they are used.
struct PackedBatch {
  std::vector<int> cu_q, cu_k;
  int b = 0, total_q = 0, total_k = 0, max_q = 0, max_k = 0;

  /// Self-attention: the keys' lengths are the queries'. A negative length is kept as given,
  /// for validation to refuse (the offsets decrease).
  static PackedBatch of(const std::vector<int>& lens) {
    PackedBatch batch;
    fill(lens, lens, &batch);
    return batch;
  }
  /// Query and key lengths per sequence; refused by name, `out` untouched, when the lists'
  /// lengths differ.
  static Status of(const std::vector<int>& lens_q, const std::vector<int>& lens_k,
                   PackedBatch* out) {
    if (lens_k.size() != lens_q.size())
      return Status::InvalidArgument("lens_k: " + std::to_string(lens_k.size()) + " lengths for " +
                                     std::to_string(lens_q.size()) + " sequences (lens_q)");
    fill(lens_q, lens_k, out);
    return Status::Ok();
  }

 private:
  static void fill(const std::vector<int>& lens_q, const std::vector<int>& lens_k,
                   PackedBatch* batch) {
    *batch = PackedBatch{};
    batch->b = int(lens_q.size());
    batch->cu_q.assign(1, 0), batch->cu_k.assign(1, 0);
    for (size_t i = 0; i < lens_q.size(); ++i) {
      batch->cu_q.push_back(batch->cu_q.back() + lens_q[i]);
      batch->cu_k.push_back(batch->cu_k.back() + lens_k[i]);
      batch->max_q = lens_q[i] > batch->max_q ? lens_q[i] : batch->max_q;
      batch->max_k = lens_k[i] > batch->max_k ? lens_k[i] : batch->max_k;
    }
    batch->total_q = batch->cu_q.back(), batch->total_k = batch->cu_k.back();
  }
};

/// A packed batch: q [total_q, h, d], k / v [total_k, h_k, d], contiguous. device_cu_q /
/// device_cu_k are batch.cu_q / cu_k in device memory, the kernels' copies (a cudaMemcpy of the
/// host vectors; the simulator runs on host memory, where batch.cu_q.data() serves).
inline FlashBwdParams packed_params(const PackedBatch& batch, const int* device_cu_q,
                                    const int* device_cu_k, const HeadShape& s,
                                    const FlashBuffers& buf, const FlashOptions& opt = {}) {
  FlashBwdParams p = detail::contiguous_rows(s, buf, opt);
  p.b = batch.b, p.seqlen_q = batch.max_q, p.seqlen_k = batch.max_k;
  p.total_q = batch.total_q, p.total_k = batch.total_k;
  p.cu_seqlens_q = device_cu_q, p.cu_seqlens_k = device_cu_k;
  p.cu_seqlens_q_host = batch.cu_q.data(), p.cu_seqlens_k_host = batch.cu_k.data();
  return p;
}

}  // namespace strata::api
