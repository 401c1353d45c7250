// Byte model of the inference kernels (KV-cache append; decode attention to come).
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

}  // namespace strata::cost
