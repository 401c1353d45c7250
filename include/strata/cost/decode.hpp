// Byte model of the inference kernels (KV-cache append, attention over the cache, split merge)
// and the persistent KV-cache size of each method (SPEC §1c, §2c, §3c, §4c, §5c).
// Plain host C++ (no CUDA include), header-only, constexpr.
#pragma once

#include <cstdint>

#include "strata/cost/traffic.hpp"

namespace strata::cost {

/// Minimum bytes of appending `total_new` tokens to a KV cache of h_k heads of dimension d, of
/// which `stored` have a slot in the cache (the others are padding): every token's slot (8-byte
/// int64, vLLM's slot_mapping) is read once, and each stored token's K and V rows are read once
/// from the new rows and written once into the cache.
constexpr int64_t kv_append_bytes(int64_t total_new, int64_t stored, int h_k, int d,
                                  Storage s = kBf16) {
  return total_new * 8 + stored * 2 * (2 * int64_t(h_k) * d * s.act);
}

/// Minimum bytes of attending tq new tokens of one sequence (h query heads over h_k KV heads of
/// dimension d) over a cache of tk tokens that it reads whole (decode, or a causal chunk without a
/// window): each KV head's K and V rows are read once for its G query heads (GQA packing), the
/// queries read once, the outputs and the fp32 LSE written once. Page indices and sequence
/// lengths (a few bytes per 64 keys) are not counted.
constexpr int64_t paged_attention_bytes(int64_t tq, int64_t tk, int h, int h_k, int d,
                                        Storage s = kBf16) {
  return 2 * tk * h_k * d * s.act + 2 * tq * h * d * s.act + tq * h * 4;
}

/// The extra bytes of splitting the keys of tq rows over h heads into `splits` parts
/// (flash-decoding): each split's fp32 partial output and LSE written once and read once by the
/// merge. Worth it when the grid is otherwise too small to fill the GPU; the plan decides.
constexpr int64_t split_merge_bytes(int64_t tq, int h, int d, int splits) {
  return splits > 1 ? 2 * tq * h * int64_t(splits) * (d + 1) * 4 : 0;
}

/// What a method keeps in the KV cache.
enum class CacheMethod {
  kVanilla,    ///< K and V per layer and KV head
  kGated,      ///< the gate depends only on the current token: vanilla
  kResFormer,  ///< V' in place of V: vanilla
  kSVFormer,   ///< K per layer, V for layer 0 only
  kDepth,      ///< k^ and v^ in the K and V slots: vanilla
  kExoFormer,  ///< k~ and v~: vanilla (anchors and scales are transient)
  kMea,        ///< the H_c component heads of K and V per layer (virtual heads)
};

/// Persistent cache bytes per token of a model of `layers` layers, `h_kv` KV heads (composite
/// heads for MEA) of dimension d: 2 L h_kv d elements for vanilla; SVFormer (L + 1) L^-1 / 2 of
/// that; MEA 2 L h_c d. Transient step buffers (Depth's sources, ExoFormer's anchors) excluded.
constexpr int64_t cache_bytes_per_token(CacheMethod m, int layers, int h_kv, int d, int h_c = 0,
                                        Storage s = kBf16) {
  const int64_t row = int64_t(d) * s.act;  // one head's K or V row
  switch (m) {
    case CacheMethod::kSVFormer:
      return (int64_t(layers) + 1) * h_kv * row;
    case CacheMethod::kMea:
      return 2 * int64_t(layers) * h_c * row;
    default:
      return 2 * int64_t(layers) * h_kv * row;
  }
}

}  // namespace strata::cost
