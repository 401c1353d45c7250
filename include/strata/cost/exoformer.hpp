/// \file
/// ExoFormer (Su, arXiv 2601.08131; SPEC section 3): FLOPs, bytes, cache and parameters of the
/// exogenous-anchor mixing P̃ = (λ1⊙s1)⊙Â_P + (λ2⊙s2)⊙P of the four streams P ∈ {q, k, v, g}.
///
/// The anchors Â_P = RMSNorm(E·W_anc) are computed once per forward from the token embeddings E;
/// every layer mixes them into its own q, k, v and gate logits (before QK-norm and RoPE), with
/// per-token sigmoid scales s from a C→16→8 MLP in the dynamic variant. ExoFormer's baseline is
/// Gated Attention (SPEC 3d): the gate projection and the sigmoid gate are the baseline's, costed
/// in gated.hpp, and everything here is extra over that baseline.
#pragma once

#include <cstdint>

#include "strata/core/options.hpp"
#include "strata/cost/model.hpp"
#include "strata/cost/traffic.hpp"

namespace strata::cost {

using core::MixGranularity;  // granularity of lambda (strata/core/options.hpp)

/// The ExoFormer variant.
struct ExoOptions {
  bool dynamic = true;  ///< per-token scales s from the C→16→8 MLP
  MixGranularity lambda = MixGranularity::kElementwise;  ///< λ granularity
  int64_t mlp_hidden = 16;  ///< the dynamic MLP's hidden width (SPEC 3a.3)
  /// The gate stream is mixed in the pre-attention pass and g̃ written for the attention epilogue
  /// (true), or mixed in the epilogue itself (false, see exoformer_gate_epilogue_traffic).
  bool mix_gate_in_pass = true;
};

/// Elements per token of the four mixed streams: q and g have H heads, k and v H_kv, so
/// 2·(H + H_kv)·d (= 4C for the MHA config with H·d = C).
constexpr int64_t exoformer_stream_elems(const ModelShape& m) {
  return 2 * (m.num_heads + m.num_kv_heads) * m.head_dim;
}

/// Number of λ values of one layer: two tensors per stream (SPEC 3b).
constexpr int64_t exoformer_lambda_count(const ModelShape& m, MixGranularity g) {
  switch (g) {
    case MixGranularity::kElementwise:
      return 2 * exoformer_stream_elems(m);
    case MixGranularity::kHeadwise:
      return 2 * 2 * (m.num_heads + m.num_kv_heads);
    case MixGranularity::kScalar:
      return 2 * 4;
  }
  return 0;
}

/// Forward FLOPs per token of the anchors, once per forward (SPEC 3d): the projection E·W_anc,
/// 2·C·(stream elems) = 8C² for MHA, plus ≈ 4 per element for the four anchor RMSNorms (16C).
constexpr int64_t exoformer_anchor_forward_flops_per_token(const ModelShape& m) {
  return 2 * m.hidden * exoformer_stream_elems(m) + 4 * exoformer_stream_elems(m);
}

/// Extra forward FLOPs per token of one layer (SPEC 3d): the mixing, ≈ 4 per stream element when
/// dynamic (λ·s, two products, one add: 16C for MHA) and 3 when static (two products, one add);
/// the dynamic MLP, 2·16·C + 2·16·8 (its GELU and sigmoid are O(24) and left out, as in SPEC 3d).
constexpr int64_t exoformer_extra_forward_flops_layer(const ModelShape& m, const ExoOptions& o) {
  const int64_t mix = (o.dynamic ? 4 : 3) * exoformer_stream_elems(m);
  const int64_t mlp = o.dynamic ? 2 * o.mlp_hidden * m.hidden + 2 * o.mlp_hidden * 8 : 0;
  return mix + mlp;
}

/// Extra forward FLOPs per token of the model over the Gated Attention baseline: the anchors once
/// plus L layers of mixing (every layer mixes, layer 0 included: SPEC 3a "all layers").
constexpr int64_t exoformer_extra_forward_flops_per_token(const ModelShape& m,
                                                          const ExoOptions& o = {}) {
  return exoformer_anchor_forward_flops_per_token(m) +
         m.num_layers * exoformer_extra_forward_flops_layer(m, o);
}
/// Extra backward FLOPs per token of the model: ≈ 2 × the forward (SPEC 3e).
constexpr int64_t exoformer_extra_backward_flops_per_token(const ModelShape& m,
                                                           const ExoOptions& o = {}) {
  return 2 * exoformer_extra_forward_flops_per_token(m, o);
}

/// Parameters added over the Gated Attention baseline (SPEC 3b, section 6): W_anc (C × stream
/// elems = 4C² for MHA) and four anchor gains (d each), then per layer the λ tensors and, when
/// dynamic, the MLP (C·16 + 16·8 + 8).
constexpr int64_t exoformer_extra_params(const ModelShape& m, const ExoOptions& o = {}) {
  const int64_t per_layer = exoformer_lambda_count(m, o.lambda) +
                            (o.dynamic ? m.hidden * o.mlp_hidden + o.mlp_hidden * 8 + 8 : 0);
  return m.hidden * exoformer_stream_elems(m) + 4 * m.head_dim + m.num_layers * per_layer;
}

/// KV-cache bytes per token: unchanged, the cache holds post-mix k̃ and ṽ; anchors and scales
/// of a new token are transient (SPEC 3c).
constexpr int64_t exoformer_kv_cache_bytes_per_token(const ModelShape& m, int64_t elem_bytes) {
  return kv_cache_bytes_per_token(m, elem_bytes);
}

/// Minimum traffic per token of the anchor normalisation, once per forward (SPEC 7.4: Â_P is
/// computed once for the stack): read the four raw anchors, write the four Â_P (stream elems each
/// way). Fixed: the four anchor gains (d each).
constexpr Traffic exoformer_anchor_norm_traffic(const ModelShape& m, const Storage& s) {
  Traffic t;
  t.read = s.act * exoformer_stream_elems(m);
  t.write = s.act * exoformer_stream_elems(m);
  t.read_fixed = s.param * 4 * m.head_dim;
  return t;
}

/// Minimum traffic per token of one layer's fused forward mix (SPEC 3a.4–6, 7.4): read Â_P and P
/// of every mixed stream and the scales s (8 per token, dynamic only); write q̃ and k̃ (after
/// QK-norm and RoPE, which fuse into the same pass), ṽ, and g̃ when the gate is mixed here.
/// Without `mix_gate_in_pass` the gate stream (H·d) and its two scales are left to the attention
/// epilogue. Fixed: the λ tensors of the mixed streams and the QK-norm gains γq, γk (d each).
constexpr Traffic exoformer_mix_forward_traffic(const ModelShape& m, const ExoOptions& o,
                                                const Storage& s) {
  const int64_t gate = m.num_heads * m.head_dim;
  const int64_t streams = exoformer_stream_elems(m) - (o.mix_gate_in_pass ? 0 : gate);
  const int64_t scales = o.dynamic ? (o.mix_gate_in_pass ? 8 : 6) : 0;
  int64_t lambdas = exoformer_lambda_count(m, o.lambda);
  if (!o.mix_gate_in_pass)
    lambdas -= o.lambda == MixGranularity::kElementwise ? 2 * gate
               : o.lambda == MixGranularity::kHeadwise  ? 2 * m.num_heads
                                                        : 2;
  Traffic t;
  t.read = s.act * (2 * streams + scales);
  t.write = s.act * streams;
  t.read_fixed = s.param * (lambdas + 2 * m.head_dim);
  return t;
}

/// Extra traffic per token of the attention epilogue when it mixes the gate stream itself
/// (`mix_gate_in_pass` false): read Â_g and g (H·d each) and, dynamic, the scales s_g1, s_g2,
/// instead of the Gated baseline's g. Fixed: the gate's two λ tensors.
constexpr Traffic exoformer_gate_epilogue_traffic(const ModelShape& m, const ExoOptions& o,
                                                  const Storage& s) {
  const int64_t gate = m.num_heads * m.head_dim;
  Traffic t;
  t.read = s.act * (gate + (o.dynamic ? 2 : 0));  // Â_g and scales beyond the baseline's g
  t.read_fixed = s.param * (o.lambda == MixGranularity::kElementwise ? 2 * gate
                            : o.lambda == MixGranularity::kHeadwise  ? 2 * m.num_heads
                                                                     : 2);
  return t;
}

/// Minimum traffic per token of one layer's fused backward mix (SPEC 3e), for all four streams:
///  * read dy = ∂L/∂P̃ of each stream (the attention backward's dq, dk, dv and the gate's dg̃;
///    the QK-norm and RoPE backward fuse in), Â_P and P (to recompute the pre-norm q̃, k̃ and for
///    dλ, ds), and s (8, dynamic only);
///  * write dP of each stream (to the W_attn gradient GEMM) and ds (8, dynamic only, to the MLP
///    backward);
///  * accumulate dÂ_P += λ1⊙s1⊙dy into the fp32 stack accumulators (read and write).
/// Fixed: λ, γq, γk read; dλ, dγq, dγk written (fp32).
constexpr Traffic exoformer_mix_backward_traffic(const ModelShape& m, const ExoOptions& o,
                                                 const Storage& s) {
  const int64_t e = exoformer_stream_elems(m);
  const int64_t scales = o.dynamic ? 8 : 0;
  const int64_t fixed = exoformer_lambda_count(m, o.lambda) + 2 * m.head_dim;
  Traffic t;
  t.read = s.act * (3 * e + scales) + s.acc * e;
  t.write = s.act * (e + scales) + s.acc * e;
  t.read_fixed = s.param * fixed;
  t.write_fixed = s.acc * fixed;
  return t;
}

/// Minimum traffic per token of ExoFormer's fused forward pass as Strata runs it
/// (strata/variants/exoformer.cuh): the anchor RMSNorm is recomputed in every layer from the raw
/// anchor projections (the same bytes as reading a stored Â_P, and no separate anchor pass, so
/// exoformer_anchor_norm_traffic is never paid): read anchor_P and P of the four streams and the
/// scales s (8 fp32, counted at `param` bytes, dynamic only); write q̃, k̃ (after QK-norm and RoPE),
/// ṽ and g̃. Fixed: λ, γq, γk and the four anchor gains (d each).
constexpr Traffic exoformer_fused_forward_traffic(const ModelShape& m, const ExoOptions& o,
                                                  const Storage& s) {
  const int64_t e = exoformer_stream_elems(m);
  Traffic t;
  t.read = s.act * 2 * e + (o.dynamic ? s.param * 8 : 0);
  t.write = s.act * e;
  t.read_fixed = s.param * (exoformer_lambda_count(m, o.lambda) + 6 * m.head_dim);
  return t;
}

/// Minimum traffic per token of the fused backward pass of one layer: read anchor_P, P and
/// dy = ∂L/∂(pass output) of the four streams (the QK-norm's input P̃ is recomputed from anchor_P
/// and P) and s (dynamic); write dP and ds (dynamic). The stack's fp32 accumulator dÂ_P (stream
/// elems) is read when `accumulate` (a later layer wrote it) and written unless `finalize`; layer
/// 0 (`finalize`) instead writes d anchor_P (act) through the anchor RMSNorm. Fixed: λ and the
/// gains read; dλ, dγq, dγk and, when `finalize`, the anchor gains' gradients written.
constexpr Traffic exoformer_fused_backward_traffic(const ModelShape& m, const ExoOptions& o,
                                                   bool accumulate, bool finalize,
                                                   const Storage& s) {
  const int64_t e = exoformer_stream_elems(m);
  const int64_t lambdas = exoformer_lambda_count(m, o.lambda);
  Traffic t;
  t.read = s.act * 3 * e + (o.dynamic ? s.param * 8 : 0) + (accumulate ? s.acc * e : 0);
  t.write = s.act * e + (o.dynamic ? s.acc * 8 : 0) + (finalize ? s.act * e : s.acc * e);
  t.read_fixed = s.param * (lambdas + 6 * m.head_dim);
  t.write_fixed = s.acc * (lambdas + 2 * m.head_dim + (finalize ? 4 * m.head_dim : 0));
  return t;
}

}  // namespace strata::cost
