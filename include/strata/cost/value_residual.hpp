/// \file
/// ResFormer and SVFormer value residual (Zhou et al., arXiv 2410.17897; SPEC section 2): FLOPs,
/// bytes, cache and parameters.
///
/// ResFormer: V'_l = λ_self·V_l + λ_first·V_0 for l ≥ 1 (official code: 0.5 and 0.5, constants;
/// the project's λ is scalar or per KV head, SPEC 7.3). SVFormer: every layer l ≥ 1 attends with
/// V_0 and has no value projection of its own.
#pragma once

#include <cstdint>

#include "strata/cost/model.hpp"
#include "strata/cost/traffic.hpp"

namespace strata::cost {

/// How ResFormer's λ_self, λ_first are stored (SPEC 2a, 2b, 7.3).
enum class ResLambda {
  Constant,  ///< Identity-ResFormer, 0.5 and 0.5 hard-coded (the official code): no parameters
  Scalar,    ///< two learnable scalars per layer l ≥ 1
  Head,      ///< two learnable values per KV head per layer l ≥ 1
};

/// Number of λ values of one layer l ≥ 1 (both λ_self and λ_first).
constexpr int64_t resformer_lambda_count(const ModelShape& m, ResLambda g) {
  return g == ResLambda::Constant ? 0 : g == ResLambda::Scalar ? 2 : 2 * m.num_kv_heads;
}

/// Extra forward FLOPs per token of layer `layer`: 3·H_kv·d for l ≥ 1 (two scalings and one add,
/// SPEC 2d), 0 for layer 0.
constexpr int64_t resformer_extra_forward_flops_layer(const ModelShape& m, int64_t layer) {
  return layer >= 1 ? 3 * m.num_kv_heads * m.head_dim : 0;
}
/// Extra forward FLOPs per token of the model: (L − 1)·3·H_kv·d.
constexpr int64_t resformer_extra_forward_flops_per_token(const ModelShape& m) {
  return m.num_layers > 1 ? (m.num_layers - 1) * 3 * m.num_kv_heads * m.head_dim : 0;
}
/// Extra backward FLOPs per token of the model: ≈ 2 × the forward (dV_l and dV_0 scalings, dλ).
constexpr int64_t resformer_extra_backward_flops_per_token(const ModelShape& m) {
  return 2 * resformer_extra_forward_flops_per_token(m);
}
/// Parameters added (SPEC 2b): none for the official constants, else the λ of layers 1..L−1.
constexpr int64_t resformer_extra_params(const ModelShape& m, ResLambda g) {
  return m.num_layers > 1 ? (m.num_layers - 1) * resformer_lambda_count(m, g) : 0;
}
/// KV-cache bytes per token: unchanged; the V slot holds V'_l (SPEC 2c).
constexpr int64_t resformer_kv_cache_bytes_per_token(const ModelShape& m, int64_t elem_bytes) {
  return kv_cache_bytes_per_token(m, elem_bytes);
}

/// Minimum traffic per token of the fused forward mix of one layer l ≥ 1 (SPEC 2a): read V_l and
/// V_0 (H_kv·d each), write V'_l (H_kv·d). Fixed: the layer's λ values (none when Constant).
constexpr Traffic resformer_mix_forward_traffic(const ModelShape& m, ResLambda g,
                                                const Storage& s) {
  const int64_t kv = m.num_kv_heads * m.head_dim;
  Traffic t;
  t.read = s.act * 2 * kv;
  t.write = s.act * kv;
  t.read_fixed = s.param * resformer_lambda_count(m, g);
  return t;
}

/// Minimum traffic per token of the fused backward mix of one layer l ≥ 1 (SPEC 2e): read
/// g_l = dV'_l (H_kv·d); when λ is learnable also V_0 and V_l (for dλ_first = Σ V_0⊙g,
/// dλ_self = Σ V_l⊙g); write dV_l = λ_self·g (H_kv·d); accumulate dV_0 += λ_first·g into the
/// fp32 accumulator (read and write, H_kv·d). Fixed: the λ read, and dλ written (fp32).
constexpr Traffic resformer_mix_backward_traffic(const ModelShape& m, ResLambda g,
                                                 const Storage& s) {
  const int64_t kv = m.num_kv_heads * m.head_dim;
  const bool learn = g != ResLambda::Constant;
  Traffic t;
  t.read = s.act * (kv + (learn ? 2 * kv : 0)) + s.acc * kv;
  t.write = s.act * kv + s.acc * kv;
  t.read_fixed = s.param * resformer_lambda_count(m, g);
  t.write_fixed = s.acc * resformer_lambda_count(m, g);
  return t;
}

/// Extra forward FLOPs per token of SVFormer: negative, the value projections of layers
/// 1..L−1 are gone, −(L − 1)·2·C·H_kv·d (SPEC 2d).
constexpr int64_t svformer_extra_forward_flops_per_token(const ModelShape& m) {
  return m.num_layers > 1 ? -(m.num_layers - 1) * 2 * m.hidden * m.num_kv_heads * m.head_dim : 0;
}
/// Extra backward FLOPs per token of SVFormer: twice the forward saving (the W_v input and weight
/// gradients of layers 1..L−1), plus the dV_0 accumulation, (L − 1)·H_kv·d additions.
constexpr int64_t svformer_extra_backward_flops_per_token(const ModelShape& m) {
  return 2 * svformer_extra_forward_flops_per_token(m) +
         (m.num_layers > 1 ? (m.num_layers - 1) * m.num_kv_heads * m.head_dim : 0);
}
/// Parameters added by SVFormer: −(L − 1)·C·H_kv·d (SPEC 2b, section 6).
constexpr int64_t svformer_extra_params(const ModelShape& m) {
  return m.num_layers > 1 ? -(m.num_layers - 1) * m.hidden * m.num_kv_heads * m.head_dim : 0;
}
/// SVFormer KV-cache bytes per token: K for every layer, V for layer 0 only,
/// (L + 1)·H_kv·d·elem (SPEC 2c).
constexpr int64_t svformer_kv_cache_bytes_per_token(const ModelShape& m, int64_t elem_bytes) {
  return (m.num_layers + 1) * m.num_kv_heads * m.head_dim * elem_bytes;
}
/// SVFormer's KV cache as a fraction of the vanilla one: (L + 1)/(2L), "nearly half" (SPEC 2c).
constexpr double svformer_kv_cache_fraction(const ModelShape& m) {
  return double(svformer_kv_cache_bytes_per_token(m, 1)) / double(kv_cache_bytes_per_token(m, 1));
}
/// SVFormer forward: no pass at all, layer l's attention reads V_0 directly. Zero traffic.
constexpr Traffic svformer_forward_traffic(const ModelShape&, const Storage&) {
  return {};
}
/// Minimum traffic per token of SVFormer's backward reduction for one layer l ≥ 1 (SPEC 2e,
/// dV_0 = Σ_n dV'_n): read dV'_l (H_kv·d) and accumulate it into the fp32 dV_0 (read and write).
constexpr Traffic svformer_backward_traffic(const ModelShape& m, const Storage& s) {
  const int64_t kv = m.num_kv_heads * m.head_dim;
  Traffic t;
  t.read = s.act * kv + s.acc * kv;
  t.write = s.acc * kv;
  return t;
}

}  // namespace strata::cost
