// The KV-cache descriptor every inference kernel reads (issue: decode, chunked prefill, paged
// cache): one struct for the three ways engines address their caches.
//
//  kContiguous  FlashAttention's flash_attn_with_kvcache: a [b_cache, capacity, h_k, d] cache per
//               sequence slot, cache_seqlens[b] tokens in use, cache_batch_idx[b] choosing the slot
//               (null: slot b). Here a slot is one page of page_size = capacity tokens.
//  kBlockTable  vLLM / FlashAttention paged: block_table[b, max_pages] lists sequence b's pages in
//               order, cache_seqlens[b] tokens in use.
//  kPageList    FlashInfer's CSR: sequence b owns pages indices[indptr[b] .. indptr[b+1]) in order,
//               the last one holding last_page_len[b] tokens.
//
// Token `pos` of sequence b lives in logical page pos / page_size at offset pos % page_size; its
// element e of KV head h is at base + page * page_stride + offset * row_stride + h * head_stride
// + e (elements). NHD pages ([page_size, h_k, d]) and HND pages ([h_k, page_size, d]) are the
// same descriptor with other strides, and K and V have separate bases and strides: SVFormer's
// layers point V at layer 0's cache, MEA's cache holds component heads. A physical slot (vLLM's
// slot_mapping) is page * page_size + offset.
#pragma once

#include <cstdint>

#include "strata/attention/params.hpp"
#include "strata/config.hpp"

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
};

}  // namespace strata::attention
