/// \file
/// The KV-cache descriptor every inference kernel reads (issue: decode, chunked prefill, paged
/// cache): one struct for the three ways engines address their caches.
///
///  kContiguous  FlashAttention's flash_attn_with_kvcache: a [b_cache, capacity, h_k, d] cache per
///               sequence slot, cache_seqlens[b] tokens in use, cache_batch_idx[b] choosing the
///               slot (null: slot b). Here a slot is one page of page_size = capacity tokens.
///  kBlockTable  vLLM / FlashAttention paged: block_table[b, max_pages] lists sequence b's pages in
///               order, cache_seqlens[b] tokens in use.
///  kPageList    FlashInfer's CSR: sequence b owns pages indices[indptr[b] .. indptr[b+1]) in
///  order,
///               the last one holding last_page_len[b] tokens.
///
/// Token `pos` of sequence b lives in logical page pos / page_size at offset pos % page_size; its
/// element e of KV head h is at base + page * page_stride + offset * row_stride + h * head_stride
/// + e (elements). NHD pages ([page_size, h_k, d]) and HND pages ([h_k, page_size, d]) are the
/// same descriptor with other strides, and K and V have separate bases and strides: SVFormer's
/// layers point V at layer 0's cache, MEA's cache holds component heads. A physical slot (vLLM's
/// slot_mapping) is page * page_size + offset.
#pragma once

#include <cstddef>
#include <cstdint>

#include "strata/attention/params.hpp"
#include "strata/config.hpp"
#include "strata/core/options.hpp"

namespace strata::attention {

/// How a sequence's logical pages map to physical pages.
enum class CacheIndexing { kContiguous, kBlockTable, kPageList };

/// Largest page of a paged cache (kBlockTable, kPageList); contiguous slots may be any length.
inline constexpr int kMaxPageSize = 256;

/// Where one cache tensor (K or V) lives: base and strides in elements.
struct CacheTensor {
  void* data = nullptr;  ///< written by appends, read by attention
  int64_t page_stride = 0;
  int64_t row_stride = 0;   ///< between tokens of a page
  int64_t head_stride = 0;  ///< between KV heads
};

/// A KV cache: its storage, geometry and indexing.
struct KvCache {
  CacheTensor k, v;
  Dtype dtype = Dtype::kBf16;
  int h_k = 0;        ///< KV heads per token (component heads for MEA)
  int d = 0;          ///< head dimension (64, 96, 128)
  int page_size = 0;  ///< tokens per page (the capacity per slot when kContiguous)
  int num_pages = 0;  ///< physical pages (slots) allocated in k.data and v.data
  CacheIndexing indexing = CacheIndexing::kBlockTable;
  int b = 0;  ///< sequences
  // kContiguous, kBlockTable
  const int* cache_seqlens = nullptr;    ///< [b] tokens in the cache per sequence
  const int* cache_batch_idx = nullptr;  ///< kContiguous: [b] slot of each sequence, or null
  const int* block_table = nullptr;      ///< kBlockTable: [b, max_pages] physical pages
  int64_t block_table_stride = 0;        ///< between sequences' rows of block_table
  int max_pages = 0;                     ///< columns of block_table
  // kPageList
  const int* indptr = nullptr;         ///< [b + 1] offsets into indices
  const int* indices = nullptr;        ///< physical pages, sequence by sequence
  const int* last_page_len = nullptr;  ///< [b] tokens in each sequence's last page (1..page_size)
  /// Optional host copies of the indexing arrays, read by validation only: with them every
  /// length, page and slot index is checked against the cache (pages in range, no page twice in
  /// one sequence, lengths within the capacity). Without them the indexing is trusted.
  const int* cache_seqlens_host = nullptr;
  const int* cache_batch_idx_host = nullptr;
  const int* block_table_host = nullptr;
  const int* indptr_host = nullptr;
  const int* indices_host = nullptr;
  const int* last_page_len_host = nullptr;

  /// Tokens in the cache of sequence s.
  STRATA_HOST_DEVICE int seqlen(int s) const {
    if (indexing != CacheIndexing::kPageList) return cache_seqlens[s];
    const int pages = indptr[s + 1] - indptr[s];
    return pages > 0 ? (pages - 1) * page_size + last_page_len[s] : 0;
  }
  /// Physical page of logical page `lp` of sequence s.
  STRATA_HOST_DEVICE int page(int s, int lp) const {
    switch (indexing) {
      case CacheIndexing::kContiguous:
        return cache_batch_idx ? cache_batch_idx[s] : s;
      case CacheIndexing::kBlockTable:
        return block_table[int64_t(s) * block_table_stride + lp];
      default:
        return indices[indptr[s] + lp];
    }
  }
  /// Physical slot (page * page_size + offset) of token `pos` of sequence s.
  STRATA_HOST_DEVICE int64_t slot(int s, int pos) const {
    const int lp = indexing == CacheIndexing::kContiguous ? 0 : pos / page_size;
    const int off = indexing == CacheIndexing::kContiguous ? pos : pos % page_size;
    return int64_t(page(s, lp)) * page_size + off;
  }
  /// Slots in the cache: num_pages * page_size.
  STRATA_HOST_DEVICE int64_t slots() const { return int64_t(num_pages) * page_size; }
};

/// Element offset of (slot, KV head) in a cache tensor.
STRATA_HOST_DEVICE int64_t cache_offset(const CacheTensor& t, int page_size, int64_t slot, int h) {
  return (slot / page_size) * t.page_stride + (slot % page_size) * t.row_stride +
         int64_t(h) * t.head_stride;
}

/// NHD pages, [num_pages, page_size, h_k, d] contiguous.
inline CacheTensor nhd_cache(void* data, int page_size, int h_k, int d) {
  return {data, int64_t(page_size) * h_k * d, int64_t(h_k) * d, d};
}
/// HND pages, [num_pages, h_k, page_size, d] contiguous.
inline CacheTensor hnd_cache(void* data, int page_size, int h_k, int d) {
  return {data, int64_t(page_size) * h_k * d, d, int64_t(page_size) * d};
}

/// Appending new tokens' K and V rows to a cache by slot (vLLM's reshape_and_cache).
struct KvAppendParams {
  KvCache cache;                ///< only the storage and geometry are used (no indexing)
  const void* k_new = nullptr;  ///< [total_new, h_k, d], dtype of the cache
  const void* v_new = nullptr;
  int64_t k_new_row_stride = 0, k_new_head_stride = 0;
  int64_t v_new_row_stride = 0, v_new_head_stride = 0;
  int total_new = 0;
  /// [total_new] physical slot of each new token; a negative slot skips the token (padding).
  const int64_t* slot_mapping = nullptr;
  /// Optional host copy of slot_mapping, read by validation only: every slot is checked to be
  /// below cache.slots() and no slot to be written twice. Without it slots are trusted, and the
  /// kernel skips (does not write) a slot at or past cache.slots().
  const int64_t* slot_mapping_host = nullptr;

  /// SVFormer layers l >= 1: false stores K only (v_new unused); the layer's attention reads
  /// layer 0's V cache (its KvCache::v points there), so the layer keeps no V at all.
  bool store_v = true;
  /// ResFormer layers l >= 1: with v_first_new set, the V row stored is
  /// V'_l = lambda_self v_new + lambda_first v_first_new (fp32, one rounding, as the training
  /// kernels mix their V tiles), v_first_new being layer 0's V of the same new tokens. Mixing at
  /// append keeps the cache and each step's cache reads at vanilla size (K + V' per token);
  /// keeping V_l and mixing V_0 in at every tile load would read K + 2 V per token per step.
  const void* v_first_new = nullptr;  ///< [total_new, h_k, d], dtype of the cache, or null
  int64_t v_first_new_row_stride = 0, v_first_new_head_stride = 0;
  const float* lambda_self = nullptr;  ///< fp32: [] (kScalar) or [h_k] (kHeadwise)
  const float* lambda_first = nullptr;
  core::MixGranularity granularity = core::MixGranularity::kScalar;
};

/// Attention of new query tokens over a KV cache that already holds them (append first): one
/// token per sequence (decode), chunks of tokens (chunked prefill, speculative verification), or
/// both in one batch. Query i of a chunk of tq tokens against a cache of tk tokens sits at cache
/// position tk - tq + i (causal: bottom-right aligned, FlashAttention's convention).
struct PagedAttentionParams {
  KvCache cache;            ///< with its indexing; b sequences
  const void* q = nullptr;  ///< [total_q, h, d], the cache's dtype
  int64_t q_row_stride = 0, q_head_stride = 0;
  void* o = nullptr;  ///< [total_q, h, d], written
  int64_t o_row_stride = 0, o_head_stride = 0;
  /// [h, total_q] fp32, written: the natural-log LSE of each row (FlashAttention's varlen
  /// layout); -inf for a row without keys.
  float* lse = nullptr;
  /// [b + 1] offsets of each sequence's new tokens (device). Tokens from cu_seqlens_q[b] to
  /// total_q are padding (a CUDA graph's fixed batch): their o and lse are not written.
  const int* cu_seqlens_q = nullptr;
  const int* cu_seqlens_q_host = nullptr;  ///< optional host copy, read by validation only
  int total_q = 0;
  int max_seqlen_q = 0;  ///< the longest chunk (sizes the grid); 1 for pure decode
  int h = 0;             ///< query heads (h % cache.h_k == 0)
  float softmax_scale = 0.f;
  bool is_causal = true;
  int window_left = -1;  ///< -1: unlimited
  /// Key splits per (sequence, KV head) (flash-decoding): 1 writes o and lse directly; more write
  /// fp32 partials to `workspace` (api::workspace_bytes(params)) that a merge combines.
  int num_splits = 1;
  float* workspace = nullptr;
  size_t workspace_bytes = 0;  ///< its size, checked against api::workspace_bytes(params)
  /// Gated Attention's / ExoFormer's output gate, or null: o = O sigma(g) with logits g of the
  /// new tokens, [total_q, h, d] (kElementwise) or [total_q, h] (kHeadwise), the cache's dtype.
  /// It is applied once, to the final O: after the merge when num_splits > 1 (the partials are
  /// never gated).
  const void* gate = nullptr;
  int64_t gate_row_stride = 0, gate_head_stride = 0;
  core::GateKind gate_kind = core::GateKind::kElementwise;
};

}  // namespace strata::attention
