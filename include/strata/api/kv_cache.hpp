/// \file
/// KV-cache entry points: validate_cache_storage() checks where a cache lives (every inference
/// kernel reads it), validate(KvAppendParams) the append problem, and kv_append() writes new
/// tokens' K and V rows at their slots. Bad input returns a Status naming the field; nothing is
/// written.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <tuple>
#include <unordered_set>
#include <vector>

#include "strata/api/flash.hpp"
#include "strata/api/workspace.hpp"
#include "strata/attention/kv_append.cuh"
#include "strata/attention/kv_cache.hpp"
#include "strata/attention/merge_states.cuh"
#include "strata/attention/paged_attention.cuh"

namespace strata::api {

using attention::AttentionState;
using attention::CacheIndexing;
using attention::CacheTensor;
using attention::KvAppendParams;
using attention::KvCache;
using attention::MergeStatesParams;
using attention::PagedAttentionParams;

namespace detail {

/// One cache tensor: non-null, 16-byte aligned, strides of whole 16-byte chunks, and rows of
/// different (token, head) pairs that never overlap (NHD-like or HND-like), pages that never
/// overlap either.
inline Status check_cache_tensor(const CacheTensor& t, const char* name, const KvCache& c) {
  const std::string n = name;
  if (!t.data) return Status::InvalidArgument(n + ".data is null");
  if (!aligned16(t.data)) return Status::InvalidArgument(n + ".data is not 16-byte aligned");
  for (auto [s, f] : {std::pair{t.page_stride, ".page_stride"},
                      {t.row_stride, ".row_stride"},
                      {t.head_stride, ".head_stride"}})
    if (s <= 0 || s % 8 != 0)
      return Status::InvalidArgument(n + f + " = " + std::to_string(s) +
                                     ": must be a positive multiple of 8 elements (16 bytes)");
  const int64_t ps = c.page_size, hk = c.h_k, d = c.d;
  const bool nhd = t.head_stride >= d && t.row_stride >= hk * t.head_stride;
  const bool hnd = t.row_stride >= d && t.head_stride >= ps * t.row_stride;
  if (!nhd && !hnd)
    return Status::InvalidArgument(
        n + " strides (row " + std::to_string(t.row_stride) + ", head " +
        std::to_string(t.head_stride) +
        ") overlap the rows of a page: need head_stride >= d and "
        "row_stride >= h_k * head_stride (NHD) or row_stride >= d and head_stride >= page_size * "
        "row_stride (HND)");
  const int64_t extent = (ps - 1) * t.row_stride + (hk - 1) * t.head_stride + d;
  if (t.page_stride < extent)
    return Status::InvalidArgument(n + ".page_stride = " + std::to_string(t.page_stride) +
                                   ": pages overlap (a page spans " + std::to_string(extent) +
                                   " elements)");
  if (t.page_stride > (INT64_MAX / 4) / c.num_pages)
    return Status::InvalidArgument(n + ": num_pages * page_stride overflows int64");
  return Status::Ok();
}

}  // namespace detail

/// Checks where a cache lives and its geometry (not its indexing): dtype and head dim compiled,
/// h_k >= 1, page_size in [1, kMaxPageSize] (any length >= 1 for kContiguous slots), num_pages
/// >= 1, and both tensors (detail::check_cache_tensor); K and V may not be the same storage.
inline Status validate_cache_storage(const KvCache& c) {
  if (Status s = detail::check_dtype_and_head_dim(c.dtype, c.d); !s.ok()) return s;
  if (c.h_k < 1 || c.h_k > 65535)
    return Status::InvalidArgument("h_k = " + std::to_string(c.h_k) + ": must be in [1, 65535]");
  if (c.indexing != CacheIndexing::kContiguous && c.indexing != CacheIndexing::kBlockTable &&
      c.indexing != CacheIndexing::kPageList)
    return Status::InvalidArgument("indexing: not a CacheIndexing value");
  const int max_page =
      c.indexing == CacheIndexing::kContiguous ? kMaxSeqlen : attention::kMaxPageSize;
  if (c.page_size < 1 || c.page_size > max_page)
    return Status::InvalidArgument("page_size = " + std::to_string(c.page_size) +
                                   ": must be in [1, " + std::to_string(max_page) + "]");
  if (c.num_pages < 1)
    return Status::InvalidArgument("num_pages = " + std::to_string(c.num_pages) + ": must be >= 1");
  if (Status s = detail::check_cache_tensor(c.k, "k", c); !s.ok()) return s;
  if (Status s = detail::check_cache_tensor(c.v, "v", c); !s.ok()) return s;
  if (c.k.data == c.v.data)
    return Status::InvalidArgument(
        "v.data: the same storage as k.data (K and V would overwrite "
        "each other)");
  return Status::Ok();
}

/// Checks an append: the cache's storage, the new rows, and the slot mapping (with its host copy,
/// every slot below cache.slots() and none written twice).
inline Status validate(const KvAppendParams& p) {
  if (Status s = validate_cache_storage(p.cache); !s.ok())
    return Status(s.code(), std::string("cache.") + s.message());
  if (p.total_new < 0) return Status::InvalidArgument("total_new is negative");
  if (p.total_new == 0) return Status::Ok();  // nothing is read or written
  if (Status s = detail::check_operand(p.k_new, "k_new", p.k_new_row_stride, p.k_new_head_stride);
      !s.ok())
    return s;
  if (Status s = detail::check_rows(p.k_new, "k_new", p.k_new_row_stride, p.k_new_head_stride,
                                    p.cache.h_k, p.cache.d);
      !s.ok())
    return s;
  if (p.store_v) {
    if (Status s = detail::check_operand(p.v_new, "v_new", p.v_new_row_stride, p.v_new_head_stride);
        !s.ok())
      return s;
    if (Status s = detail::check_rows(p.v_new, "v_new", p.v_new_row_stride, p.v_new_head_stride,
                                      p.cache.h_k, p.cache.d);
        !s.ok())
      return s;
  } else if (p.v_first_new) {
    return Status::InvalidArgument(
        "v_first_new: set while store_v is false (a value residual needs a V row to mix)");
  }
  if (p.store_v && p.v_first_new) {
    if (Status s = detail::check_operand(p.v_first_new, "v_first_new", p.v_first_new_row_stride,
                                         p.v_first_new_head_stride);
        !s.ok())
      return s;
    if (Status s = detail::check_rows(p.v_first_new, "v_first_new", p.v_first_new_row_stride,
                                      p.v_first_new_head_stride, p.cache.h_k, p.cache.d);
        !s.ok())
      return s;
    if (p.granularity != core::MixGranularity::kScalar &&
        p.granularity != core::MixGranularity::kHeadwise)
      return Status::InvalidArgument(
          "granularity: ResFormer's lambda is a scalar or one per KV head (kScalar, kHeadwise)");
    if (!p.lambda_self) return Status::InvalidArgument("lambda_self is null");
    if (!p.lambda_first) return Status::InvalidArgument("lambda_first is null");
  }
  if (!p.slot_mapping) return Status::InvalidArgument("slot_mapping is null");
  if (reinterpret_cast<uintptr_t>(p.slot_mapping) % 8)
    return Status::InvalidArgument("slot_mapping is not 8-byte aligned");
  if (p.slot_mapping_host) {
    const int64_t slots = p.cache.slots();
    std::unordered_set<int64_t> seen;
    for (int t = 0; t < p.total_new; ++t) {
      const int64_t s = p.slot_mapping_host[t];
      if (s < 0) continue;
      const std::string at = "slot_mapping[" + std::to_string(t) + "] = " + std::to_string(s);
      if (s >= slots)
        return Status::InvalidArgument(at + ": beyond the cache's " + std::to_string(slots) +
                                       " slots (num_pages * page_size)");
      if (!seen.insert(s).second)
        return Status::InvalidArgument(at + ": the slot of an earlier new token");
    }
  }
  return Status::Ok();
}

/// Checks a cache's indexing for `b` sequences: the arrays its mode reads are set, and, from the
/// host copies when given, every length is within the capacity, every page index in
/// [0, num_pages), and no page appears twice in one sequence (pages shared between sequences, as
/// in prefix sharing, are fine).
inline Status validate_cache_indexing(const KvCache& c) {
  if (c.b < 1 || c.b > 65535)
    return Status::InvalidArgument("b = " + std::to_string(c.b) + ": must be in [1, 65535]");
  const auto seq = [](const char* what, int s) {
    return std::string(what) + "[" + std::to_string(s) + "]";
  };
  switch (c.indexing) {
    case CacheIndexing::kContiguous:
      if (!c.cache_seqlens) return Status::InvalidArgument("cache_seqlens is null");
      for (int s = 0; c.cache_seqlens_host && s < c.b; ++s) {
        const int n = c.cache_seqlens_host[s];
        if (n < 0 || n > c.page_size)
          return Status::InvalidArgument(
              seq("cache_seqlens", s) + " = " + std::to_string(n) +
              ": beyond the slot's capacity (page_size = " + std::to_string(c.page_size) + ")");
      }
      for (int s = 0; c.cache_batch_idx && c.cache_batch_idx_host && s < c.b; ++s)
        if (c.cache_batch_idx_host[s] < 0 || c.cache_batch_idx_host[s] >= c.num_pages)
          return Status::InvalidArgument(
              seq("cache_batch_idx", s) + " = " + std::to_string(c.cache_batch_idx_host[s]) +
              ": not a slot of the cache (num_pages = " + std::to_string(c.num_pages) + ")");
      if (!c.cache_batch_idx && c.b > c.num_pages)
        return Status::InvalidArgument("b = " + std::to_string(c.b) +
                                       ": more sequences than slots and no cache_batch_idx");
      return Status::Ok();
    case CacheIndexing::kBlockTable: {
      if (!c.cache_seqlens) return Status::InvalidArgument("cache_seqlens is null");
      if (!c.block_table) return Status::InvalidArgument("block_table is null");
      if (c.max_pages < 1)
        return Status::InvalidArgument("max_pages = " + std::to_string(c.max_pages) +
                                       ": must be >= 1");
      if (c.block_table_stride < c.max_pages)
        return Status::InvalidArgument(
            "block_table_stride = " + std::to_string(c.block_table_stride) +
            ": rows of max_pages entries overlap");
      if (!c.cache_seqlens_host) return Status::Ok();
      for (int s = 0; s < c.b; ++s) {
        const int n = c.cache_seqlens_host[s];
        if (n < 0 || int64_t(n) > int64_t(c.max_pages) * c.page_size || n > kMaxSeqlen)
          return Status::InvalidArgument(seq("cache_seqlens", s) + " = " + std::to_string(n) +
                                         ": beyond max_pages * page_size (or kMaxSeqlen)");
        if (!c.block_table_host) continue;
        std::unordered_set<int> used;
        for (int j = 0; j < (n + c.page_size - 1) / c.page_size; ++j) {
          const int pg = c.block_table_host[int64_t(s) * c.block_table_stride + j];
          const std::string at = "block_table[" + std::to_string(s) + "][" + std::to_string(j) +
                                 "] = " + std::to_string(pg);
          if (pg < 0 || pg >= c.num_pages)
            return Status::InvalidArgument(
                at + ": not a page of the cache (num_pages = " + std::to_string(c.num_pages) + ")");
          if (!used.insert(pg).second)
            return Status::InvalidArgument(at + ": a page this sequence already uses");
        }
      }
      return Status::Ok();
    }
    case CacheIndexing::kPageList: {
      if (!c.indptr) return Status::InvalidArgument("indptr is null");
      if (!c.indices) return Status::InvalidArgument("indices is null");
      if (!c.last_page_len) return Status::InvalidArgument("last_page_len is null");
      if (!c.indptr_host) return Status::Ok();
      if (c.indptr_host[0] != 0) return Status::InvalidArgument("indptr[0] is not 0");
      for (int s = 0; s < c.b; ++s) {
        const int64_t pages = int64_t(c.indptr_host[s + 1]) - c.indptr_host[s];
        if (pages < 0) return Status::InvalidArgument(seq("indptr", s + 1) + " decreases");
        if (pages * c.page_size > kMaxSeqlen)  // the sequence's length, as the kernels count it
          return Status::InvalidArgument(seq("indptr", s + 1) + ": " + std::to_string(pages) +
                                         " pages of " + std::to_string(c.page_size) +
                                         " tokens, more than kMaxSeqlen");
        if (pages > 0 && c.last_page_len_host &&
            (c.last_page_len_host[s] < 1 || c.last_page_len_host[s] > c.page_size))
          return Status::InvalidArgument(seq("last_page_len", s) + " = " +
                                         std::to_string(c.last_page_len_host[s]) +
                                         ": must be in [1, page_size]");
        if (!c.indices_host) continue;
        std::unordered_set<int> used;
        for (int j = c.indptr_host[s]; j < c.indptr_host[s + 1]; ++j) {
          const int pg = c.indices_host[j];
          const std::string at = seq("indices", j) + " = " + std::to_string(pg);
          if (pg < 0 || pg >= c.num_pages)
            return Status::InvalidArgument(
                at + ": not a page of the cache (num_pages = " + std::to_string(c.num_pages) + ")");
          if (!used.insert(pg).second)
            return Status::InvalidArgument(at + ": a page sequence " + std::to_string(s) +
                                           " already uses");
        }
      }
      return Status::Ok();
    }
  }
  return Status::InvalidArgument("indexing: not a CacheIndexing value");
}

/// Key splits for a launch (flash-decoding), FlashAttention-2's rule: with `blocks` = sequences x
/// KV heads x query tiles already at 80% of a wave of `num_sms` (132 on an H100 SXM, 108 on an
/// A100) no split; otherwise, among split counts up to min(max_splits, num_sms, key tiles) that
/// change the tiles per split, the smallest whose wave efficiency (waves / ceil(waves)) is at
/// least 85% of the best. `key_tiles` = ceil(longest cache / 64). Host only; the result goes into
/// PagedAttentionParams::num_splits (with workspace_bytes(params) for the workspace).
inline int paged_attention_num_splits(int64_t blocks, int key_tiles, int num_sms,
                                      int max_splits = 128) {
  if (blocks <= 0 || key_tiles <= 1 || num_sms <= 0 || double(blocks) >= 0.8 * num_sms) return 1;
  int cap = max_splits < num_sms ? max_splits : num_sms;
  cap = cap < key_tiles ? cap : key_tiles;
  cap = cap < attention::kMaxSplits ? cap : attention::kMaxSplits;
  const auto ceil_div = [](int64_t a, int64_t b) { return (a + b - 1) / b; };
  const auto eligible = [&](int s) {
    return s == 1 || ceil_div(key_tiles, s) != ceil_div(key_tiles, s - 1);
  };
  const auto efficiency = [&](int s) {
    const double waves = double(blocks * s) / num_sms;
    return waves / std::ceil(waves);
  };
  double best = 0;
  for (int s = 1; s <= cap; ++s)
    if (eligible(s)) best = std::max(best, efficiency(s));
  for (int s = 1; s <= cap; ++s)
    if (eligible(s) && efficiency(s) >= 0.85 * best) return s;
  return 1;
}

/// The same from a problem: blocks from its grid, key tiles from the longest cache.
inline int paged_attention_num_splits(const PagedAttentionParams& p, int max_seqlen_k, int num_sms,
                                      int max_splits = 128) {
  if (p.cache.h_k < 1 || p.h < p.cache.h_k) return 1;
  const int64_t rows = int64_t(p.max_seqlen_q) * (p.h / p.cache.h_k);
  const int64_t bm = attention::PagedAttentionTraits<64>::kBlockM;  // the same for every D
  const int64_t blocks = int64_t(p.cache.b) * p.cache.h_k * ((rows + bm - 1) / bm);
  const int64_t bn = attention::PagedAttentionTraits<64>::kBlockN;
  const int tiles = int((int64_t(max_seqlen_k) + bn - 1) / bn);
  return paged_attention_num_splits(blocks, tiles, num_sms, max_splits);
}

/// Bytes of the workspace of a split-KV launch (num_splits > 1): fp32 partial outputs and LSE;
/// 0 with one split.
inline size_t workspace_bytes(const PagedAttentionParams& p) {
  return attention::paged_attention_workspace_floats(p) * sizeof(float);
}

/// The batch shape a plan is made for: for a CUDA graph, the bucket it captures (the largest
/// batch a replay serves; shorter chunks, shorter caches and padded tokens fit it).
struct PagedAttentionShape {
  int b = 0;             ///< sequences
  int total_q = 0;       ///< new tokens, padding included
  int max_seqlen_q = 0;  ///< the longest chunk (1: pure decode)
  int max_seqlen_k = 0;  ///< the longest cache (sizes the split count)
  int h = 0, h_k = 0, d = 0;
  /// MEA (plan_mea_paged_attention): the composite heads, h_k being the cached component heads
  /// H_c; 0 for every other attention
  int h_kv = 0;
};

/// The host-side plan of attention over a cache (FlashInfer's plan / run split): the split count
/// and the workspace for a batch shape, made once per step — or once per CUDA graph — and reused
/// by every layer's run (the layers of a step share the shape). A run under a plan launches
/// the plan's grid whatever the step's real lengths, needs no host copy, allocates nothing and
/// never synchronises: it can be captured in a CUDA graph and replayed with new lengths, block
/// tables and slots in the same device buffers.
struct PagedAttentionPlan {
  PagedAttentionShape shape;
  int num_splits = 1;
  size_t workspace_bytes = 0;  ///< allocate once; pass as PagedAttentionParams::workspace
};

namespace detail {
/// The shape checks and the split rule of a plan; `blocks` and `key_tiles` of the kernel's grid
/// (vanilla: sequences x KV heads x 64-row tiles, 64-key tiles).
inline Status plan_paged_shape(const PagedAttentionShape& shape, int num_sms,
                               PagedAttentionPlan* plan, int max_splits, int64_t blocks = -1,
                               int key_tiles = -1) {
  if (shape.b < 1 || shape.b > 65535)
    return Status::InvalidArgument("shape.b = " + std::to_string(shape.b) +
                                   ": must be in [1, 65535]");
  const bool mea = shape.h_kv > 0;  // queries group over the composite heads
  const int groups = mea ? shape.h_kv : shape.h_k;
  if (shape.h_k < 1 || groups < 1 || shape.h < groups || shape.h % groups != 0)
    return Status::InvalidArgument("shape.h = " + std::to_string(shape.h) +
                                   ": must be a multiple of shape." + (mea ? "h_kv" : "h_k") +
                                   " = " + std::to_string(groups) + " (and shape.h_k >= 1)");
  if (shape.total_q < 0 || shape.max_seqlen_q < 0 || shape.max_seqlen_k < 0 ||
      (shape.total_q > 0 && shape.max_seqlen_q < 1))
    return Status::InvalidArgument(
        "shape: total_q, max_seqlen_q, max_seqlen_k must be >= 0, max_seqlen_q >= 1 with tokens");
  if (shape.d != 64 && shape.d != 96 && shape.d != 128)
    return Status::InvalidArgument("shape.d = " + std::to_string(shape.d) +
                                   ": must be 64, 96 or 128");
  if (num_sms < 1)
    return Status::InvalidArgument("num_sms = " + std::to_string(num_sms) + ": must be >= 1");
  if (max_splits < 1 || max_splits > attention::kMaxSplits)
    return Status::InvalidArgument("max_splits = " + std::to_string(max_splits) +
                                   ": must be in [1, " + std::to_string(attention::kMaxSplits) +
                                   "]");
  PagedAttentionParams p;  // the shape as params: the grid and the workspace of a run
  p.cache.b = shape.b, p.cache.h_k = shape.h_k, p.cache.d = shape.d;
  p.h = shape.h, p.total_q = shape.total_q, p.max_seqlen_q = shape.max_seqlen_q;
  p.num_splits = blocks < 0 ? paged_attention_num_splits(p, shape.max_seqlen_k, num_sms, max_splits)
                            : paged_attention_num_splits(blocks, key_tiles, num_sms, max_splits);
  plan->shape = shape;
  plan->num_splits = p.num_splits;
  plan->workspace_bytes = workspace_bytes(p);
  return Status::Ok();
}
}  // namespace detail

/// Plans `shape` for a GPU of `num_sms` SMs (132 on an H100 SXM, 108 on an A100):
/// paged_attention_num_splits (FlashAttention-2's rule) up to `max_splits`, and its workspace.
inline Status plan_paged_attention(const PagedAttentionShape& shape, int num_sms,
                                   PagedAttentionPlan* plan, int max_splits = 128) {
  if (!plan) return Status::InvalidArgument("plan is null");
  if (shape.h_kv != 0)
    return Status::InvalidArgument("shape.h_kv = " + std::to_string(shape.h_kv) +
                                   ": an MEA shape (plan it with plan_mea_paged_attention)");
  return detail::plan_paged_shape(shape, num_sms, plan, max_splits);
}

namespace detail {
/// The checks of check_plan shared with MEA's.
inline Status check_plan_shape(const PagedAttentionParams& p, const PagedAttentionPlan& plan) {
  const PagedAttentionShape& s = plan.shape;
  if (p.cache.b != s.b || p.h != s.h || p.cache.h_k != s.h_k || p.cache.d != s.d)
    return Status::InvalidArgument("cache.b / h / cache.h_k / cache.d: not the plan's shape");
  if (p.total_q != s.total_q || p.max_seqlen_q != s.max_seqlen_q)
    return Status::InvalidArgument(
        "total_q / max_seqlen_q: not the plan's (" + std::to_string(s.total_q) + ", " +
        std::to_string(s.max_seqlen_q) + "): a run launches the plan's grid (pad the batch)");
  if (p.num_splits != plan.num_splits)
    return Status::InvalidArgument("num_splits = " + std::to_string(p.num_splits) +
                                   ": not the plan's " + std::to_string(plan.num_splits));
  if (p.num_splits > 1 && p.workspace_bytes < plan.workspace_bytes)
    return Status::InvalidArgument("workspace_bytes = " + std::to_string(p.workspace_bytes) +
                                   ": less than the plan's " +
                                   std::to_string(plan.workspace_bytes));
  return Status::Ok();
}
}  // namespace detail

/// Checks that a run fits its plan: the plan's b, heads, d, total_q (padding included),
/// max_seqlen_q and split count, and a workspace at least the plan's.
inline Status check_plan(const PagedAttentionParams& p, const PagedAttentionPlan& plan) {
  if (plan.shape.h_kv != 0)
    return Status::InvalidArgument("plan: an MEA plan (plan_mea_paged_attention)");
  return detail::check_plan_shape(p, plan);
}

namespace detail {
/// The checks of an attention over the cache whose queries group over `kv_heads` heads named
/// `kv_name` (cache.h_k; MEA's composite heads h_kv) and pack `rows_per_token` rows per new
/// token into the kernel's tiles.
inline Status validate_paged(const PagedAttentionParams& p, int kv_heads, const char* kv_name,
                             int64_t rows_per_token) {
  const KvCache& c = p.cache;
  if (Status s = validate_cache_storage(c); !s.ok())
    return Status(s.code(), std::string("cache.") + s.message());
  if (Status s = validate_cache_indexing(c); !s.ok())
    return Status(s.code(), std::string("cache.") + s.message());
  if (p.h < 1 || p.h > 65535 || kv_heads < 1 || p.h % kv_heads != 0)
    return Status::InvalidArgument("h = " + std::to_string(p.h) +
                                   ": must be in [1, 65535] and a multiple of " + kv_name + " = " +
                                   std::to_string(kv_heads));
  if (p.total_q < 0) return Status::InvalidArgument("total_q is negative");
  if (p.max_seqlen_q < 0 || (p.total_q > 0 && p.max_seqlen_q == 0))
    return Status::InvalidArgument("max_seqlen_q = " + std::to_string(p.max_seqlen_q) +
                                   ": must be >= 1 (the longest chunk) when total_q > 0");
  if (!std::isfinite(p.softmax_scale) || p.softmax_scale == 0.f)
    return Status::InvalidArgument("softmax_scale must be finite and non-zero");
  if (p.window_left < -1)
    return Status::InvalidArgument("window_left = " + std::to_string(p.window_left) +
                                   ": must be -1 (unlimited) or >= 0");
  if (p.num_splits < 1 || p.num_splits > attention::kMaxSplits)
    return Status::InvalidArgument("num_splits = " + std::to_string(p.num_splits) +
                                   ": must be in [1, " + std::to_string(attention::kMaxSplits) +
                                   "]");
  if (!p.cu_seqlens_q) return Status::InvalidArgument("cu_seqlens_q is null");
  if (p.cu_seqlens_q_host) {
    // tokens past cu_seqlens_q[b] are padding (a CUDA graph's fixed batch): never read or written
    if (Status s = detail::check_cu_seqlens(p.cu_seqlens_q_host, c.b, -1, p.max_seqlen_q,
                                            "cu_seqlens_q", "max_seqlen_q");
        !s.ok())
      return s;
    if (p.cu_seqlens_q_host[c.b] > p.total_q)
      return Status::InvalidArgument(
          "cu_seqlens_q[b] = " + std::to_string(p.cu_seqlens_q_host[c.b]) +
          ": more tokens than total_q = " + std::to_string(p.total_q));
    // a chunk longer than its cache: the cache must already hold the new tokens (append first)
    KvCache host = c;  // the descriptor over the host copies: host.seqlen(s) is the cache length
    host.cache_seqlens = c.cache_seqlens_host;
    host.indptr = c.indptr_host, host.last_page_len = c.last_page_len_host;
    const bool lens_known = c.indexing == CacheIndexing::kPageList
                                ? host.indptr && host.last_page_len
                                : host.cache_seqlens != nullptr;
    // without a causal mask or a window the queries need no place in the cache (cascade: a
    // batch's queries as one chunk over a shared prefix)
    const bool placed = p.is_causal || p.window_left >= 0;
    for (int s = 0; placed && lens_known && s < c.b; ++s) {
      const int tk = host.seqlen(s);
      const int tq = p.cu_seqlens_q_host[s + 1] - p.cu_seqlens_q_host[s];
      if (tq > tk)
        return Status::InvalidArgument("cu_seqlens_q: sequence " + std::to_string(s) + " has " +
                                       std::to_string(tq) + " new tokens but its cache holds " +
                                       std::to_string(tk) + " (append them first)");
    }
  }
  if (int64_t(p.max_seqlen_q) * rows_per_token > INT32_MAX / 2)
    return Status::InvalidArgument("max_seqlen_q = " + std::to_string(p.max_seqlen_q) +
                                   ": its packed rows overflow int32");
  // int32 mask and grid arithmetic: a query's window start, and the tiles times the splits
  if (p.window_left >= 0 && int64_t(p.window_left) + p.max_seqlen_q > kMaxSeqlen)
    return Status::InvalidArgument(
        "window_left = " + std::to_string(p.window_left) +
        ": window_left + max_seqlen_q overflows int32 (a window as long as the cache is no "
        "window: give -1)");
  if ((int64_t(p.max_seqlen_q) * rows_per_token + 63) / 64 * p.num_splits > INT32_MAX)
    return Status::InvalidArgument("num_splits = " + std::to_string(p.num_splits) +
                                   ": the query tiles times the splits overflow the grid");
  if (p.total_q == 0) return Status::Ok();
  if (Status s = detail::check_operand(p.q, "q", p.q_row_stride, p.q_head_stride); !s.ok())
    return s;
  if (Status s = detail::check_operand(p.o, "o", p.o_row_stride, p.o_head_stride); !s.ok())
    return s;
  if (!p.lse) return Status::InvalidArgument("lse is null");
  if (p.gate) {
    if (p.gate_kind != core::GateKind::kElementwise && p.gate_kind != core::GateKind::kHeadwise)
      return Status::InvalidArgument("gate_kind: not a GateKind value");
    if (Status s = detail::check_rows(p.gate, "gate", p.gate_row_stride, p.gate_head_stride, p.h,
                                      p.gate_kind == core::GateKind::kElementwise ? c.d : 1);
        !s.ok())
      return s;
  }
  return check_workspace(p.workspace, p.workspace_bytes, api::workspace_bytes(p));
}
}  // namespace detail

/// Checks every field of an attention over the cache; Ok means the launcher will run it.
inline Status validate(const PagedAttentionParams& p) {
  const int hk = p.cache.h_k > 0 ? p.cache.h_k : 1;  // h_k itself: validate_cache_storage
  return detail::validate_paged(p, p.cache.h_k, "cache.h_k", p.h / hk);
}

/// Checks a merge of attention states; Ok means merge_attention_states will run it.
inline Status validate(const MergeStatesParams& p) {
  if (Status s = detail::check_dtype_and_head_dim(p.dtype, p.d); !s.ok()) return s;
  if (p.total < 0 || p.total > INT32_MAX / 2)
    return Status::InvalidArgument("total = " + std::to_string(p.total) + ": out of range");
  if (p.h < 1 || p.h > 65535)
    return Status::InvalidArgument("h = " + std::to_string(p.h) + ": must be in [1, 65535]");
  if (p.num_states < 1 || p.num_states > attention::kMaxMergeStates)
    return Status::InvalidArgument(
        "num_states = " + std::to_string(p.num_states) +
        ": must be in [1, kMaxMergeStates = " + std::to_string(attention::kMaxMergeStates) + "]");
  if (p.total == 0) return Status::Ok();
  for (int i = 0; i < p.num_states; ++i) {
    const AttentionState& st = p.states[i];
    const std::string n = "states[" + std::to_string(i) + "]";
    if (Status s = detail::check_rows(st.o, n + ".o", st.o_row_stride, st.o_head_stride, p.h, p.d);
        !s.ok())
      return s;
    if (!st.lse) return Status::InvalidArgument(n + ".lse is null");
  }
  return detail::check_rows(p.o, "o", p.o_row_stride, p.o_head_stride, p.h, p.d);
}

namespace detail {
STRATA_EXECUTOR_BEGIN
template <class T, int D>
Status launch_kv_append(const KvAppendParams& p, cudaStream_t stream) {
  return launch(attention::kv_append_kernel<T, D>, attention::kv_append_grid(p),
                dim3(attention::kKvAppendThreads), 0, stream, p);
}
template <class T, int D>
Status launch_paged(const PagedAttentionParams& p, cudaStream_t stream) {
  using Tr = attention::PagedAttentionTraits<D>;
  if (Status s =
          launch(attention::paged_attention_kernel<T, D>, attention::paged_attention_grid<D>(p),
                 dim3(Tr::kThreads), Tr::template kSmemBytes<T>, stream, p);
      !s.ok() || p.num_splits == 1)
    return s;
  return launch(attention::paged_attention_merge_kernel<T, D>,
                dim3(unsigned(p.total_q), unsigned(p.h)), dim3(D), 0, stream, p);
}
STRATA_EXECUTOR_END
}  // namespace detail

STRATA_EXECUTOR_BEGIN

/// Writes the new tokens' K and V rows at their slots (validated first): V' mixed with layer 0's
/// V for ResFormer (v_first_new), K only for SVFormer's layers l >= 1 (store_v = false). Slots
/// past the cache or negative are skipped; the rest of the cache is untouched.
inline Status kv_append(const KvAppendParams& p, cudaStream_t stream = 0) {
  if (Status s = validate(p); !s.ok()) return s;
  if (p.total_new == 0) return Status::Ok();
  return detail::with_dtype_and_head_dim(p.cache.dtype, p.cache.d, [&]<class T, int D>() {
    return detail::launch_kv_append<T, D>(p, stream);
  });
}

/// Attention of the new tokens over the cache (validated first): o and lse, through fp32
/// partials and a merge when num_splits > 1. The cache must already hold the new tokens.
inline Status paged_attention(const PagedAttentionParams& p, cudaStream_t stream = 0) {
  if (Status s = validate(p); !s.ok()) return s;
  if (p.total_q == 0) return Status::Ok();
  return detail::with_dtype_and_head_dim(p.cache.dtype, p.cache.d, [&]<class T, int D>() {
    return detail::launch_paged<T, D>(p, stream);
  });
}

/// Merges attention states of the same queries over disjoint keys by their LSE (validated
/// first): o, and lse when non-null; either may be a state's own (in place). Cascade attention:
/// paged_attention of a batch's queries as one non-causal chunk over a shared prefix's pages
/// (read once for all of them), then of each sequence over its own pages, then this merge.
inline Status merge_attention_states(const MergeStatesParams& p, cudaStream_t stream = 0) {
  if (Status s = validate(p); !s.ok()) return s;
  if (p.total == 0) return Status::Ok();
  const dim3 grid(unsigned(p.total), unsigned(p.h));
  return detail::with_dtype_and_head_dim(p.dtype, p.d, [&]<class T, int D>() {
    return launch(attention::merge_states_kernel<T, D>, grid, dim3(D), 0, stream, p);
  });
}

/// Attention over the cache under a plan (check_plan, then paged_attention): the same grid for
/// every layer and every replay of a captured graph.
inline Status paged_attention(const PagedAttentionParams& p, const PagedAttentionPlan& plan,
                              cudaStream_t stream = 0) {
  if (Status s = check_plan(p, plan); !s.ok()) return s;
  return paged_attention(p, stream);
}

STRATA_EXECUTOR_END
}  // namespace strata::api
