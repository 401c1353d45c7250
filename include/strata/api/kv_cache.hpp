// KV-cache entry points: validate_cache_storage() checks where a cache lives (every inference
// kernel reads it), validate(KvAppendParams) the append problem, and kv_append() writes new
// tokens' K and V rows at their slots. Bad input returns a Status naming the field; nothing is
// written.
#pragma once

#include <cstdint>
#include <string>
#include <unordered_set>

#include "strata/api/flash.hpp"
#include "strata/attention/kv_append.cuh"
#include "strata/attention/kv_cache.hpp"

namespace strata::api {

using attention::CacheIndexing;
using attention::CacheTensor;
using attention::KvAppendParams;
using attention::KvCache;

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
  if (c.h_k < 1)
    return Status::InvalidArgument("h_k = " + std::to_string(c.h_k) + ": must be >= 1");
  if (c.indexing != CacheIndexing::kContiguous && c.indexing != CacheIndexing::kBlockTable &&
      c.indexing != CacheIndexing::kPageList)
    return Status::InvalidArgument("indexing: not a CacheIndexing value");
  const int max_page =
      c.indexing == CacheIndexing::kContiguous ? INT32_MAX : attention::kMaxPageSize;
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
  if (Status s = detail::check_operand(p.v_new, "v_new", p.v_new_row_stride, p.v_new_head_stride);
      !s.ok())
    return s;
  if (p.k_new_head_stride < p.cache.d || p.k_new_row_stride < p.k_new_head_stride * p.cache.h_k)
    return Status::InvalidArgument("k_new strides overlap rows or heads");
  if (p.v_new_head_stride < p.cache.d || p.v_new_row_stride < p.v_new_head_stride * p.cache.h_k)
    return Status::InvalidArgument("v_new strides overlap rows or heads");
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

namespace detail {
STRATA_EXECUTOR_BEGIN
template <int D>
Status launch_kv_append(const KvAppendParams& p, cudaStream_t stream) {
  return launch(attention::kv_append_kernel<D>, attention::kv_append_grid(p),
                dim3(attention::kKvAppendThreads), 0, stream, p);
}
STRATA_EXECUTOR_END
}  // namespace detail

STRATA_EXECUTOR_BEGIN

/// Writes the new tokens' K and V rows at their slots (validated first). Slots past the cache
/// or negative are skipped; the rest of the cache is untouched.
inline Status kv_append(const KvAppendParams& p, cudaStream_t stream = 0) {
  if (Status s = validate(p); !s.ok()) return s;
  if (p.total_new == 0) return Status::Ok();
  switch (p.cache.d) {
    case 64:
      return detail::launch_kv_append<64>(p, stream);
    case 96:
      return detail::launch_kv_append<96>(p, stream);
    default:
      return detail::launch_kv_append<128>(p, stream);
  }
}

STRATA_EXECUTOR_END
}  // namespace strata::api
