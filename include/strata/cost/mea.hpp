/// \file
/// MEA, Multi-head Explicit Attention (Peng et al., arXiv 2601.19611; SPEC section 4): FLOPs,
/// bytes, cache and parameters of head-level linear composition (HLC) and head GroupNorm.
///
/// K'[h] = Σ_c A^K[c,h]·K_c[c] and V'[h] = Σ_c A^V[c,h]·V_c[c] mix H_c component heads into the
/// attention's H_kv key/value heads (H_kv = H for MHA, as in the paper; CONTRACT.md "mea"); a head
/// GroupNorm over d sits either on K' and V' (site KeyValue, the default of SPEC 7.5) or on each
/// head's attention output (site Output). With virtual heads, H_c < H_kv component heads are
/// projected and cached and the composite heads are rebuilt inside the attention tile.
#pragma once

#include <cstdint>

#include "strata/core/options.hpp"
#include "strata/cost/model.hpp"
#include "strata/cost/traffic.hpp"

namespace strata::cost {

using core::NormSite;  // site of the head GroupNorm (strata/core/options.hpp)

/// HLC forward FLOPs per token of one layer: 2·H_c·H_kv·d for K plus the same for V (SPEC 4d).
constexpr int64_t mea_hlc_forward_flops_layer(const ModelShape& m, int64_t num_component_heads) {
  return 4 * num_component_heads * m.num_kv_heads * m.head_dim;
}
/// Head GroupNorm forward FLOPs per token of one layer, ≈ 8 per normalised element (SPEC 4d): two
/// tensors of H_kv·d at the KeyValue site, one of H·d at the Output site.
constexpr int64_t mea_gn_forward_flops_layer(const ModelShape& m, NormSite site) {
  return site == NormSite::kKeyValue ? 2 * 8 * m.num_kv_heads * m.head_dim
                                     : 8 * m.num_heads * m.head_dim;
}
/// FLOPs per token of one layer saved by virtual heads: the K and V projections shrink from H_kv
/// to H_c heads, 4·C·(H_kv − H_c)·d (SPEC 4d). 0 for full MEA (H_c = H_kv).
constexpr int64_t mea_projection_savings_flops_layer(const ModelShape& m,
                                                     int64_t num_component_heads) {
  return 4 * m.hidden * (m.num_kv_heads - num_component_heads) * m.head_dim;
}
/// Net extra forward FLOPs per token of one layer: HLC + GroupNorm − projection savings.
constexpr int64_t mea_extra_forward_flops_layer(const ModelShape& m, int64_t num_component_heads,
                                                NormSite site = NormSite::kKeyValue) {
  return mea_hlc_forward_flops_layer(m, num_component_heads) + mea_gn_forward_flops_layer(m, site) -
         mea_projection_savings_flops_layer(m, num_component_heads);
}
/// Net extra forward FLOPs per token of the model (every layer composes).
constexpr int64_t mea_extra_forward_flops_per_token(const ModelShape& m,
                                                    int64_t num_component_heads,
                                                    NormSite site = NormSite::kKeyValue) {
  return m.num_layers * mea_extra_forward_flops_layer(m, num_component_heads, site);
}
/// Net extra backward FLOPs per token of the model: ≈ 2 × the forward (SPEC 4e: dK_c and dA are
/// two contractions per forward one; the projection savings double likewise).
constexpr int64_t mea_extra_backward_flops_per_token(const ModelShape& m,
                                                     int64_t num_component_heads,
                                                     NormSite site = NormSite::kKeyValue) {
  return 2 * mea_extra_forward_flops_per_token(m, num_component_heads, site);
}

/// Parameters added per layer (SPEC 4b): A^K and A^V (H_c·H_kv each), the GroupNorm affine γ, β
/// (2·H_kv·d per normalised tensor at KeyValue, two tensors; 2·H·d at Output), minus the K and V
/// projection columns virtual heads drop, 2·C·d·(H_kv − H_c).
constexpr int64_t mea_extra_params_layer(const ModelShape& m, int64_t num_component_heads,
                                         NormSite site = NormSite::kKeyValue) {
  const int64_t gn = site == NormSite::kKeyValue ? 2 * 2 * m.num_kv_heads * m.head_dim
                                                 : 2 * m.num_heads * m.head_dim;
  return 2 * num_component_heads * m.num_kv_heads + gn -
         2 * m.hidden * m.head_dim * (m.num_kv_heads - num_component_heads);
}
/// Parameters added to the model: L × mea_extra_params_layer.
constexpr int64_t mea_extra_params(const ModelShape& m, int64_t num_component_heads,
                                   NormSite site = NormSite::kKeyValue) {
  return m.num_layers * mea_extra_params_layer(m, num_component_heads, site);
}

/// KV-cache bytes per token (SPEC 4c, 7.5): the cache holds the H_c component heads K_c and V_c,
/// 2·L·H_c·d·elem; with H_c = H_kv (full MEA) that is the vanilla size, with H_c = H_kv/2 half of
/// it. K_c is cached post-RoPE only at the `Output` site; at the `KeyValue` site RoPE follows the
/// GroupNorm of K', so K_c is cached un-rotated and every step re-expands, normalizes and rotates
/// (SPEC 4c (i)) — per-tile work these FLOP counts (once per token) do not include.
constexpr int64_t mea_kv_cache_bytes_per_token(const ModelShape& m, int64_t num_component_heads,
                                               int64_t elem_bytes) {
  return 2 * m.num_layers * num_component_heads * m.head_dim * elem_bytes;
}

/// Minimum traffic per token of a fused forward HLC pass that materialises K' and V' (GroupNorm
/// at the KeyValue site and RoPE on K' fuse in): read K_c and V_c (H_c·d each), write K' and V'
/// (H_kv·d each). Fixed: A^K, A^V (H_c·H_kv each) and, at KeyValue, γ and β of K' and V'
/// (H_kv·d each). With virtual heads expanded inside the attention tile (SPEC 4c (i)) there is no
/// such pass: the attention instead reads H_c rather than H_kv heads per key.
constexpr Traffic mea_hlc_forward_traffic(const ModelShape& m, int64_t num_component_heads,
                                          NormSite site, const Storage& s) {
  const int64_t c = num_component_heads * m.head_dim;
  const int64_t kv = m.num_kv_heads * m.head_dim;
  Traffic t;
  t.read = s.act * 2 * c;
  t.write = s.act * 2 * kv;
  t.read_fixed = s.param * (2 * num_component_heads * m.num_kv_heads +
                            (site == NormSite::kKeyValue ? 4 * kv : 0));
  return t;
}

/// Minimum traffic per token of a standalone Output-site GroupNorm pass: read O (H·d), write the
/// normalised O (H·d). Fixed: γ, β (H·d each). Zero extra when fused into the attention epilogue.
constexpr Traffic mea_output_gn_forward_traffic(const ModelShape& m, const Storage& s) {
  const int64_t hd = m.num_heads * m.head_dim;
  Traffic t;
  t.read = s.act * hd;
  t.write = s.act * hd;
  t.read_fixed = s.param * 2 * hd;
  return t;
}

/// Minimum traffic per token of the fused backward HLC pass (SPEC 4e; GroupNorm at KeyValue and
/// RoPE backward fuse in, K' recomputed from K_c): read dK', dV' (H_kv·d each) and K_c, V_c
/// (H_c·d each); write dK_c, dV_c (H_c·d each). Fixed: A^K, A^V and the KeyValue γ, β read; dA^K,
/// dA^V and dγ, dβ written (fp32).
constexpr Traffic mea_hlc_backward_traffic(const ModelShape& m, int64_t num_component_heads,
                                           NormSite site, const Storage& s) {
  const int64_t c = num_component_heads * m.head_dim;
  const int64_t kv = m.num_kv_heads * m.head_dim;
  const int64_t fixed =
      2 * num_component_heads * m.num_kv_heads + (site == NormSite::kKeyValue ? 4 * kv : 0);
  Traffic t;
  t.read = s.act * (2 * kv + 2 * c);
  t.write = s.act * 2 * c;
  t.read_fixed = s.param * fixed;
  t.write_fixed = s.acc * fixed;
  return t;
}

/// Minimum traffic per token of Strata's fused KeyValue-site forward pass
/// (strata/variants/mea.cuh): the HLC pass (mea_hlc_forward_traffic, GroupNorm and RoPE on K'
/// fused in) plus RoPE on the queries in the same pass: read q, write q_rot (H·d each).
constexpr Traffic mea_kv_fused_forward_traffic(const ModelShape& m, int64_t num_component_heads,
                                               const Storage& s) {
  Traffic t = mea_hlc_forward_traffic(m, num_component_heads, NormSite::kKeyValue, s);
  t.read += s.act * m.num_heads * m.head_dim;
  t.write += s.act * m.num_heads * m.head_dim;
  return t;
}
/// Its backward: the HLC backward pass plus RoPE's backward of the queries: read the attention's
/// dq_rot, write dq (H·d each).
constexpr Traffic mea_kv_fused_backward_traffic(const ModelShape& m, int64_t num_component_heads,
                                                const Storage& s) {
  Traffic t = mea_hlc_backward_traffic(m, num_component_heads, NormSite::kKeyValue, s);
  t.read += s.act * m.num_heads * m.head_dim;
  t.write += s.act * m.num_heads * m.head_dim;
  return t;
}

/// Minimum traffic per token of the Output site's token-local forward pass: RoPE on q and on the
/// H_c component keys (read and write H·d + H_c·d). The composition of K', V' that follows
/// (mea_compose_kernel) is mea_output_compose_forward_traffic.
/// The GroupNorm is the attention epilogue's (mea_output_epilogue_forward_traffic).
constexpr Traffic mea_output_prepass_forward_traffic(const ModelShape& m,
                                                     int64_t num_component_heads,
                                                     const Storage& s) {
  const int64_t qc = (m.num_heads + num_component_heads) * m.head_dim;
  Traffic t;
  t.read = s.act * qc;
  t.write = s.act * qc;
  return t;
}
/// Minimum traffic per token of the Output site's composition: RoPE(K_c) and V_c read (2 H_c·d),
/// K' and V' written (2 H_kv·d) for the attention's cp.async tile loads. Fixed: A^K, A^V.
constexpr Traffic mea_output_compose_forward_traffic(const ModelShape& m,
                                                     int64_t num_component_heads,
                                                     const Storage& s) {
  Traffic t;
  t.read = s.act * 2 * num_component_heads * m.head_dim;
  t.write = s.act * 2 * m.num_kv_heads * m.head_dim;
  t.read_fixed = s.param * 2 * num_component_heads * m.num_kv_heads;
  return t;
}
/// Extra traffic per token of the Output-site GroupNorm in the attention epilogue: the
/// normalised output is written besides O (H·d), which the backward needs. Fixed: γ, β.
constexpr Traffic mea_output_epilogue_forward_traffic(const ModelShape& m, const Storage& s) {
  Traffic t;
  t.write = s.act * m.num_heads * m.head_dim;
  t.read_fixed = s.param * 2 * m.num_heads * m.head_dim;
  return t;
}
/// The Output site's token-local backward passes: the HLC backward from the attention's dK', dV'
/// (mea_hlc_backward_traffic at the Output site), RoPE's backward of dq (read dq_rot, write dq),
/// and the GroupNorm's parameter gradients from O, dL/dout (H·d each) and the row statistics the
/// attention's preprocess stored (mean and 1/σ, fp32 per head); dγ, dβ written.
constexpr Traffic mea_output_fused_backward_traffic(const ModelShape& m,
                                                    int64_t num_component_heads, const Storage& s) {
  const int64_t hd = m.num_heads * m.head_dim;
  Traffic t = mea_hlc_backward_traffic(m, num_component_heads, NormSite::kOutput, s);
  t.read += s.act * 3 * hd + s.acc * 2 * m.num_heads;
  t.write += s.act * hd;
  t.read_fixed += s.param * 2 * hd;
  t.write_fixed += s.acc * 2 * hd;
  return t;
}

}  // namespace strata::cost
