/// \file
/// Gated Attention (Qiu et al., arXiv 2505.06708; SPEC section 5): FLOPs, bytes, cache and
/// parameters of the output gate Y' = Y ⊙ σ(X·W_θ) at position G1 (per head, before W_O).
#pragma once

#include <cstdint>

#include "strata/core/options.hpp"
#include "strata/cost/model.hpp"
#include "strata/cost/traffic.hpp"

namespace strata::cost {

using core::GateKind;  // elementwise or headwise gate (strata/core/options.hpp)

/// Gate logits per token: H·d elementwise, H headwise.
constexpr int64_t gate_width(const ModelShape& m, GateKind k) {
  return k == GateKind::kElementwise ? m.num_heads * m.head_dim : m.num_heads;
}

/// Extra forward FLOPs per token of one layer (SPEC 5d): the gate projection 2·C·(gate width),
/// ≈ 4 per logit for the sigmoid and 1 per output element for the product; elementwise that is
/// 2·C·H·d + 5·H·d.
constexpr int64_t gated_extra_forward_flops_layer(const ModelShape& m, GateKind k) {
  const int64_t w = gate_width(m, k);
  return 2 * m.hidden * w + 4 * w + m.num_heads * m.head_dim;
}
/// Extra forward FLOPs per token of the model: L layers.
constexpr int64_t gated_extra_forward_flops_per_token(const ModelShape& m,
                                                      GateKind k = GateKind::kElementwise) {
  return m.num_layers * gated_extra_forward_flops_layer(m, k);
}
/// Extra backward FLOPs per token of the model: ≈ 2 × the forward (SPEC 5e: dW_θ and dX GEMMs).
constexpr int64_t gated_extra_backward_flops_per_token(const ModelShape& m,
                                                       GateKind k = GateKind::kElementwise) {
  return 2 * gated_extra_forward_flops_per_token(m, k);
}
/// Parameters added per layer (SPEC 5b): C·H·d elementwise, C·H headwise (no bias).
constexpr int64_t gated_extra_params_layer(const ModelShape& m, GateKind k) {
  return m.hidden * gate_width(m, k);
}
/// Parameters added to the model.
constexpr int64_t gated_extra_params(const ModelShape& m, GateKind k = GateKind::kElementwise) {
  return m.num_layers * gated_extra_params_layer(m, k);
}
/// KV-cache bytes per token: unchanged, the gate depends on the current token only (SPEC 5c).
constexpr int64_t gated_kv_cache_bytes_per_token(const ModelShape& m, int64_t elem_bytes) {
  return kv_cache_bytes_per_token(m, elem_bytes);
}

/// Extra traffic per token of the gate fused into the attention epilogue (SPEC 5e, 7.6): read the
/// gate logits (gate width); O' is written instead of O, no extra write.
constexpr Traffic gated_epilogue_forward_traffic(const ModelShape& m, GateKind k,
                                                 const Storage& s) {
  Traffic t;
  t.read = s.act * gate_width(m, k);
  return t;
}
/// Minimum traffic per token of a standalone gate pass: read O (H·d) and the logits, write O'.
constexpr Traffic gated_forward_traffic(const ModelShape& m, GateKind k, const Storage& s) {
  const int64_t hd = m.num_heads * m.head_dim;
  Traffic t;
  t.read = s.act * (hd + gate_width(m, k));
  t.write = s.act * hd;
  return t;
}
/// Minimum traffic per token of a standalone gate backward pass (SPEC 5e): read dO' and O (H·d
/// each) and the logits; write dO = dO'⊙σ(g) (H·d, the attention backward's "dO") and dg.
/// Fused into the attention backward's preprocessing, which reads O and dO' anyway (for
/// rowsum(dO⊙O)), the extra is one read of the logits and the writes of dO and dg.
constexpr Traffic gated_backward_traffic(const ModelShape& m, GateKind k, const Storage& s) {
  const int64_t hd = m.num_heads * m.head_dim;
  const int64_t w = gate_width(m, k);
  Traffic t;
  t.read = s.act * (2 * hd + w);
  t.write = s.act * (hd + w);
  return t;
}

/// Extra traffic per token of the gate's backward fused into the attention backward's
/// preprocessing (which reads O' and dO' anyway, for rowsum(dO⊙O)): read the logits, write the
/// attention's dO = dO'⊙σ(g) (H·d) and dg.
constexpr Traffic gated_fused_backward_traffic(const ModelShape& m, GateKind k, const Storage& s) {
  const int64_t w = gate_width(m, k);
  Traffic t;
  t.read = s.act * w;
  t.write = s.act * (m.num_heads * m.head_dim + w);
  return t;
}

/// Minimum traffic per token of the token-local QK-norm + RoPE pass (Qwen3 order; also the last
/// step of ExoFormer's and Depth-Attention's passes): read q and k (H·d + H_kv·d), write them
/// normalised and rotated. Fixed: the gains gamma_q and gamma_k (d each) when qk_norm.
constexpr Traffic qk_norm_rope_forward_traffic(const ModelShape& m, bool qk_norm,
                                               const Storage& s) {
  const int64_t qk = (m.num_heads + m.num_kv_heads) * m.head_dim;
  Traffic t;
  t.read = s.act * qk;
  t.write = s.act * qk;
  t.read_fixed = qk_norm ? s.param * 2 * m.head_dim : 0;
  return t;
}
/// Minimum traffic per token of its backward: read dq, dk and (for the norm) q, k; write the
/// input gradients. Fixed: the gains read and their gradients written (fp32).
constexpr Traffic qk_norm_rope_backward_traffic(const ModelShape& m, bool qk_norm,
                                                const Storage& s) {
  const int64_t qk = (m.num_heads + m.num_kv_heads) * m.head_dim;
  Traffic t;
  t.read = s.act * qk * (qk_norm ? 2 : 1);
  t.write = s.act * qk;
  t.read_fixed = qk_norm ? s.param * 2 * m.head_dim : 0;
  t.write_fixed = qk_norm ? s.acc * 2 * m.head_dim : 0;
  return t;
}

}  // namespace strata::cost
