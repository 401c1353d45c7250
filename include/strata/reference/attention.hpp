/// \file
/// strata/reference/attention.hpp — masked softmax attention, forward and backward, in fp64, on
/// packed variable-length tokens; plus the row-wise tensor helpers every method shares, and the
/// "vanilla" layer stack (independent layers) of CONTRACT.md.
///
/// Layout: q [Nq, H, d], k and v [Nk, H_kv, d]. Sequence b owns queries cu_seqlens_q[b] ..
/// cu_seqlens_q[b+1] and keys cu_seqlens_k[b] .. cu_seqlens_k[b+1]; lengths may be 0. Query head h
/// reads KV head h / (H / H_kv) (contiguous groups, as repeat_kv).
///
/// Mask (FlashAttention's bottom-right alignment, offset o = Tk − Tq): local query i sees local
/// key j iff (!causal || j ≤ i + o) && (window_left < 0 || j ≥ i + o − window_left).
/// A query that sees no key gets O = 0, LSE = −inf and contributes no gradient.
#pragma once

#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include "ops.hpp"
#include "tensor.hpp"

namespace strata::reference {

struct AttentionConfig {
  int num_heads = 1;
  int num_kv_heads = 1;
  int head_dim = 4;
  std::vector<int64_t> cu_seqlens_q{0};
  std::vector<int64_t> cu_seqlens_k{0};
  bool causal = true;
  int window_left = -1;        // −1: unlimited
  double softmax_scale = 0.0;  // 0 selects the usual 1/sqrt(head_dim)

  double scale() const {
    return softmax_scale != 0.0 ? softmax_scale : 1.0 / std::sqrt(static_cast<double>(head_dim));
  }
  int group_size() const { return num_heads / num_kv_heads; }
  int64_t num_tokens_q() const { return cu_seqlens_q.back(); }
  int64_t num_tokens_k() const { return cu_seqlens_k.back(); }
  int num_sequences() const { return static_cast<int>(cu_seqlens_q.size()) - 1; }
};

inline void validate_cu_seqlens(const std::vector<int64_t>& cu, const std::string& name) {
  require(!cu.empty() && cu[0] == 0, name + " must start with 0");
  for (size_t b = 1; b < cu.size(); ++b) require(cu[b] >= cu[b - 1], name + " must not decrease");
}

inline void validate(const AttentionConfig& c) {
  require(c.num_heads > 0 && c.num_kv_heads > 0 && c.num_heads % c.num_kv_heads == 0,
          "num_heads must be a positive multiple of num_kv_heads");
  require(c.head_dim > 0 && c.head_dim % 2 == 0, "head_dim must be positive and even");
  validate_cu_seqlens(c.cu_seqlens_q, "cu_seqlens_q");
  validate_cu_seqlens(c.cu_seqlens_k, "cu_seqlens_k");
  require(c.cu_seqlens_q.size() == c.cu_seqlens_k.size(),
          "cu_seqlens_q and cu_seqlens_k must describe the same number of sequences");
}

inline bool is_connected(int64_t i, int64_t j, int64_t offset, bool causal, int window_left) {
  return (!causal || j <= i + offset) && (window_left < 0 || j >= i + offset - window_left);
}

inline double dot(const double* a, const double* b, int n) {
  double s = 0;
  for (int i = 0; i < n; ++i) s += a[i] * b[i];
  return s;
}

// Calls visit(qi, kj, s) for every connected pair of one (sequence, head) with the score
// s = scale · q·k, where qi / kj are global token indices. Shared by forward and backward so the
// two can never disagree about the mask.
template <class Visit>
void for_each_connected_key(const AttentionConfig& c, const Tensor& q, const Tensor& k, int b,
                            int h, int64_t qi, Visit&& visit) {
  const int64_t q0 = c.cu_seqlens_q[b], k0 = c.cu_seqlens_k[b];
  const int64_t tq = c.cu_seqlens_q[b + 1] - q0, tk = c.cu_seqlens_k[b + 1] - k0;
  const int64_t offset = tk - tq;
  const int kh = h / c.group_size();
  for (int64_t j = 0; j < tk; ++j) {
    if (!is_connected(qi - q0, j, offset, c.causal, c.window_left)) continue;
    visit(k0 + j, c.scale() * dot(q.row(qi, h), k.row(k0 + j, kh), c.head_dim));
  }
}

// O = softmax(S) V per query row; lse = log Σ exp(S) (natural log), shape [Nq, H].
inline void attention_forward(const AttentionConfig& c, const Tensor& q, const Tensor& k,
                              const Tensor& v, Tensor& out, Tensor& lse) {
  validate(c);
  const int H = c.num_heads, d = c.head_dim;
  require_shape(q, {c.num_tokens_q(), H, d}, "q");
  require_shape(k, {c.num_tokens_k(), c.num_kv_heads, d}, "k");
  require_shape(v, {c.num_tokens_k(), c.num_kv_heads, d}, "v");
  out = Tensor({c.num_tokens_q(), H, d});
  lse = Tensor({c.num_tokens_q(), H});
  for (int b = 0; b < c.num_sequences(); ++b)
    for (int h = 0; h < H; ++h)
      for (int64_t qi = c.cu_seqlens_q[b]; qi < c.cu_seqlens_q[b + 1]; ++qi) {
        double m = -std::numeric_limits<double>::infinity();
        for_each_connected_key(c, q, k, b, h, qi, [&](int64_t, double s) { m = std::max(m, s); });
        if (m == -std::numeric_limits<double>::infinity()) {  // no connected key
          lse.at(qi, h) = m;
          continue;  // out stays 0
        }
        double sum = 0;
        double* o = out.row(qi, h);
        for_each_connected_key(c, q, k, b, h, qi, [&](int64_t kj, double s) {
          const double p = std::exp(s - m);
          sum += p;
          const double* vr = v.row(kj, h / c.group_size());
          for (int i = 0; i < d; ++i) o[i] += p * vr[i];
        });
        for (int i = 0; i < d; ++i) o[i] /= sum;
        lse.at(qi, h) = m + std::log(sum);
      }
}

// The standard adjoint: P = exp(S − lse), dV += Pᵀ dO, dP = dO Vᵀ, D = rowsum(dO ⊙ O),
// dS = P ⊙ (dP − D), dQ = scale · dS K, dK += scale · dSᵀ Q. dq, dk, dv are assigned (fresh).
// GQA: dK / dV of a KV head sum over the G query heads that read it.
inline void attention_backward(const AttentionConfig& c, const Tensor& q, const Tensor& k,
                               const Tensor& v, const Tensor& out, const Tensor& lse,
                               const Tensor& dout, Tensor& dq, Tensor& dk, Tensor& dv) {
  validate(c);
  const int H = c.num_heads, d = c.head_dim;
  require_shape(dout, out.shape, "dout");
  dq = zeros_like(q);
  dk = zeros_like(k);
  dv = zeros_like(v);
  for (int b = 0; b < c.num_sequences(); ++b)
    for (int h = 0; h < H; ++h)
      for (int64_t qi = c.cu_seqlens_q[b]; qi < c.cu_seqlens_q[b + 1]; ++qi) {
        const double l = lse.at(qi, h);
        if (l == -std::numeric_limits<double>::infinity()) continue;  // fully masked row
        const double* go = dout.row(qi, h);
        const double D = dot(go, out.row(qi, h), d);
        const int kh = h / c.group_size();
        for_each_connected_key(c, q, k, b, h, qi, [&](int64_t kj, double s) {
          const double p = std::exp(s - l);
          const double dp = dot(go, v.row(kj, kh), d);
          const double ds = p * (dp - D);
          double* dvr = dv.row(kj, kh);
          double* dkr = dk.row(kj, kh);
          double* dqr = dq.row(qi, h);
          const double* qr = q.row(qi, h);
          const double* kr = k.row(kj, kh);
          for (int i = 0; i < d; ++i) {
            dvr[i] += p * go[i];
            dqr[i] += c.scale() * ds * kr[i];
            dkr[i] += c.scale() * ds * qr[i];
          }
        });
      }
}

// ---- Row-wise tensor helpers shared by the methods
// -----------------------------------------------

// Position of each packed token inside its own sequence (the RoPE position).
inline std::vector<double> token_positions(const std::vector<int64_t>& cu_seqlens) {
  std::vector<double> pos(static_cast<size_t>(cu_seqlens.back()));
  for (size_t b = 0; b + 1 < cu_seqlens.size(); ++b)
    for (int64_t t = cu_seqlens[b]; t < cu_seqlens[b + 1]; ++t)
      pos[static_cast<size_t>(t)] = static_cast<double>(t - cu_seqlens[b]);
  return pos;
}

// y[t,h] = RMSNorm_γ(x[t,h]) over d with one gain [d] shared by all heads (QK-norm, anchor norm).
inline Tensor rmsnorm_rows(const Tensor& x, const Tensor& gamma, double eps) {
  Tensor y = zeros_like(x);
  const int d = static_cast<int>(x.dim(2));
  for (int64_t t = 0; t < x.dim(0); ++t)
    for (int64_t h = 0; h < x.dim(1); ++h)
      rmsnorm_forward(x.row(t, h), gamma.data.data(), d, eps, y.row(t, h));
  return y;
}

// Returns dx; accumulates dgamma.
inline Tensor rmsnorm_rows_backward(const Tensor& x, const Tensor& gamma, const Tensor& dy,
                                    double eps, Tensor& dgamma) {
  Tensor dx = zeros_like(x);
  const int d = static_cast<int>(x.dim(2));
  for (int64_t t = 0; t < x.dim(0); ++t)
    for (int64_t h = 0; h < x.dim(1); ++h)
      rmsnorm_backward(x.row(t, h), gamma.data.data(), dy.row(t, h), d, eps, dx.row(t, h),
                       dgamma.data.data());
  return dx;
}

// Head GroupNorm with per-head affine γ, β of shape [heads, d].
inline Tensor group_norm_rows(const Tensor& x, const Tensor& gamma, const Tensor& beta,
                              double eps) {
  Tensor y = zeros_like(x);
  const int d = static_cast<int>(x.dim(2));
  for (int64_t t = 0; t < x.dim(0); ++t)
    for (int64_t h = 0; h < x.dim(1); ++h)
      group_norm_forward(x.row(t, h), &gamma.data[static_cast<size_t>(h * d)],
                         &beta.data[static_cast<size_t>(h * d)], d, eps, y.row(t, h));
  return y;
}

inline Tensor group_norm_rows_backward(const Tensor& x, const Tensor& gamma, const Tensor& dy,
                                       double eps, Tensor& dgamma, Tensor& dbeta) {
  Tensor dx = zeros_like(x);
  const int d = static_cast<int>(x.dim(2));
  for (int64_t t = 0; t < x.dim(0); ++t)
    for (int64_t h = 0; h < x.dim(1); ++h) {
      const size_t o = static_cast<size_t>(h * d);
      group_norm_backward(x.row(t, h), &gamma.data[o], dy.row(t, h), d, eps, dx.row(t, h),
                          &dgamma.data[o], &dbeta.data[o]);
    }
  return dx;
}

inline Tensor rope_rows(const Tensor& x, const std::vector<double>& pos, double theta) {
  Tensor y = zeros_like(x);
  const int d = static_cast<int>(x.dim(2));
  for (int64_t t = 0; t < x.dim(0); ++t)
    for (int64_t h = 0; h < x.dim(1); ++h)
      rope_forward(x.row(t, h), d, pos[static_cast<size_t>(t)], theta, y.row(t, h));
  return y;
}

inline Tensor rope_rows_backward(const Tensor& dy, const std::vector<double>& pos, double theta) {
  Tensor dx = zeros_like(dy);
  const int d = static_cast<int>(dy.dim(2));
  for (int64_t t = 0; t < dy.dim(0); ++t)
    for (int64_t h = 0; h < dy.dim(1); ++h)
      rope_backward(dy.row(t, h), d, pos[static_cast<size_t>(t)], theta, dx.row(t, h));
  return dx;
}

inline void add_to(Tensor& acc, const Tensor& x) {
  require(acc.shape == x.shape, "add_to: shape mismatch");
  for (int64_t i = 0; i < acc.numel(); ++i) acc[i] += x[i];
}

// Per-layer tensor names of CONTRACT.md: "q.0", "q.1", ...
inline std::string layer_name(const std::string& base, int l) {
  return base + "." + std::to_string(l);
}

// The token-local steps several methods share (CONTRACT.md "Config keys common to the token-local
// steps").
struct TokenLocalConfig {
  bool qk_norm = true;
  bool rope = true;
  double rope_theta = 10000.0;
  double norm_eps = 1e-6;
};

// Granularity of a learnable mixing coefficient λ (ResFormer, ExoFormer).
enum class LambdaGranularity { Elementwise, Head, Scalar };

inline const char* to_string(LambdaGranularity g) {
  switch (g) {
    case LambdaGranularity::Elementwise:
      return "elementwise";
    case LambdaGranularity::Head:
      return "head";
    case LambdaGranularity::Scalar:
      return "scalar";
  }
  return "?";
}

// λ's shape for a stream with `heads` heads: [heads, d], [heads] or [] (0-d).
inline std::vector<int64_t> lambda_shape(LambdaGranularity g, int heads, int d) {
  switch (g) {
    case LambdaGranularity::Elementwise:
      return {heads, d};
    case LambdaGranularity::Head:
      return {heads};
    case LambdaGranularity::Scalar:
      return {};
  }
  return {};
}

// Index of λ's entry that multiplies element (head h, dim i).
inline int64_t lambda_index(LambdaGranularity g, int h, int i, int d) {
  switch (g) {
    case LambdaGranularity::Elementwise:
      return static_cast<int64_t>(h) * d + i;
    case LambdaGranularity::Head:
      return h;
    case LambdaGranularity::Scalar:
      return 0;
  }
  return 0;
}

// Visitors: every method offers visit_inputs(cfg, inputs, f), visit_outputs(cfg, fwd, f) and
// visit_aux(cfg, fwd, f), calling f(name, tensor) in CONTRACT.md names, so that generic code (the
// dump tool, the finite-difference tests) can walk any method. The same visit_inputs applied to the
// gradient struct (same type as the inputs) names grad.X.
using TensorVisitor = std::function<void(const std::string&, Tensor&)>;

// ==== vanilla: L independent attention layers
// ======================================================

struct VanillaConfig {
  AttentionConfig attn;
  int num_layers = 1;
};

struct VanillaInputs {
  std::vector<Tensor> q, k, v;  // per layer: [Nq,H,d], [Nk,H_kv,d], [Nk,H_kv,d]
};

struct VanillaForward {
  std::vector<Tensor> out, lse;
};

inline VanillaInputs allocate_inputs(const VanillaConfig& c) {
  const auto& a = c.attn;
  VanillaInputs in;
  for (int l = 0; l < c.num_layers; ++l) {
    in.q.emplace_back(std::vector<int64_t>{a.num_tokens_q(), a.num_heads, a.head_dim});
    in.k.emplace_back(std::vector<int64_t>{a.num_tokens_k(), a.num_kv_heads, a.head_dim});
    in.v.emplace_back(std::vector<int64_t>{a.num_tokens_k(), a.num_kv_heads, a.head_dim});
  }
  return in;
}

inline void visit_inputs(const VanillaConfig& c, VanillaInputs& in, const TensorVisitor& f) {
  for (int l = 0; l < c.num_layers; ++l) {
    f(layer_name("q", l), in.q[l]);
    f(layer_name("k", l), in.k[l]);
    f(layer_name("v", l), in.v[l]);
  }
}

inline VanillaForward forward(const VanillaConfig& c, const VanillaInputs& in) {
  VanillaForward r;
  r.out.resize(c.num_layers);
  r.lse.resize(c.num_layers);
  for (int l = 0; l < c.num_layers; ++l)
    attention_forward(c.attn, in.q[l], in.k[l], in.v[l], r.out[l], r.lse[l]);
  return r;
}

inline VanillaInputs backward(const VanillaConfig& c, const VanillaInputs& in,
                              const VanillaForward& fwd, const std::vector<Tensor>& dout) {
  VanillaInputs g;
  g.q.resize(c.num_layers);
  g.k.resize(c.num_layers);
  g.v.resize(c.num_layers);
  for (int l = c.num_layers - 1; l >= 0; --l)
    attention_backward(c.attn, in.q[l], in.k[l], in.v[l], fwd.out[l], fwd.lse[l], dout[l], g.q[l],
                       g.k[l], g.v[l]);
  return g;
}

// out.l and lse.l are common to every method's forward struct.
template <class Forward>
void visit_outputs_common(int num_layers, Forward& fwd, const TensorVisitor& f) {
  for (int l = 0; l < num_layers; ++l) f(layer_name("out", l), fwd.out[l]);
}

inline void visit_outputs(const VanillaConfig& c, VanillaForward& fwd, const TensorVisitor& f) {
  visit_outputs_common(c.num_layers, fwd, f);
}
inline void visit_aux(const VanillaConfig& c, VanillaForward& fwd, const TensorVisitor& f) {
  for (int l = 0; l < c.num_layers; ++l) f(layer_name("lse", l), fwd.lse[l]);
}

}  // namespace strata::reference
