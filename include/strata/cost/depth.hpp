/// \file
/// Depth-Attention (Zeng, Hao, et al., arXiv 2606.05014; SPEC section 1): FLOPs, bytes, cache and
/// parameters of the per-position softmax over depth candidates.
///
/// Layer l mixes its raw value with the stored, already mixed values of its source layers
/// S_l = {j < l : j mod s = 0} ∪ {l − r, …, l − 1} (SPEC 1a.4): per token and KV head the
/// group-mean query q̄ scores N_l + 1 candidate keys (sources ascending, then self), and v̂_l is the
/// softmax- weighted sum of the N_l + 1 candidate values. Layer 0 has no source and runs plain
/// attention.
#pragma once

#include <cstdint>

#include "strata/cost/model.hpp"
#include "strata/cost/traffic.hpp"

namespace strata::cost {

/// N_l = |S_l|, the number of source layers of layer `layer` (SPEC 1a.4, CONTRACT.md "depth"):
/// the earlier layers j with j mod stride == 0 (stride > 0), united with the `recent_window`
/// layers just below l. Layer 0 has none.
constexpr int64_t depth_num_sources(int64_t layer, int64_t stride, int64_t recent_window = 0) {
  int64_t n = 0;
  for (int64_t j = 0; j < layer; ++j)
    if ((stride > 0 && j % stride == 0) || j >= layer - recent_window) ++n;
  return n;
}

/// Extra forward FLOPs per token of one layer with `num_sources` sources over the same layer
/// without depth mixing (SPEC 1d): scores 2·(N+1)·H_kv·d, weighted sum 2·(N+1)·H_kv·d, group-mean
/// of the query ≈ H·d; with `include_softmax`, the depth softmax ≈ 5·(N+1)·H_kv too (SPEC 1d lists
/// it but leaves it out of its total 4(N+1)·H_kv·d + H·d). 0 for a layer without sources.
constexpr int64_t depth_extra_forward_flops_layer(const ModelShape& m, int64_t num_sources,
                                                  bool include_softmax = false) {
  if (num_sources <= 0) return 0;
  const int64_t cand = num_sources + 1;
  return 4 * cand * m.num_kv_heads * m.head_dim + m.num_heads * m.head_dim +
         (include_softmax ? 5 * cand * m.num_kv_heads : 0);
}

/// Extra backward FLOPs per token of one layer: about twice the forward (SPEC 1d, 1e: δ_c, dz,
/// dq̄, dκ_c, dν_c are two contractions per forward one).
constexpr int64_t depth_extra_backward_flops_layer(const ModelShape& m, int64_t num_sources,
                                                   bool include_softmax = false) {
  return 2 * depth_extra_forward_flops_layer(m, num_sources, include_softmax);
}

/// Extra forward FLOPs per token of the whole model: the sum over layers of
/// depth_extra_forward_flops_layer with N_l from depth_num_sources (SPEC 1d).
constexpr int64_t depth_extra_forward_flops_per_token(const ModelShape& m, int64_t stride,
                                                      int64_t recent_window = 0,
                                                      bool include_softmax = false) {
  int64_t f = 0;
  for (int64_t l = 0; l < m.num_layers; ++l)
    f += depth_extra_forward_flops_layer(m, depth_num_sources(l, stride, recent_window),
                                         include_softmax);
  return f;
}

/// Extra backward FLOPs per token of the whole model (≈ 2 × forward).
constexpr int64_t depth_extra_backward_flops_per_token(const ModelShape& m, int64_t stride,
                                                       int64_t recent_window = 0,
                                                       bool include_softmax = false) {
  return 2 * depth_extra_forward_flops_per_token(m, stride, recent_window, include_softmax);
}

/// Parameters added: none (SPEC 1b, section 6).
constexpr int64_t depth_extra_params(const ModelShape&) {
  return 0;
}

/// KV-cache bytes per token: the vanilla 2·L·H_kv·d·elem. The cache slot of v holds v̂ instead of
/// v, and a decoding step reads the sources' (k̂_j, v̂_j) at the same position from their own cache
/// slots (SPEC 1c, section 6: no extra state).
constexpr int64_t depth_kv_cache_bytes_per_token(const ModelShape& m, int64_t elem_bytes) {
  return kv_cache_bytes_per_token(m, elem_bytes);
}

/// Minimum traffic per token of the fused forward mix of one layer with `num_sources` = N sources
/// (SPEC 1a.5–7, 1d "Memory traffic dominates"). Two equivalent placements, same bytes:
///  * standalone after QK-norm/RoPE: read q (H·d, post-norm/RoPE, for q̄), the N+1 candidate keys
///    (k̂_j of the sources and k̂_l, H_kv·d each) and the N+1 candidate values (v̂_j, raw v_l); write
///    v̂_l (H_kv·d) into v's cache slot;
///  * fused into the QK-norm/RoPE prologue: read raw q, raw k_l, raw v_l and the N sources' k̂_j,
///    v̂_j; write the normed/rotated q and k̂_l and v̂_l. Reads are identical; the writes of q and k̂_l
///    are the prologue's own, so only the first placement is returned here.
/// With `save_alpha` the pass also writes α (H_kv·(N+1) fp32) for the backward; by default α is
/// recomputed there (SPEC 1e: "cheap"). Fixed: none (no parameters). Zero for N = 0 (layer 0).
constexpr Traffic depth_mix_forward_traffic(const ModelShape& m, int64_t num_sources,
                                            const Storage& s, bool save_alpha = false) {
  if (num_sources <= 0) return {};
  const int64_t kv = m.num_kv_heads * m.head_dim;
  const int64_t cand = num_sources + 1;
  Traffic t;
  t.read = s.act * (m.num_heads * m.head_dim + 2 * cand * kv);
  t.write = s.act * kv + (save_alpha ? 4 * m.num_kv_heads * cand : 0);
  return t;
}

/// Minimum traffic per token of the fused backward mix of one layer (SPEC 1e), α recomputed:
///  * read g = dv̂_l (fp32 accumulator, H_kv·d: attention dV summed over the group plus the dν of
///    later layers), q (H·d, for q̄), the N+1 keys κ_c and the N+1 values ν_c (activations);
///  * accumulate (read and write, fp32) dQ (H·d, += dq̄/G per head), dk̂_l (H_kv·d), and the N
///    source accumulators dk̂_j and dv̂_j (H_kv·d each);
///  * write d(raw v_l) (H_kv·d activation, to the W_v gradient GEMM).
/// Fixed: none. Zero for N = 0.
constexpr Traffic depth_mix_backward_traffic(const ModelShape& m, int64_t num_sources,
                                             const Storage& s) {
  if (num_sources <= 0) return {};
  const int64_t hd = m.num_heads * m.head_dim;
  const int64_t kv = m.num_kv_heads * m.head_dim;
  const int64_t cand = num_sources + 1;
  const int64_t rmw = hd + kv + 2 * num_sources * kv;  // fp32 accumulators read and written
  Traffic t;
  t.read = s.acc * kv + s.act * (hd + 2 * cand * kv) + s.acc * rmw;
  t.write = s.acc * rmw + s.act * kv;
  return t;
}

/// Forward mix traffic of the whole model per token: the sum over layers of
/// depth_mix_forward_traffic (layer 0 contributes nothing).
constexpr Traffic depth_forward_traffic_per_token(const ModelShape& m, int64_t stride,
                                                  int64_t recent_window, const Storage& s) {
  Traffic t;
  for (int64_t l = 0; l < m.num_layers; ++l)
    t += depth_mix_forward_traffic(m, depth_num_sources(l, stride, recent_window), s);
  return t;
}

/// Minimum traffic per token of Depth-Attention's fused token-local forward pass as Strata runs it
/// (strata/variants/depth_attention.cuh: QK-norm, RoPE and the depth mix in one pass): read raw
/// q (H·d), k and v (H_kv·d each) and the N sources' k̂_j, v̂_j; write q_rot (H·d), k̂_l and v̂_l.
/// Fixed: the gains γ_q, γ_k (d each) with `qk_norm`. Layer 0 (N = 0) runs it too (norm, RoPE).
constexpr Traffic depth_fused_forward_traffic(const ModelShape& m, int64_t num_sources,
                                              bool qk_norm, const Storage& s) {
  const int64_t hd = m.num_heads * m.head_dim, kv = m.num_kv_heads * m.head_dim;
  Traffic t;
  t.read = s.act * (hd + 2 * kv + 2 * num_sources * kv);
  t.write = s.act * (hd + 2 * kv);
  t.read_fixed = qk_norm ? s.param * 2 * m.head_dim : 0;
  return t;
}

/// Minimum traffic per token of the fused backward pass: read the attention's dq_rot (H·d), dk̂
/// and dv̂ (H_kv·d each), q_rot (H·d, for q̄), k̂_l and raw v_l, the N sources' k̂_j and v̂_j, and
/// with `qk_norm` the raw q and k (the norms' inputs); with `is_source` (a later layer reads this
/// one) this layer's fp32 accumulators dk̂, dv̂; read and write the N sources' fp32 accumulators;
/// write dq (H·d), dk and dv. Fixed: the gains read and their gradients written with `qk_norm`.
constexpr Traffic depth_fused_backward_traffic(const ModelShape& m, int64_t num_sources,
                                               bool qk_norm, bool is_source, const Storage& s) {
  const int64_t hd = m.num_heads * m.head_dim, kv = m.num_kv_heads * m.head_dim;
  Traffic t;
  t.read = s.act * (2 * hd + 4 * kv + 2 * num_sources * kv + (qk_norm ? hd + kv : 0)) +
           s.acc * ((is_source ? 2 * kv : 0) + 2 * num_sources * kv);
  t.write = s.act * (hd + 2 * kv) + s.acc * 2 * num_sources * kv;
  t.read_fixed = qk_norm ? s.param * 2 * m.head_dim : 0;
  t.write_fixed = qk_norm ? s.acc * 2 * m.head_dim : 0;
  return t;
}

}  // namespace strata::cost
