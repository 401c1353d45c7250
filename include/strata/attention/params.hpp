/// \file
/// Parameters of the flash-attention kernels: plain pointers, shapes and strides with
/// FlashAttention's names (DESIGN.md §4). Tensors are [tokens, heads, head_dim] with the last
/// dimension contiguous; a batch is either fixed-length (cu_seqlens null: sequence b owns tokens
/// b*seqlen .. (b+1)*seqlen) or packed variable-length (cu_seqlens, B+1 int32 offsets).
#pragma once

#include <cstddef>
#include <cstdint>

namespace strata::attention {

/// Storage type of Q, K, V and O.
enum class Dtype { kBf16, kFp16 };

/// Forward pass: O = softmax(scale * Q K^T, masked) V and the natural-log LSE per query row.
struct FlashFwdParams {
  const void* q = nullptr;  ///< [total_q, h, d]
  const void* k = nullptr;  ///< [total_k, h_k, d]
  const void* v = nullptr;  ///< [total_k, h_k, d]
  void* o = nullptr;        ///< [total_q, h, d]
  float* lse =
      nullptr;  ///< [h, total_q] (FlashAttention's varlen layout), fp32; read by the backward

  const int* cu_seqlens_q = nullptr;  ///< B+1 offsets (device memory), or null: fixed length
  const int* cu_seqlens_k = nullptr;  ///< B+1 offsets, or null
  /// Optional host copies of cu_seqlens_q / cu_seqlens_k, read by validate() only: when given,
  /// the offsets are checked (start at 0, never decrease, end at total_q, no sequence longer than
  /// seqlen_q / seqlen_k, which size the grid). Without them a varlen batch is trusted.
  const int* cu_seqlens_q_host = nullptr;
  const int* cu_seqlens_k_host = nullptr;

  Dtype dtype = Dtype::kBf16;
  int b = 0;         ///< batch size
  int h = 0;         ///< query heads
  int h_k = 0;       ///< key/value heads (h % h_k == 0: GQA, h_k = 1: MQA)
  int d = 0;         ///< head dimension (a compiled one: 64, 96, 128)
  int seqlen_q = 0;  ///< fixed length, or the maximum length when varlen (grid size)
  int seqlen_k = 0;  ///< fixed length, or the maximum when varlen
  int total_q = 0;   ///< rows of q / o / lse (b * seqlen_q when fixed length)

  // Strides in elements (the head dimension is contiguous).
  int64_t q_row_stride = 0, q_head_stride = 0;
  int64_t k_row_stride = 0, k_head_stride = 0;
  int64_t v_row_stride = 0, v_head_stride = 0;
  int64_t o_row_stride = 0, o_head_stride = 0;

  float softmax_scale = 0.f;  ///< usually 1/sqrt(d)
  bool is_causal = false;
  int window_left = -1;  ///< -1: unlimited
};

/// Backward pass: dQ, dK, dV of the forward above, given dO and the forward's O and LSE. dK and
/// dV of a KV head sum the gradients of its G query heads. Deterministic by default: every
/// gradient element is written by one thread with a fixed summation order (no atomics).
struct FlashBwdParams : FlashFwdParams {
  /// true: bitwise reproducible (a dQ kernel and a dK/dV kernel, 7 matrix products per tile
  /// pair). false: FlashAttention-2's fast mode (5 products, dQ summed in fp32 by atomics into
  /// dq_accum, so its last bits vary from run to run).
  bool deterministic = true;
  /// fp32 workspace of the dQ accumulator, flash_bwd_dq_accum_bytes(p) of it: [total_q, h, d]
  /// when !deterministic; on an sm_90a device the sm_90 backward's slices, in both modes.
  float* dq_accum = nullptr;
  /// Bytes at dq_accum, checked against what a kernel needs before it runs. 0: not given; then
  /// dq_accum is taken to hold the fast mode's [total_q, h, d] floats only, and a deterministic
  /// backward that would need more (the sm_90 one's slices) runs the sm_80 kernels instead.
  size_t dq_accum_bytes = 0;
  const void* dout = nullptr;  ///< [total_q, h, d]
  void* dq = nullptr;          ///< [total_q, h, d]
  void* dk = nullptr;          ///< [total_k, h_k, d]
  void* dv = nullptr;          ///< [total_k, h_k, d]
  float* dsum = nullptr;       ///< workspace [h, total_q], fp32: D = rowsum(dO o O)
  int total_k = 0;             ///< rows of k / v / dk / dv
  int64_t do_row_stride = 0, do_head_stride = 0;
  int64_t dq_row_stride = 0, dq_head_stride = 0;
  int64_t dk_row_stride = 0, dk_head_stride = 0;
  int64_t dv_row_stride = 0, dv_head_stride = 0;
};

}  // namespace strata::attention
