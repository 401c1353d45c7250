/// \file
/// A decoder-only Transformer's shape, its parameter count and its per-token FLOPs, the way the
/// papers state their overheads: "extra FLOPs" are compared against ≈ 2 × parameters per token
/// forward (one multiply-add per weight), plus the attention scores.
///
/// The model is pre-norm Llama style (SPEC 1a, 3a): per layer a Q/K/V/O attention with H query and
/// H_kv key/value heads of width d (no biases), an MLP of width F (SwiGLU: gate, up and down
/// matrices; else two), two RMSNorm gains of width C and optional per-head QK-norm gains of width
/// d; then a final RMSNorm, an input embedding and an LM head (tied or not).
#pragma once

#include <cstdint>

#include "strata/cost/attention.hpp"

namespace strata::cost {

/// The shape of a model and of the batch it runs on.
struct ModelShape {
  int64_t num_layers = 0;        ///< L
  int64_t hidden = 0;            ///< C, the residual-stream width
  int64_t num_heads = 0;         ///< H, query heads
  int64_t num_kv_heads = 0;      ///< H_kv, key/value heads (H % H_kv == 0)
  int64_t head_dim = 0;          ///< d
  int64_t ffn = 0;               ///< F, the MLP's intermediate width
  int64_t vocab = 0;             ///< V (0 = leave the embedding and LM head out)
  int64_t seq_len = 0;           ///< T, for the attention-score FLOPs
  int64_t batch = 1;             ///< B
  bool swiglu = true;            ///< gated MLP (three C×F matrices) instead of two
  bool tied_embeddings = false;  ///< LM head shares the input embedding's parameters
  bool qk_norm = false;          ///< per-head RMSNorm gains on q and k (d each per layer)
  bool causal = true;            ///< causal sequence attention

  /// G = H / H_kv, the query heads per KV head.
  constexpr int64_t group_size() const { return num_heads / num_kv_heads; }
};

/// Parameters of one layer's attention projections: W_q (C×H·d), W_k and W_v (C×H_kv·d each),
/// W_o (H·d×C).
constexpr int64_t attention_params_per_layer(const ModelShape& m) {
  return m.hidden * m.num_heads * m.head_dim * 2 + m.hidden * m.num_kv_heads * m.head_dim * 2;
}
/// Parameters of one layer's MLP: 3·C·F for SwiGLU, 2·C·F otherwise.
constexpr int64_t mlp_params_per_layer(const ModelShape& m) {
  return (m.swiglu ? 3 : 2) * m.hidden * m.ffn;
}
/// Normalisation gains of one layer: two RMSNorms of width C, plus q- and k-norm (d each).
constexpr int64_t norm_params_per_layer(const ModelShape& m) {
  return 2 * m.hidden + (m.qk_norm ? 2 * m.head_dim : 0);
}
/// All parameters of one layer.
constexpr int64_t layer_params(const ModelShape& m) {
  return attention_params_per_layer(m) + mlp_params_per_layer(m) + norm_params_per_layer(m);
}
/// The input embedding table, V·C.
constexpr int64_t embedding_params(const ModelShape& m) {
  return m.vocab * m.hidden;
}
/// The LM head's own parameters: V·C, or 0 when tied to the embedding.
constexpr int64_t lm_head_params(const ModelShape& m) {
  return m.tied_embeddings ? 0 : m.vocab * m.hidden;
}
/// Every parameter: L layers, the final RMSNorm, the embedding and the (untied) LM head.
constexpr int64_t total_params(const ModelShape& m) {
  return m.num_layers * layer_params(m) + m.hidden + embedding_params(m) + lm_head_params(m);
}
/// Weights every token multiplies by: the layers' projections and MLPs and the LM head (always
/// a V×C matmul, tied or not). The input embedding is a lookup and norms are not matmuls.
constexpr int64_t matmul_params(const ModelShape& m) {
  return m.num_layers * (attention_params_per_layer(m) + mlp_params_per_layer(m)) +
         m.vocab * m.hidden;
}

/// The papers' yardstick: 2 × total parameters forward FLOPs per token (SPEC 1d: "≈ 6e9 FLOPs per
/// token for the model (2 × parameters)").
constexpr double forward_flops_per_token_2n(const ModelShape& m) {
  return 2.0 * double(total_params(m));
}
/// Forward matmul FLOPs per token: 2 × matmul_params.
constexpr double dense_forward_flops_per_token(const ModelShape& m) {
  return 2.0 * double(matmul_params(m));
}
/// Forward attention-score FLOPs per token at sequence length T, FlashAttention convention (SPEC
/// 7.8): L × 4·T·H·d, halved for causal (the per-sequence 4·T²·H·d divided by T tokens).
constexpr double attention_forward_flops_per_token(const ModelShape& m) {
  if (m.seq_len <= 0) return 0;
  return double(m.num_layers) *
         attention_forward_flops(1, m.seq_len, m.num_heads, m.head_dim, m.causal) /
         double(m.seq_len);
}
/// Forward FLOPs per token: matmuls plus attention scores.
constexpr double forward_flops_per_token(const ModelShape& m) {
  return dense_forward_flops_per_token(m) + attention_forward_flops_per_token(m);
}
/// Backward FLOPs per token: 2 × the matmuls (input and weight gradients) plus 2.5 × the
/// attention scores (SPEC 7.8).
constexpr double backward_flops_per_token(const ModelShape& m) {
  return 2.0 * dense_forward_flops_per_token(m) + 2.5 * attention_forward_flops_per_token(m);
}
/// Forward plus backward FLOPs per token.
constexpr double training_flops_per_token(const ModelShape& m) {
  return forward_flops_per_token(m) + backward_flops_per_token(m);
}
/// Forward FLOPs of one batch (B·T tokens).
constexpr double forward_flops(const ModelShape& m) {
  return double(m.batch) * double(m.seq_len) * forward_flops_per_token(m);
}

/// Vanilla KV-cache bytes per token: K and V of H_kv·d elements in each of the L layers,
/// 2·L·H_kv·d·elem_bytes.
constexpr int64_t kv_cache_bytes_per_token(const ModelShape& m, int64_t elem_bytes) {
  return 2 * m.num_layers * m.num_kv_heads * m.head_dim * elem_bytes;
}

}  // namespace strata::cost
