/// \file
/// The papers' model shapes, for the claims program (benchmarks/claims.cpp), the cost tests and the
/// benchmarks: each one states where it comes from, and which of its numbers are ours.
#pragma once

#include <cstdint>

#include "strata/cost/model.hpp"

namespace strata::cost::papers {

/// Depth-Attention's released 3B config (SPEC 1b: llama_config/released/3b_depth_attention_qknorm_
/// gqa4x/config.json; untied embeddings, Qwen3-style QK-norm), trained at cutoff 2048; its depth
/// sources are every 24th layer.
inline constexpr ModelShape kDepth3B{.num_layers = 48,
                                     .hidden = 2048,
                                     .num_heads = 32,
                                     .num_kv_heads = 8,
                                     .head_dim = 64,
                                     .ffn = 6912,
                                     .vocab = 50304,
                                     .seq_len = 2048,
                                     .tied_embeddings = false,
                                     .qk_norm = true};
inline constexpr int64_t kDepth3BStride = 24;

/// Depth-Attention's 410M companion config (SPEC 1b: llama_config/depth_attention_410m). The vocab
/// is not stated; 50304 tied gives 412M parameters, matching the name.
inline constexpr ModelShape kDepth410M{.num_layers = 32,
                                       .hidden = 1024,
                                       .num_heads = 16,
                                       .num_kv_heads = 4,
                                       .head_dim = 64,
                                       .ffn = 2816,
                                       .vocab = 50304,
                                       .seq_len = 2048,
                                       .tied_embeddings = true,
                                       .qk_norm = true};
inline constexpr int64_t kDepth410MStride = 16;

/// ExoFormer's train.py defaults (SPEC 3a): MHA, C = 1536, H = 16, d = 96, L = 32, SwiGLU of 6C²
/// parameters (F = 2C), vocab 57601, sequence length 2048. Its baseline is Gated Attention.
inline constexpr ModelShape kExo{.num_layers = 32,
                                 .hidden = 1536,
                                 .num_heads = 16,
                                 .num_kv_heads = 16,
                                 .head_dim = 96,
                                 .ffn = 3072,
                                 .vocab = 57601,
                                 .seq_len = 2048,
                                 .qk_norm = true};

/// ResFormer's smallest model (SPEC 2g: "82M, 8-layer", LLaMA-style). Only the 8 layers are the
/// paper's; the width (C = 512, 8 heads of 64, F = 2048, untied vocab 50304: 85M parameters) is
/// ours. SVFormer's cache fraction depends on L alone.
inline constexpr ModelShape kResFormer82M{.num_layers = 8,
                                          .hidden = 512,
                                          .num_heads = 8,
                                          .num_kv_heads = 8,
                                          .head_dim = 64,
                                          .ffn = 2048,
                                          .vocab = 50304,
                                          .seq_len = 2048,
                                          .tied_embeddings = false};

/// MEA's example shape (SPEC 4d: H = H_c = 16, d = 128; C = H·d): 24 layers and the SwiGLU width
/// are ours. Virtual heads train with H_c = H/2 component heads (SPEC 4a).
inline constexpr ModelShape kMea{.num_layers = 24,
                                 .hidden = 2048,
                                 .num_heads = 16,
                                 .num_kv_heads = 16,
                                 .head_dim = 128,
                                 .ffn = 5632,
                                 .vocab = 50304,
                                 .seq_len = 2048};
inline constexpr int64_t kMeaVirtualComponentHeads = kMea.num_heads / 2;

}  // namespace strata::cost::papers
