/// \file
/// strata/reference/mea.hpp — MEA: head-level linear composition (HLC) + head GroupNorm (SPEC §4,
/// decisions §7.5).
///
/// K_c, V_c have H_c component heads; per layer A^K, A^V ∈ R^{H_c×H_kv} compose the H_kv heads the
/// attention sees: K'[h] = Σ_c A^K[c,h] K_c[c], V'[h] = Σ_c A^V[c,h] V_c[c]. Queries are untouched.
/// Head GroupNorm (per token and head, over d, affine [heads, d]) sits either on K' and V'
/// (site kv, before RoPE) or on each head's attention output (site output). Then RoPE on q and K',
/// O = Attention(q, K', V'), out = O (or GN_o(O)). Layers are independent.
#pragma once

#include <string>
#include <vector>

#include "attention.hpp"

namespace strata::reference {

enum class MeaSite { KeyValue, Output };

inline const char* to_string(MeaSite s) {
  return s == MeaSite::KeyValue ? "kv" : "output";
}

struct MeaConfig {
  AttentionConfig attn;  // num_kv_heads = composite heads; cu_seqlens_k must equal cu_seqlens_q
  int num_layers = 1;
  int num_component_heads = 1;  // H_c
  MeaSite site = MeaSite::KeyValue;
  double gn_eps = 1e-5;
  bool rope = true;
  double rope_theta = 10000.0;
};

struct MeaInputs {
  std::vector<Tensor> q, kc, vc;  // [N,H,d], [N,H_c,d], [N,H_c,d]
  std::vector<Tensor> a_k, a_v;   // [H_c, H_kv]
  std::vector<Tensor> gn_gamma_k, gn_beta_k, gn_gamma_v, gn_beta_v;  // site kv: [H_kv, d]
  std::vector<Tensor> gn_gamma_o, gn_beta_o;                         // site output: [H, d]
};

struct MeaForward {
  std::vector<Tensor> out, lse;
  // Saved: the composed K', V' (GN inputs at site kv), the rotated query and key and the value
  // the attention read, and the attention output O (GN input at site output).
  std::vector<Tensor> k_mix, v_mix, q_rot, k_attn, v_attn, attn_out;
};

inline MeaInputs allocate_inputs(const MeaConfig& c) {
  const auto& a = c.attn;
  const int64_t N = a.num_tokens_q();
  const int d = a.head_dim, Hc = c.num_component_heads;
  MeaInputs in;
  for (int l = 0; l < c.num_layers; ++l) {
    in.q.emplace_back(std::vector<int64_t>{N, a.num_heads, d});
    in.kc.emplace_back(std::vector<int64_t>{N, Hc, d});
    in.vc.emplace_back(std::vector<int64_t>{N, Hc, d});
    in.a_k.emplace_back(std::vector<int64_t>{Hc, a.num_kv_heads});
    in.a_v.emplace_back(std::vector<int64_t>{Hc, a.num_kv_heads});
    if (c.site == MeaSite::KeyValue) {
      for (auto* v : {&in.gn_gamma_k, &in.gn_beta_k, &in.gn_gamma_v, &in.gn_beta_v})
        v->emplace_back(std::vector<int64_t>{a.num_kv_heads, d});
    } else {
      for (auto* v : {&in.gn_gamma_o, &in.gn_beta_o})
        v->emplace_back(std::vector<int64_t>{a.num_heads, d});
    }
  }
  return in;
}

inline void visit_inputs(const MeaConfig& c, MeaInputs& in, const TensorVisitor& f) {
  for (int l = 0; l < c.num_layers; ++l) {
    f(layer_name("q", l), in.q[l]);
    f(layer_name("kc", l), in.kc[l]);
    f(layer_name("vc", l), in.vc[l]);
    f(layer_name("a_k", l), in.a_k[l]);
    f(layer_name("a_v", l), in.a_v[l]);
    if (c.site == MeaSite::KeyValue) {
      f(layer_name("gn_gamma_k", l), in.gn_gamma_k[l]);
      f(layer_name("gn_beta_k", l), in.gn_beta_k[l]);
      f(layer_name("gn_gamma_v", l), in.gn_gamma_v[l]);
      f(layer_name("gn_beta_v", l), in.gn_beta_v[l]);
    } else {
      f(layer_name("gn_gamma_o", l), in.gn_gamma_o[l]);
      f(layer_name("gn_beta_o", l), in.gn_beta_o[l]);
    }
  }
}

inline void visit_outputs(const MeaConfig& c, MeaForward& fwd, const TensorVisitor& f) {
  visit_outputs_common(c.num_layers, fwd, f);
}
inline void visit_aux(const MeaConfig& c, MeaForward& fwd, const TensorVisitor& f) {
  for (int l = 0; l < c.num_layers; ++l) f(layer_name("lse", l), fwd.lse[l]);
}

// X'[t,h] = Σ_c A[c,h] X_c[t,c]
inline Tensor hlc_forward(const Tensor& xc, const Tensor& A) {
  const int64_t N = xc.dim(0), Hc = xc.dim(1), d = xc.dim(2), H = A.dim(1);
  Tensor y({N, H, d});
  for (int64_t t = 0; t < N; ++t)
    for (int64_t h = 0; h < H; ++h)
      for (int64_t c = 0; c < Hc; ++c)
        for (int64_t i = 0; i < d; ++i) y.row(t, h)[i] += A.at(c, h) * xc.row(t, c)[i];
  return y;
}

// dX_c[c] = Σ_h A[c,h] dX'[h];  dA[c,h] = Σ_{t,i} X_c[t,c,i] dX'[t,h,i]   (SPEC §4e)
inline void hlc_backward(const Tensor& xc, const Tensor& A, const Tensor& dy, Tensor& dxc,
                         Tensor& dA) {
  const int64_t N = xc.dim(0), Hc = xc.dim(1), d = xc.dim(2), H = A.dim(1);
  dxc = zeros_like(xc);
  dA = zeros_like(A);
  for (int64_t t = 0; t < N; ++t)
    for (int64_t h = 0; h < H; ++h)
      for (int64_t c = 0; c < Hc; ++c)
        for (int64_t i = 0; i < d; ++i) {
          dxc.row(t, c)[i] += A.at(c, h) * dy.row(t, h)[i];
          dA.at(c, h) += xc.row(t, c)[i] * dy.row(t, h)[i];
        }
}

inline MeaForward forward(const MeaConfig& c, const MeaInputs& in) {
  const auto& a = c.attn;
  require(a.cu_seqlens_q == a.cu_seqlens_k, "mea: cu_seqlens_k must equal cu_seqlens_q");
  const int L = c.num_layers;
  const std::vector<double> pos = token_positions(a.cu_seqlens_q);
  MeaForward r;
  for (auto* v : {&r.out, &r.lse, &r.k_mix, &r.v_mix, &r.q_rot, &r.k_attn, &r.v_attn, &r.attn_out})
    v->resize(L);
  for (int l = 0; l < L; ++l) {
    r.k_mix[l] = hlc_forward(in.kc[l], in.a_k[l]);
    r.v_mix[l] = hlc_forward(in.vc[l], in.a_v[l]);
    Tensor k = r.k_mix[l], v = r.v_mix[l];
    if (c.site == MeaSite::KeyValue) {
      k = group_norm_rows(r.k_mix[l], in.gn_gamma_k[l], in.gn_beta_k[l], c.gn_eps);
      v = group_norm_rows(r.v_mix[l], in.gn_gamma_v[l], in.gn_beta_v[l], c.gn_eps);
    }
    Tensor q = in.q[l];
    if (c.rope) {  // after GN: the norm sees the composed, unrotated key
      q = rope_rows(q, pos, c.rope_theta);
      k = rope_rows(k, pos, c.rope_theta);
    }
    attention_forward(a, q, k, v, r.attn_out[l], r.lse[l]);
    r.out[l] = c.site == MeaSite::Output
                   ? group_norm_rows(r.attn_out[l], in.gn_gamma_o[l], in.gn_beta_o[l], c.gn_eps)
                   : r.attn_out[l];
    r.q_rot[l] = std::move(q);
    r.k_attn[l] = std::move(k);
    r.v_attn[l] = std::move(v);
  }
  return r;
}

inline MeaInputs backward(const MeaConfig& c, const MeaInputs& in, const MeaForward& fwd,
                          const std::vector<Tensor>& dout) {
  const auto& a = c.attn;
  const int L = c.num_layers;
  const std::vector<double> pos = token_positions(a.cu_seqlens_q);
  MeaInputs grad;
  for (auto* v : {&grad.q, &grad.kc, &grad.vc, &grad.a_k, &grad.a_v}) v->resize(L);
  if (c.site == MeaSite::KeyValue)
    for (auto* v : {&grad.gn_gamma_k, &grad.gn_beta_k, &grad.gn_gamma_v, &grad.gn_beta_v})
      v->resize(L);
  else
    for (auto* v : {&grad.gn_gamma_o, &grad.gn_beta_o}) v->resize(L);

  for (int l = L - 1; l >= 0; --l) {
    Tensor dO = dout[l];
    if (c.site == MeaSite::Output) {
      grad.gn_gamma_o[l] = zeros_like(in.gn_gamma_o[l]);
      grad.gn_beta_o[l] = zeros_like(in.gn_beta_o[l]);
      dO = group_norm_rows_backward(fwd.attn_out[l], in.gn_gamma_o[l], dout[l], c.gn_eps,
                                    grad.gn_gamma_o[l], grad.gn_beta_o[l]);
    }
    Tensor dq, dk, dv;
    attention_backward(a, fwd.q_rot[l], fwd.k_attn[l], fwd.v_attn[l], fwd.attn_out[l], fwd.lse[l],
                       dO, dq, dk, dv);
    if (c.rope) {
      dq = rope_rows_backward(dq, pos, c.rope_theta);
      dk = rope_rows_backward(dk, pos, c.rope_theta);
    }
    if (c.site == MeaSite::KeyValue) {
      grad.gn_gamma_k[l] = zeros_like(in.gn_gamma_k[l]);
      grad.gn_beta_k[l] = zeros_like(in.gn_beta_k[l]);
      grad.gn_gamma_v[l] = zeros_like(in.gn_gamma_v[l]);
      grad.gn_beta_v[l] = zeros_like(in.gn_beta_v[l]);
      dk = group_norm_rows_backward(fwd.k_mix[l], in.gn_gamma_k[l], dk, c.gn_eps,
                                    grad.gn_gamma_k[l], grad.gn_beta_k[l]);
      dv = group_norm_rows_backward(fwd.v_mix[l], in.gn_gamma_v[l], dv, c.gn_eps,
                                    grad.gn_gamma_v[l], grad.gn_beta_v[l]);
    }
    hlc_backward(in.kc[l], in.a_k[l], dk, grad.kc[l], grad.a_k[l]);
    hlc_backward(in.vc[l], in.a_v[l], dv, grad.vc[l], grad.a_v[l]);
    grad.q[l] = std::move(dq);
  }
  return grad;
}

}  // namespace strata::reference
