/// \file
/// strata/reference/exoformer.hpp — ExoFormer, exogenous anchors (SPEC §3, decisions §7.4).
///
/// Four streams P ∈ {q, k, v, g} (heads H for q and g, H_kv for k and v). Once per stack the anchor
/// projections are normalised, Â_P = RMSNorm_{γ_anchor,P}(anchor_P). Per layer:
///   P̃ = (λ1_P ⊙ s_P1) ⊙ Â_P + (λ2_P ⊙ s_P2) ⊙ P      (s ≡ 1 for the static variant)
///   q̃ ← RMSNorm_γq(q̃), k̃ ← RMSNorm_γk(k̃)  (QK-norm after the mix), then RoPE on both;
///   O = Attention(q̃, k̃, ṽ);  out = O ⊙ σ(g̃)  (elementwise gate, Gated Attention G1).
///
/// Backward: every layer adds λ1 ⊙ s1 ⊙ ∂L/∂P̃ into a stack-wide accumulator dÂ_P; after the last
/// (lowest) layer the accumulators go once through the anchor RMSNorm (SPEC §3e).
#pragma once

#include <array>
#include <string>
#include <vector>

#include "attention.hpp"

namespace strata::reference {

inline constexpr int kExoStreams = 4;  // q, k, v, g, in this order (also the column order of s)
inline const char* exo_stream_name(int p) {
  static const char* names[kExoStreams] = {"q", "k", "v", "g"};
  return names[p];
}

struct ExoFormerConfig {
  AttentionConfig attn;  // cu_seqlens_k must equal cu_seqlens_q
  int num_layers = 1;
  bool dynamic = true;
  LambdaGranularity granularity = LambdaGranularity::Elementwise;
  double anchor_eps = 1e-6;
  double norm_eps = 1e-6;  // QK-norm
  bool rope = true;
  double rope_theta = 500000.0;

  int stream_heads(int p) const { return (p == 1 || p == 2) ? attn.num_kv_heads : attn.num_heads; }
};

struct ExoFormerInputs {
  std::array<Tensor, kExoStreams> anchor;                         // anchor_P [N, H_P, d]
  std::array<Tensor, kExoStreams> gamma_anchor;                   // [d]
  std::array<std::vector<Tensor>, kExoStreams> p;                 // P.l [N, H_P, d]
  std::array<std::vector<Tensor>, kExoStreams> lambda1, lambda2;  // [H_P, d], [H_P] or []
  std::vector<Tensor> gamma_q, gamma_k;                           // [d]
  std::vector<Tensor> s;  // [N, 8], dynamic only: q1 q2 k1 k2 v1 v2 g1 g2
};

struct ExoFormerForward {
  std::vector<Tensor> out, lse;
  // Saved: Â_P; per layer the mixed streams P̃ (pre-norm), the rotated q̃, k̃ and the
  // attention output O before the gate.
  std::array<Tensor, kExoStreams> anchor_hat;
  std::array<std::vector<Tensor>, kExoStreams> mixed;
  std::vector<Tensor> q_rot, k_rot, attn_out;
};

inline ExoFormerInputs allocate_inputs(const ExoFormerConfig& c) {
  const auto& a = c.attn;
  const int64_t N = a.num_tokens_q();
  const int d = a.head_dim;
  ExoFormerInputs in;
  for (int p = 0; p < kExoStreams; ++p) {
    in.anchor[p] = Tensor({N, c.stream_heads(p), d});
    in.gamma_anchor[p] = Tensor({d});
    for (int l = 0; l < c.num_layers; ++l) {
      in.p[p].emplace_back(std::vector<int64_t>{N, c.stream_heads(p), d});
      in.lambda1[p].emplace_back(lambda_shape(c.granularity, c.stream_heads(p), d));
      in.lambda2[p].emplace_back(lambda_shape(c.granularity, c.stream_heads(p), d));
    }
  }
  for (int l = 0; l < c.num_layers; ++l) {
    in.gamma_q.emplace_back(std::vector<int64_t>{d});
    in.gamma_k.emplace_back(std::vector<int64_t>{d});
    if (c.dynamic) in.s.emplace_back(std::vector<int64_t>{N, 2 * kExoStreams});
  }
  return in;
}

inline void visit_inputs(const ExoFormerConfig& c, ExoFormerInputs& in, const TensorVisitor& f) {
  const std::string P[kExoStreams] = {"q", "k", "v", "g"};
  for (int p = 0; p < kExoStreams; ++p) f("anchor_" + P[p], in.anchor[p]);
  for (int p = 0; p < kExoStreams; ++p) f("gamma_anchor_" + P[p], in.gamma_anchor[p]);
  for (int l = 0; l < c.num_layers; ++l) {
    for (int p = 0; p < kExoStreams; ++p) f(layer_name(P[p], l), in.p[p][l]);
    for (int p = 0; p < kExoStreams; ++p) {
      f(layer_name("lambda1_" + P[p], l), in.lambda1[p][l]);
      f(layer_name("lambda2_" + P[p], l), in.lambda2[p][l]);
    }
    f(layer_name("gamma_q", l), in.gamma_q[l]);
    f(layer_name("gamma_k", l), in.gamma_k[l]);
    if (c.dynamic) f(layer_name("s", l), in.s[l]);
  }
}

inline void visit_outputs(const ExoFormerConfig& c, ExoFormerForward& fwd, const TensorVisitor& f) {
  visit_outputs_common(c.num_layers, fwd, f);
}
inline void visit_aux(const ExoFormerConfig& c, ExoFormerForward& fwd, const TensorVisitor& f) {
  for (int l = 0; l < c.num_layers; ++l) f(layer_name("lse", l), fwd.lse[l]);
}

// The per-token scale s_P1 (which = 0) or s_P2 (which = 1) of stream p; 1 when static.
inline double exo_scale(const ExoFormerConfig& c, const ExoFormerInputs& in, int l, int p,
                        int which, int64_t t) {
  return c.dynamic ? in.s[l].at(t, 2 * p + which) : 1.0;
}

inline ExoFormerForward forward(const ExoFormerConfig& c, const ExoFormerInputs& in) {
  const auto& a = c.attn;
  require(a.cu_seqlens_q == a.cu_seqlens_k, "exoformer: cu_seqlens_k must equal cu_seqlens_q");
  const int L = c.num_layers, d = a.head_dim;
  const int64_t N = a.num_tokens_q();
  const std::vector<double> pos = token_positions(a.cu_seqlens_q);
  ExoFormerForward r;
  r.out.resize(L), r.lse.resize(L), r.q_rot.resize(L), r.k_rot.resize(L), r.attn_out.resize(L);
  for (int p = 0; p < kExoStreams; ++p) {
    r.anchor_hat[p] = rmsnorm_rows(in.anchor[p], in.gamma_anchor[p], c.anchor_eps);
    r.mixed[p].resize(L);
  }
  for (int l = 0; l < L; ++l) {
    for (int p = 0; p < kExoStreams; ++p) {
      const Tensor& A = r.anchor_hat[p];
      const Tensor& P = in.p[p][l];
      Tensor m = zeros_like(P);
      for (int64_t t = 0; t < N; ++t) {
        const double s1 = exo_scale(c, in, l, p, 0, t), s2 = exo_scale(c, in, l, p, 1, t);
        for (int h = 0; h < c.stream_heads(p); ++h)
          for (int i = 0; i < d; ++i) {
            const int64_t li = lambda_index(c.granularity, h, i, d);
            m.row(t, h)[i] = in.lambda1[p][l][li] * s1 * A.row(t, h)[i] +
                             in.lambda2[p][l][li] * s2 * P.row(t, h)[i];
          }
      }
      r.mixed[p][l] = std::move(m);
    }
    Tensor q = rmsnorm_rows(r.mixed[0][l], in.gamma_q[l], c.norm_eps);
    Tensor k = rmsnorm_rows(r.mixed[1][l], in.gamma_k[l], c.norm_eps);
    if (c.rope) {
      q = rope_rows(q, pos, c.rope_theta);
      k = rope_rows(k, pos, c.rope_theta);
    }
    attention_forward(a, q, k, r.mixed[2][l], r.attn_out[l], r.lse[l]);
    r.out[l] = zeros_like(r.attn_out[l]);
    for (int64_t e = 0; e < r.out[l].numel(); ++e)
      r.out[l][e] = r.attn_out[l][e] * sigmoid(r.mixed[3][l][e]);
    r.q_rot[l] = std::move(q);
    r.k_rot[l] = std::move(k);
  }
  return r;
}

inline ExoFormerInputs backward(const ExoFormerConfig& c, const ExoFormerInputs& in,
                                const ExoFormerForward& fwd, const std::vector<Tensor>& dout) {
  const auto& a = c.attn;
  const int L = c.num_layers, d = a.head_dim;
  const int64_t N = a.num_tokens_q();
  const std::vector<double> pos = token_positions(a.cu_seqlens_q);
  ExoFormerInputs grad;
  std::array<Tensor, kExoStreams> danchor_hat;  // stack-wide accumulators ∂L/∂Â_P
  for (int p = 0; p < kExoStreams; ++p) {
    danchor_hat[p] = zeros_like(fwd.anchor_hat[p]);
    grad.p[p].resize(L), grad.lambda1[p].resize(L), grad.lambda2[p].resize(L);
  }
  grad.gamma_q.resize(L), grad.gamma_k.resize(L);
  if (c.dynamic) grad.s.resize(L);

  for (int l = L - 1; l >= 0; --l) {
    // Gate: out = O ⊙ σ(g̃) → dO = dout ⊙ σ(g̃), dg̃ = dout ⊙ O ⊙ σ(g̃)(1 − σ(g̃)).
    std::array<Tensor, kExoStreams> dmixed;
    Tensor dO = zeros_like(fwd.attn_out[l]);
    dmixed[3] = zeros_like(fwd.mixed[3][l]);
    for (int64_t e = 0; e < dO.numel(); ++e) {
      const double sg = sigmoid(fwd.mixed[3][l][e]);
      dO[e] = dout[l][e] * sg;
      dmixed[3][e] = dout[l][e] * fwd.attn_out[l][e] * sg * (1.0 - sg);
    }
    Tensor dq, dk;
    attention_backward(a, fwd.q_rot[l], fwd.k_rot[l], fwd.mixed[2][l], fwd.attn_out[l], fwd.lse[l],
                       dO, dq, dk, dmixed[2]);
    if (c.rope) {
      dq = rope_rows_backward(dq, pos, c.rope_theta);
      dk = rope_rows_backward(dk, pos, c.rope_theta);
    }
    grad.gamma_q[l] = zeros_like(in.gamma_q[l]);
    grad.gamma_k[l] = zeros_like(in.gamma_k[l]);
    dmixed[0] =
        rmsnorm_rows_backward(fwd.mixed[0][l], in.gamma_q[l], dq, c.norm_eps, grad.gamma_q[l]);
    dmixed[1] =
        rmsnorm_rows_backward(fwd.mixed[1][l], in.gamma_k[l], dk, c.norm_eps, grad.gamma_k[l]);

    // The mix, per stream (SPEC §3e) with dy = ∂L/∂P̃.
    if (c.dynamic) grad.s[l] = zeros_like(in.s[l]);
    for (int p = 0; p < kExoStreams; ++p) {
      const Tensor& A = fwd.anchor_hat[p];
      const Tensor& P = in.p[p][l];
      const Tensor& l1 = in.lambda1[p][l];
      const Tensor& l2 = in.lambda2[p][l];
      Tensor& dP = grad.p[p][l] = zeros_like(P);
      Tensor& dl1 = grad.lambda1[p][l] = zeros_like(l1);
      Tensor& dl2 = grad.lambda2[p][l] = zeros_like(l2);
      for (int64_t t = 0; t < N; ++t) {
        const double s1 = exo_scale(c, in, l, p, 0, t), s2 = exo_scale(c, in, l, p, 1, t);
        double ds1 = 0, ds2 = 0;
        for (int h = 0; h < c.stream_heads(p); ++h)
          for (int i = 0; i < d; ++i) {
            const int64_t li = lambda_index(c.granularity, h, i, d);
            const double dy = dmixed[p].row(t, h)[i];
            const double ah = A.row(t, h)[i], pv = P.row(t, h)[i];
            dP.row(t, h)[i] = l2[li] * s2 * dy;               // dP = λ2 s2 dy
            danchor_hat[p].row(t, h)[i] += l1[li] * s1 * dy;  // dÂ_P += λ1 s1 dy
            dl1[li] += s1 * ah * dy;                          // dλ1 = Σ s1 Â dy
            dl2[li] += s2 * pv * dy;                          // dλ2 = Σ s2 P dy
            ds1 += l1[li] * ah * dy;                          // ds1 = Σ_{h,i} λ1 Â dy
            ds2 += l2[li] * pv * dy;                          // ds2 = Σ_{h,i} λ2 P dy
          }
        if (c.dynamic) {
          grad.s[l].at(t, 2 * p) = ds1;
          grad.s[l].at(t, 2 * p + 1) = ds2;
        }
      }
    }
  }
  // Anchors: one pass through their RMSNorm with the accumulated gradient of all layers.
  for (int p = 0; p < kExoStreams; ++p) {
    grad.gamma_anchor[p] = zeros_like(in.gamma_anchor[p]);
    grad.anchor[p] = rmsnorm_rows_backward(in.anchor[p], in.gamma_anchor[p], danchor_hat[p],
                                           c.anchor_eps, grad.gamma_anchor[p]);
  }
  return grad;
}

}  // namespace strata::reference
