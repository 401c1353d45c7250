/// \file
/// Appending new tokens' K and V rows to a KV cache by physical slot (vLLM's reshape_and_cache):
/// one warp per new token, its lanes walking the token's 16-byte chunks of K then V (head-major,
/// so consecutive lanes touch consecutive bytes of a row). Lane 0 reads the slot and broadcasts it:
/// each byte of the new rows and of the slot mapping is read once, each cache byte written once.
/// A negative slot skips the token (padding); a slot at or past cache.slots() is skipped too, so a
/// slot mapping without a host copy to validate can never write outside the cache. The variants'
/// token-local work on new V rows happens here too: ResFormer's V' = lambda_self V_l +
/// lambda_first V_0 is mixed once at append, SVFormer's layers l >= 1 store no V.
#pragma once

#include <cstdint>
#include <cstring>

#include "strata/attention/kv_cache.hpp"
#include "strata/core/numeric.hpp"
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

/// Copies token t's K and V rows (D elements of T per KV head) into its slot; with
/// p.v_first_new the V row is ResFormer's V' (mixed in fp32), without p.store_v only K is written.
template <class T, int D>
__global__ void __launch_bounds__(kKvAppendThreads) kv_append_kernel(const KvAppendParams p) {
  static_assert(D % 8 == 0 && sizeof(T) == 2, "rows are moved in 16-byte chunks of 8 elements");
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
  const int chunks = (p.store_v ? 2 : 1) * h_k * kChunks;
  // ResFormer's lambdas, read once per token: lane j holds head j's pair (lane 0 the scalar) and
  // the chunks fetch theirs by shuffle; more than 32 heads read them directly
  const bool mix = p.store_v && p.v_first_new;
  const bool headwise = p.granularity == core::MixGranularity::kHeadwise;
  const bool staged = !headwise || h_k <= 32;
  float lam_s = 0.f, lam_f = 0.f;
  if (mix && staged && lane < (headwise ? h_k : 1))
    lam_s = p.lambda_self[lane], lam_f = p.lambda_first[lane];
  // whole warps walk the chunks (every lane reaches every shuffle); lane `lane` takes chunk c
  for (int c0 = 0; c0 < chunks; c0 += 32) {
    const int c = c0 + lane;
    const bool is_v = c >= h_k * kChunks;
    const int r = is_v ? c - h_k * kChunks : c;
    const int h = r / kChunks, e = (r % kChunks) * 8;
    float ls = 0.f, lf = 0.f;
    if (mix && staged) {
      const int src = headwise ? (h < h_k ? h : 0) : 0;
      ls = arch::shfl(lam_s, src), lf = arch::shfl(lam_f, src);
    }
    if (c >= chunks) continue;
    const T* in = static_cast<const T*>(is_v ? p.v_new : p.k_new) +
                  int64_t(t) * (is_v ? p.v_new_row_stride : p.k_new_row_stride) +
                  int64_t(h) * (is_v ? p.v_new_head_stride : p.k_new_head_stride) + e;
    T* out = static_cast<T*>(is_v ? p.cache.v.data : p.cache.k.data) + (is_v ? v_row : k_row) +
             int64_t(h) * (is_v ? p.cache.v.head_stride : p.cache.k.head_stride) + e;
    uint4 x = *reinterpret_cast<const uint4*>(in);
    if (is_v && mix) {  // V' = lambda_self V_l + lambda_first V_0
      const uint4 y = *reinterpret_cast<const uint4*>(static_cast<const T*>(p.v_first_new) +
                                                      int64_t(t) * p.v_first_new_row_stride +
                                                      int64_t(h) * p.v_first_new_head_stride + e);
      if (!staged) ls = p.lambda_self[h], lf = p.lambda_first[h];
      T va[8], vb[8];
      memcpy(static_cast<void*>(va), &x, 16);  // T is a class: copy its bits
      memcpy(static_cast<void*>(vb), &y, 16);
      STRATA_UNROLL
      for (int i = 0; i < 8; ++i)
        va[i] = core::from_float<T>(ls * core::to_float(va[i]) + lf * core::to_float(vb[i]));
      memcpy(&x, static_cast<const void*>(va), 16);
    }
    *reinterpret_cast<uint4*>(out) = x;
  }
}

STRATA_EXECUTOR_END
}  // namespace strata::attention
