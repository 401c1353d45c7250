/// \file
/// Byte and FLOP model of the inference kernels: the KV-cache append, the attention over the
/// cache (vanilla and MEA's component-head cache) and its split-KV merge.
/// Plain host C++ (no CUDA include), header-only, constexpr.
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

/// The extra bytes of ResFormer's V' = lambda_self V_l + lambda_first V_0 mixed at append: layer
/// 0's V row of each stored token read once, and its warp's lambda pair (8 bytes, one per KV head
/// headwise) once per stored token. SVFormer's layers l >= 1 store no V: kv_append_bytes less
/// svformer_append_saved_bytes (the V rows neither read nor written).
constexpr int64_t value_residual_append_extra_bytes(int64_t stored, int h_k, int d, bool headwise,
                                                    Storage s = kBf16) {
  return stored * (int64_t(h_k) * d * s.act + 8 * (headwise ? int64_t(h_k) : 1));
}
constexpr int64_t svformer_append_saved_bytes(int64_t stored, int h_k, int d, Storage s = kBf16) {
  return stored * 2 * int64_t(h_k) * d * s.act;
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

/// Minimum bytes of MEA's attention of tq new tokens of one sequence over a cache of tk tokens
/// holding h_c component heads (strata/variants/mea_decode.cuh): each component row of K and V
/// read once for every composite head (the tile composes them), the queries read and the outputs
/// and LSE written once, and the parameters each of the `splits` blocks needs once: A^K, A^V
/// [h_c, h_kv] and, at the KeyValue site, the GroupNorm gains of K' and V' [h_kv, d] x 4; at the
/// Output site each output row's gains [d] x 2 (the GroupNorm of O). A chunk of more than 64 / h
/// tokens spans several 64-row blocks, each of which reads the cache: this is the decode minimum.
constexpr int64_t mea_paged_attention_bytes(int64_t tq, int64_t tk, int h, int h_kv, int h_c, int d,
                                            bool kv_site, int splits = 1, Storage s = kBf16) {
  const int64_t params =
      2 * int64_t(h_c) * h_kv * s.param + (kv_site ? 4 * int64_t(h_kv) * d * s.param : 0);
  return 2 * tk * h_c * d * s.act + 2 * tq * h * d * s.act + tq * h * 4 +
         (splits > 1 ? splits : 1) * params + (kv_site ? 0 : tq * h * 2 * int64_t(d) * s.param);
}

/// Multiply-adds per cached key and step of MEA's two decode forms (SPEC 4c): composing K', V'
/// in the tile (2 H_kv H_c d) then scoring and weighting them (2 H d), or absorbing A into the
/// queries (an MQA over one wide key and value of H_c d: 2 H H_c d). With G = H / H_kv >= 2 and
/// H_c >= 2 composing costs less; with G = 1 absorbing saves 2 H d, a 1 / (H_c + 1) share, but
/// it is valid only at the Output site and holds H_c d fp32 accumulators per row instead of d.
/// The kernel composes (both sites, one accumulator row).
constexpr int64_t mea_decode_compose_flops(int h, int h_kv, int h_c, int d) {
  return 2 * int64_t(h_kv) * h_c * d + 2 * int64_t(h) * d;
}
constexpr int64_t mea_decode_absorb_flops(int h, int h_c, int d) {
  return 2 * int64_t(h) * h_c * d;
}

}  // namespace strata::cost
