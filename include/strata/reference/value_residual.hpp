/// \file
/// strata/reference/value_residual.hpp — ResFormer and SVFormer value residual (SPEC §2, §7.3).
///
/// ResFormer: V'_0 = v_0; V'_l = λ_self,l · v_l + λ_first,l · v_0 for l ≥ 1, with λ a scalar or one
/// value per KV head. SVFormer: every layer attends to layer 0's value, V'_l = v_0. Queries and
/// keys are untouched (no RoPE or norm here: the contract feeds post-RoPE q, k directly).
///
/// Backward runs layers L−1 … 0 and keeps one stack-wide accumulator dV_0 = Σ_{l≥1} λ_first,l g_l
/// (SVFormer: Σ_l g_l), complete before layer 0's own contribution is added (SPEC §2e).
#pragma once

#include <string>
#include <vector>

#include "attention.hpp"

namespace strata::reference {

// ==== ResFormer
// ====================================================================================

struct ResFormerConfig {
  AttentionConfig attn;  // cu_seqlens_k must equal cu_seqlens_q
  int num_layers = 1;
  LambdaGranularity granularity = LambdaGranularity::Scalar;  // Scalar or Head (per KV head)
};

struct ResFormerInputs {
  std::vector<Tensor> q, k, v;
  // Per layer; entry 0 is absent (empty): layer 0 has no residual. Shape [] or [H_kv].
  std::vector<Tensor> lambda_self, lambda_first;
};

struct ResFormerForward {
  std::vector<Tensor> out, lse;
  std::vector<Tensor> v_mixed;  // V'_l, saved for backward
};

inline ResFormerInputs allocate_inputs(const ResFormerConfig& c) {
  const auto& a = c.attn;
  const int64_t N = a.num_tokens_q();
  ResFormerInputs in;
  for (int l = 0; l < c.num_layers; ++l) {
    in.q.emplace_back(std::vector<int64_t>{N, a.num_heads, a.head_dim});
    in.k.emplace_back(std::vector<int64_t>{N, a.num_kv_heads, a.head_dim});
    in.v.emplace_back(std::vector<int64_t>{N, a.num_kv_heads, a.head_dim});
    const auto ls = lambda_shape(c.granularity, a.num_kv_heads, a.head_dim);
    in.lambda_self.push_back(l == 0 ? Tensor() : Tensor(ls));
    in.lambda_first.push_back(l == 0 ? Tensor() : Tensor(ls));
  }
  return in;
}

inline void visit_inputs(const ResFormerConfig& c, ResFormerInputs& in, const TensorVisitor& f) {
  for (int l = 0; l < c.num_layers; ++l) {
    f(layer_name("q", l), in.q[l]);
    f(layer_name("k", l), in.k[l]);
    f(layer_name("v", l), in.v[l]);
    if (l >= 1) {
      f(layer_name("lambda_self", l), in.lambda_self[l]);
      f(layer_name("lambda_first", l), in.lambda_first[l]);
    }
  }
}

inline void visit_outputs(const ResFormerConfig& c, ResFormerForward& fwd, const TensorVisitor& f) {
  visit_outputs_common(c.num_layers, fwd, f);
}
inline void visit_aux(const ResFormerConfig& c, ResFormerForward& fwd, const TensorVisitor& f) {
  for (int l = 0; l < c.num_layers; ++l) f(layer_name("lse", l), fwd.lse[l]);
}

inline ResFormerForward forward(const ResFormerConfig& c, const ResFormerInputs& in) {
  const auto& a = c.attn;
  require(a.cu_seqlens_q == a.cu_seqlens_k, "resformer: cu_seqlens_k must equal cu_seqlens_q");
  require(c.granularity != LambdaGranularity::Elementwise,
          "resformer: lambda granularity is scalar or head");
  const int L = c.num_layers, d = a.head_dim;
  ResFormerForward r;
  r.out.resize(L), r.lse.resize(L), r.v_mixed.resize(L);
  for (int l = 0; l < L; ++l) {
    Tensor vm = in.v[l];
    if (l >= 1) {
      for (int64_t t = 0; t < vm.dim(0); ++t)
        for (int h = 0; h < a.num_kv_heads; ++h)
          for (int i = 0; i < d; ++i) {
            const int64_t li = lambda_index(c.granularity, h, i, d);
            vm.row(t, h)[i] = in.lambda_self[l][li] * in.v[l].row(t, h)[i] +
                              in.lambda_first[l][li] * in.v[0].row(t, h)[i];
          }
    }
    attention_forward(a, in.q[l], in.k[l], vm, r.out[l], r.lse[l]);
    r.v_mixed[l] = std::move(vm);
  }
  return r;
}

inline ResFormerInputs backward(const ResFormerConfig& c, const ResFormerInputs& in,
                                const ResFormerForward& fwd, const std::vector<Tensor>& dout) {
  const auto& a = c.attn;
  const int L = c.num_layers, d = a.head_dim;
  ResFormerInputs grad;
  grad.q.resize(L), grad.k.resize(L), grad.v.resize(L);
  grad.lambda_self.resize(L), grad.lambda_first.resize(L);
  Tensor dv0_acc = zeros_like(in.v[0]);  // Σ_{l≥1} λ_first,l · g_l
  for (int l = L - 1; l >= 0; --l) {
    Tensor g;  // g_l = ∂L/∂V'_l
    attention_backward(a, in.q[l], in.k[l], fwd.v_mixed[l], fwd.out[l], fwd.lse[l], dout[l],
                       grad.q[l], grad.k[l], g);
    if (l == 0) {
      grad.v[0] = std::move(g);
      add_to(grad.v[0], dv0_acc);
      break;
    }
    grad.v[l] = zeros_like(in.v[l]);
    grad.lambda_self[l] = zeros_like(in.lambda_self[l]);
    grad.lambda_first[l] = zeros_like(in.lambda_first[l]);
    for (int64_t t = 0; t < g.dim(0); ++t)
      for (int h = 0; h < a.num_kv_heads; ++h)
        for (int i = 0; i < d; ++i) {
          const int64_t li = lambda_index(c.granularity, h, i, d);
          const double gi = g.row(t, h)[i];
          grad.v[l].row(t, h)[i] = in.lambda_self[l][li] * gi;    // dV_l = λ_self g
          dv0_acc.row(t, h)[i] += in.lambda_first[l][li] * gi;    // dV_0 += λ_first g
          grad.lambda_self[l][li] += in.v[l].row(t, h)[i] * gi;   // dλ_self = Σ V_l ⊙ g
          grad.lambda_first[l][li] += in.v[0].row(t, h)[i] * gi;  // dλ_first = Σ V_0 ⊙ g
        }
  }
  return grad;
}

// ==== SVFormer
// =====================================================================================

struct SVFormerConfig {
  AttentionConfig attn;  // cu_seqlens_k must equal cu_seqlens_q
  int num_layers = 1;
};

struct SVFormerInputs {
  std::vector<Tensor> q, k;  // per layer
  Tensor v0;                 // layer 0's value, the only V of the stack
};

struct SVFormerForward {
  std::vector<Tensor> out, lse;
};

inline SVFormerInputs allocate_inputs(const SVFormerConfig& c) {
  const auto& a = c.attn;
  const int64_t N = a.num_tokens_q();
  SVFormerInputs in;
  for (int l = 0; l < c.num_layers; ++l) {
    in.q.emplace_back(std::vector<int64_t>{N, a.num_heads, a.head_dim});
    in.k.emplace_back(std::vector<int64_t>{N, a.num_kv_heads, a.head_dim});
  }
  in.v0 = Tensor({N, a.num_kv_heads, a.head_dim});
  return in;
}

inline void visit_inputs(const SVFormerConfig& c, SVFormerInputs& in, const TensorVisitor& f) {
  for (int l = 0; l < c.num_layers; ++l) {
    f(layer_name("q", l), in.q[l]);
    f(layer_name("k", l), in.k[l]);
    if (l == 0) f("v.0", in.v0);
  }
}

inline void visit_outputs(const SVFormerConfig& c, SVFormerForward& fwd, const TensorVisitor& f) {
  visit_outputs_common(c.num_layers, fwd, f);
}
inline void visit_aux(const SVFormerConfig& c, SVFormerForward& fwd, const TensorVisitor& f) {
  for (int l = 0; l < c.num_layers; ++l) f(layer_name("lse", l), fwd.lse[l]);
}

inline SVFormerForward forward(const SVFormerConfig& c, const SVFormerInputs& in) {
  require(c.attn.cu_seqlens_q == c.attn.cu_seqlens_k,
          "svformer: cu_seqlens_k must equal cu_seqlens_q");
  SVFormerForward r;
  r.out.resize(c.num_layers), r.lse.resize(c.num_layers);
  for (int l = 0; l < c.num_layers; ++l)
    attention_forward(c.attn, in.q[l], in.k[l], in.v0, r.out[l], r.lse[l]);
  return r;
}

inline SVFormerInputs backward(const SVFormerConfig& c, const SVFormerInputs& in,
                               const SVFormerForward& fwd, const std::vector<Tensor>& dout) {
  SVFormerInputs grad;
  grad.q.resize(c.num_layers), grad.k.resize(c.num_layers);
  grad.v0 = zeros_like(in.v0);  // dV_0 = Σ_l dV'_l
  for (int l = c.num_layers - 1; l >= 0; --l) {
    Tensor dv;
    attention_backward(c.attn, in.q[l], in.k[l], in.v0, fwd.out[l], fwd.lse[l], dout[l], grad.q[l],
                       grad.k[l], dv);
    add_to(grad.v0, dv);
  }
  return grad;
}

}  // namespace strata::reference
