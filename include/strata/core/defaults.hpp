/// \file
/// One default per concept, for every method's options: what a default-constructed options
/// struct does, stated here once, and the paper configurations they come from. Each options
/// struct (QkNormRopeOptions, ExoOptions, MeaOptions and the kernels' argument structs) takes its
/// initializers from these constants; api::describe() prints the values a run used.
///
///  * optional QK-norm (RMSNorm of q and k over d): off unless asked. Depth-Attention and Gated
///    Attention train with it (Qwen3 style): `qk_norm = true`. ExoFormer's QK-norm and MEA's
///    GroupNorm are steps of those methods and always run.
///  * RoPE: on (rotate-half); every paper here trains a RoPE model. `rope = false` turns it off.
///  * RoPE base theta: each paper's (strata::paper below; the configs differ, 1e4 and 5e5).
///  * RMSNorm epsilon 1e-6 (QK-norm, ExoFormer's anchors); GroupNorm epsilon 1e-5
///    (torch.nn.GroupNorm's, MEA).
///  * softmax scale: `d ** -0.5`, FlashAttention's (api::default_softmax_scale).
#pragma once

namespace strata::defaults {

inline constexpr bool kQkNorm = false;  ///< optional QK-norm: off unless asked
inline constexpr bool kRope = true;
inline constexpr float kRmsNormEps = 1e-6f;
inline constexpr float kGroupNormEps = 1e-5f;

}  // namespace strata::defaults

/// The RoPE base theta each paper trains with (SPEC.md); each method's options default to its
/// paper's value.
namespace strata::paper {

/// RoFormer's base (Su et al. 2021), the Llama default.
inline constexpr float kRoFormerRopeTheta = 10000.f;
/// Depth-Attention: the reference Llama code, theta = 1e4 (SPEC §1a step 2).
inline constexpr float kDepthAttentionRopeTheta = 10000.f;
/// Gated Attention's QK-norm + RoPE pass: the paper does not state theta (SPEC §5); RoFormer's.
inline constexpr float kGatedAttentionRopeTheta = kRoFormerRopeTheta;
/// ExoFormer: the official train.py, theta = 5e5 (SPEC §3a).
inline constexpr float kExoFormerRopeTheta = 500000.f;
/// MEA: the paper does not state theta (SPEC §4); RoFormer's.
inline constexpr float kMeaRopeTheta = kRoFormerRopeTheta;

}  // namespace strata::paper
