// Appending new tokens' K and V rows to a KV cache by physical slot (vLLM's reshape_and_cache):
// one warp per new token, its lanes walking the token's 16-byte chunks of K then V (head-major,
// so consecutive lanes touch consecutive bytes of a row). Lane 0 reads the slot and broadcasts it:
// each byte of the new rows and of the slot mapping is read once, each cache byte written once.
// A negative slot skips the token (padding); a slot at or past cache.slots() is skipped too, so a
// slot mapping without a host copy to validate can never write outside the cache.
#pragma once

#include <cstdint>

#include "strata/attention/kv_cache.hpp"
#include "strata/strata.cuh"

namespace strata::attention {

/// Threads (4 warps, 4 tokens) per block of the append kernel.
inline constexpr int kKvAppendThreads = 128;

/// Grid of the append kernel: a warp per new token.
inline dim3 kv_append_grid(const KvAppendParams& p) {
  const int warps = kKvAppendThreads / 32;
  return dim3(unsigned((int64_t(p.total_new) + warps - 1) / warps));
}

STRATA_EXECUTOR_BEGIN

/// Copies token t's K and V rows (D elements of 2 bytes per KV head) into its slot.
template <int D>
__global__ void __launch_bounds__(kKvAppendThreads) kv_append_kernel(const KvAppendParams p) {
  static_assert(D % 8 == 0, "rows are moved in 16-byte chunks");
  constexpr int kChunks = D / 8;
  const int lane = int(threadIdx.x) % 32;
  const int t = int(blockIdx.x) * (kKvAppendThreads / 32) + int(threadIdx.x) / 32;
  if (t >= p.total_new) return;  // whole warps leave together
  int64_t slot = lane == 0 ? p.slot_mapping[t] : 0;
  slot = arch::shfl(slot, 0);
  if (slot < 0 || slot >= p.cache.slots()) return;
  const int h_k = p.cache.h_k;
  // the slot's row in K and in V (head 0), once per token
  const int64_t k_row = cache_offset(p.cache.k, p.cache.page_size, slot, 0);
  const int64_t v_row = cache_offset(p.cache.v, p.cache.page_size, slot, 0);
  for (int c = lane; c < 2 * h_k * kChunks; c += 32) {
    const bool is_v = c >= h_k * kChunks;
    const int r = is_v ? c - h_k * kChunks : c;
    const int h = r / kChunks, e = (r % kChunks) * 8;
    const uint16_t* src = static_cast<const uint16_t*>(is_v ? p.v_new : p.k_new) +
                          int64_t(t) * (is_v ? p.v_new_row_stride : p.k_new_row_stride) +
                          int64_t(h) * (is_v ? p.v_new_head_stride : p.k_new_head_stride) + e;
    uint16_t* out = static_cast<uint16_t*>(is_v ? p.cache.v.data : p.cache.k.data) +
                    (is_v ? v_row : k_row) +
                    int64_t(h) * (is_v ? p.cache.v.head_stride : p.cache.k.head_stride) + e;
    *reinterpret_cast<uint4*>(out) = *reinterpret_cast<const uint4*>(src);
  }
}

STRATA_EXECUTOR_END
}  // namespace strata::attention
