/// \file
/// strata/reference/gated.hpp — Gated Attention, output gate at G1 (SPEC §5, decisions §7.6).
///
/// Qwen3 order: q ← RMSNorm_γq(q), k ← RMSNorm_γk(k) (if qk_norm, before RoPE); q, k ← RoPE;
/// O = Attention(q, k, v); out = O ⊙ σ(g), g [N,H,d] (elementwise) or [N,H] (headwise, σ(g[h])
/// broadcast over d). Layers are independent.
#pragma once

#include <string>
#include <vector>

#include "attention.hpp"

namespace strata::reference {

enum class GateKind { Elementwise, Headwise };

inline const char* to_string(GateKind g) {
  return g == GateKind::Elementwise ? "elementwise" : "headwise";
}

struct GatedConfig {
  AttentionConfig attn;  // cu_seqlens_k must equal cu_seqlens_q
  int num_layers = 1;
  GateKind gate = GateKind::Elementwise;
  TokenLocalConfig local;
};

struct GatedInputs {
  std::vector<Tensor> q, k, v, g;        // g: [N,H,d] or [N,H]
  std::vector<Tensor> gamma_q, gamma_k;  // [d], only when qk_norm
};

struct GatedForward {
  std::vector<Tensor> out, lse;
  std::vector<Tensor> q_rot, k_rot, attn_out;  // saved for backward
};

inline GatedInputs allocate_inputs(const GatedConfig& c) {
  const auto& a = c.attn;
  const int64_t N = a.num_tokens_q();
  const int d = a.head_dim;
  GatedInputs in;
  for (int l = 0; l < c.num_layers; ++l) {
    in.q.emplace_back(std::vector<int64_t>{N, a.num_heads, d});
    in.k.emplace_back(std::vector<int64_t>{N, a.num_kv_heads, d});
    in.v.emplace_back(std::vector<int64_t>{N, a.num_kv_heads, d});
    in.g.push_back(c.gate == GateKind::Elementwise ? Tensor({N, a.num_heads, d})
                                                   : Tensor({N, a.num_heads}));
    if (c.local.qk_norm) {
      in.gamma_q.emplace_back(std::vector<int64_t>{d});
      in.gamma_k.emplace_back(std::vector<int64_t>{d});
    }
  }
  return in;
}

inline void visit_inputs(const GatedConfig& c, GatedInputs& in, const TensorVisitor& f) {
  for (int l = 0; l < c.num_layers; ++l) {
    f(layer_name("q", l), in.q[l]);
    f(layer_name("k", l), in.k[l]);
    f(layer_name("v", l), in.v[l]);
    f(layer_name("g", l), in.g[l]);
    if (c.local.qk_norm) {
      f(layer_name("gamma_q", l), in.gamma_q[l]);
      f(layer_name("gamma_k", l), in.gamma_k[l]);
    }
  }
}

inline void visit_outputs(const GatedConfig& c, GatedForward& fwd, const TensorVisitor& f) {
  visit_outputs_common(c.num_layers, fwd, f);
}
inline void visit_aux(const GatedConfig& c, GatedForward& fwd, const TensorVisitor& f) {
  for (int l = 0; l < c.num_layers; ++l) f(layer_name("lse", l), fwd.lse[l]);
}

// Index into g of the gate logit that multiplies element e of an [N,H,d] tensor.
inline int64_t gate_index(GateKind kind, int64_t e, int d) {
  return kind == GateKind::Elementwise ? e : e / d;
}

inline GatedForward forward(const GatedConfig& c, const GatedInputs& in) {
  const auto& a = c.attn;
  require(a.cu_seqlens_q == a.cu_seqlens_k, "gated: cu_seqlens_k must equal cu_seqlens_q");
  const int L = c.num_layers, d = a.head_dim;
  const std::vector<double> pos = token_positions(a.cu_seqlens_q);
  GatedForward r;
  for (auto* v : {&r.out, &r.lse, &r.q_rot, &r.k_rot, &r.attn_out}) v->resize(L);
  for (int l = 0; l < L; ++l) {
    Tensor q = in.q[l], k = in.k[l];
    if (c.local.qk_norm) {
      q = rmsnorm_rows(q, in.gamma_q[l], c.local.norm_eps);
      k = rmsnorm_rows(k, in.gamma_k[l], c.local.norm_eps);
    }
    if (c.local.rope) {
      q = rope_rows(q, pos, c.local.rope_theta);
      k = rope_rows(k, pos, c.local.rope_theta);
    }
    attention_forward(a, q, k, in.v[l], r.attn_out[l], r.lse[l]);
    r.out[l] = zeros_like(r.attn_out[l]);
    for (int64_t e = 0; e < r.out[l].numel(); ++e)
      r.out[l][e] = r.attn_out[l][e] * sigmoid(in.g[l][gate_index(c.gate, e, d)]);
    r.q_rot[l] = std::move(q);
    r.k_rot[l] = std::move(k);
  }
  return r;
}

inline GatedInputs backward(const GatedConfig& c, const GatedInputs& in, const GatedForward& fwd,
                            const std::vector<Tensor>& dout) {
  const auto& a = c.attn;
  const int L = c.num_layers, d = a.head_dim;
  const std::vector<double> pos = token_positions(a.cu_seqlens_q);
  GatedInputs grad;
  for (auto* v : {&grad.q, &grad.k, &grad.v, &grad.g}) v->resize(L);
  if (c.local.qk_norm) grad.gamma_q.resize(L), grad.gamma_k.resize(L);
  for (int l = L - 1; l >= 0; --l) {
    // dO = dout ⊙ σ(g);  dg = dout ⊙ O ⊙ σ(g)(1 − σ(g))  (headwise: summed over d).
    Tensor dO = zeros_like(fwd.attn_out[l]);
    grad.g[l] = zeros_like(in.g[l]);
    for (int64_t e = 0; e < dO.numel(); ++e) {
      const int64_t gi = gate_index(c.gate, e, d);
      const double sg = sigmoid(in.g[l][gi]);
      dO[e] = dout[l][e] * sg;
      grad.g[l][gi] += dout[l][e] * fwd.attn_out[l][e] * sg * (1.0 - sg);
    }
    Tensor dq, dk;
    attention_backward(a, fwd.q_rot[l], fwd.k_rot[l], in.v[l], fwd.attn_out[l], fwd.lse[l], dO, dq,
                       dk, grad.v[l]);
    if (c.local.rope) {
      dq = rope_rows_backward(dq, pos, c.local.rope_theta);
      dk = rope_rows_backward(dk, pos, c.local.rope_theta);
    }
    if (c.local.qk_norm) {
      grad.gamma_q[l] = zeros_like(in.gamma_q[l]);
      grad.gamma_k[l] = zeros_like(in.gamma_k[l]);
      dq = rmsnorm_rows_backward(in.q[l], in.gamma_q[l], dq, c.local.norm_eps, grad.gamma_q[l]);
      dk = rmsnorm_rows_backward(in.k[l], in.gamma_k[l], dk, c.local.norm_eps, grad.gamma_k[l]);
    }
    grad.q[l] = std::move(dq);
    grad.k[l] = std::move(dk);
  }
  return grad;
}

}  // namespace strata::reference
