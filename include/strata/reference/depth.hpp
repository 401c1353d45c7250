/// \file
/// strata/reference/depth.hpp — Depth-Attention (SPEC §1, decisions §7.2), layer stack, fp64.
///
/// Layer l: q ← RMSNorm_γq(q) (if qk_norm, before RoPE); q, k ← RoPE; k̂ ← RMSNorm_γk(k) (if
/// qk_norm, after RoPE, as the SDPA path of the official code). The depth query is the mean of the
/// G query heads of each KV group (post norm and RoPE): q̄[g] = mean_i q[g·G+i]. Candidates: the
/// source layers j ∈ S_l ascending (κ = k̂_j, ν = v̂_j — the *mixed* value j stored), then self last
/// (κ = k̂_l, ν = raw v_l). α = softmax(q̄·κ/sqrt d), v̂_l = Σ α_c ν_c, and
/// out.l = Attention(q, k̂_l, v̂_l).
///
/// Backward runs layers L−1 … 0 with stack-wide accumulators dk̂_j, dv̂_j: a layer adds its depth
/// gradients into the accumulators of its sources (j < l), which are therefore complete when layer
/// j's own turn comes (SPEC §1e).
#pragma once

#include <algorithm>
#include <set>
#include <vector>

#include "attention.hpp"

namespace strata::reference {

// S_l = { j < l : j mod stride == 0 } ∪ { l−r, …, l−1 } (j ≥ 0), ascending. stride ≤ 0 disables
// the stride part (only the recent window remains). Layer 0 has no source.
inline std::vector<std::vector<int>> depth_sources(int num_layers, int stride, int recent_window) {
  std::vector<std::vector<int>> s(static_cast<size_t>(num_layers));
  for (int l = 0; l < num_layers; ++l) {
    std::set<int> js;
    if (stride > 0)
      for (int j = 0; j < l; j += stride) js.insert(j);
    for (int j = std::max(0, l - recent_window); j < l; ++j) js.insert(j);
    s[static_cast<size_t>(l)].assign(js.begin(), js.end());
  }
  return s;
}

// Looped Transformers (SPEC §1f, §7.2): every (iteration, layer) application is a distinct depth
// slot l = iteration · layers_per_iteration + layer, with the same stride rule on the flattened
// index. Explicit per-slot lists can also be passed directly to DepthConfig::sources.
inline std::vector<std::vector<int>> looped_depth_sources(int iterations, int layers_per_iteration,
                                                          int stride, int recent_window) {
  return depth_sources(iterations * layers_per_iteration, stride, recent_window);
}

inline void validate_depth_sources(const std::vector<std::vector<int>>& sources, int num_layers) {
  require(static_cast<int>(sources.size()) == num_layers,
          "depth: sources needs one list per layer");
  for (int l = 0; l < num_layers; ++l) {
    const auto& s = sources[static_cast<size_t>(l)];
    for (size_t c = 0; c < s.size(); ++c) {
      require(s[c] >= 0 && s[c] < l, "depth: a source of layer l must be an earlier layer j < l");
      require(c == 0 || s[c] > s[c - 1], "depth: sources must be strictly ascending");
    }
  }
}

struct DepthConfig {
  AttentionConfig attn;  // cu_seqlens_k must equal cu_seqlens_q
  int num_layers = 1;
  std::vector<std::vector<int>> sources;  // sources[l]: ascending earlier layers
  int stride = 0, recent_window = 0;      // informational (how `sources` was built)
  TokenLocalConfig local;
};

struct DepthInputs {
  std::vector<Tensor> q, k, v;           // [N,H,d], [N,H_kv,d], [N,H_kv,d]
  std::vector<Tensor> gamma_q, gamma_k;  // [d] each, only when qk_norm
};

struct DepthForward {
  std::vector<Tensor> out, lse, khat, vhat;
  // Saved for backward: the query after norm and RoPE (what attention and q̄ consume), the key
  // after RoPE (the k-norm input) and the depth weights α [N, H_kv, n_cand].
  std::vector<Tensor> q_rot, k_rot, alpha;
};

inline DepthInputs allocate_inputs(const DepthConfig& c) {
  const auto& a = c.attn;
  const int64_t N = a.num_tokens_q();
  DepthInputs in;
  for (int l = 0; l < c.num_layers; ++l) {
    in.q.emplace_back(std::vector<int64_t>{N, a.num_heads, a.head_dim});
    in.k.emplace_back(std::vector<int64_t>{N, a.num_kv_heads, a.head_dim});
    in.v.emplace_back(std::vector<int64_t>{N, a.num_kv_heads, a.head_dim});
    if (c.local.qk_norm) {
      in.gamma_q.emplace_back(std::vector<int64_t>{a.head_dim});
      in.gamma_k.emplace_back(std::vector<int64_t>{a.head_dim});
    }
  }
  return in;
}

inline void visit_inputs(const DepthConfig& c, DepthInputs& in, const TensorVisitor& f) {
  for (int l = 0; l < c.num_layers; ++l) {
    f(layer_name("q", l), in.q[l]);
    f(layer_name("k", l), in.k[l]);
    f(layer_name("v", l), in.v[l]);
    if (c.local.qk_norm) {
      f(layer_name("gamma_q", l), in.gamma_q[l]);
      f(layer_name("gamma_k", l), in.gamma_k[l]);
    }
  }
}

inline void visit_outputs(const DepthConfig& c, DepthForward& fwd, const TensorVisitor& f) {
  visit_outputs_common(c.num_layers, fwd, f);
}

inline void visit_aux(const DepthConfig& c, DepthForward& fwd, const TensorVisitor& f) {
  for (int l = 0; l < c.num_layers; ++l) {
    f(layer_name("khat", l), fwd.khat[l]);
    f(layer_name("vhat", l), fwd.vhat[l]);
    f(layer_name("lse", l), fwd.lse[l]);
  }
}

// q̄[t,g] = (1/G) Σ_{i<G} q[t, g·G+i]
inline Tensor depth_group_mean_query(const Tensor& q, int num_kv_heads) {
  const int64_t N = q.dim(0), H = q.dim(1), d = q.dim(2);
  const int64_t G = H / num_kv_heads;
  Tensor qbar({N, num_kv_heads, d});
  for (int64_t t = 0; t < N; ++t)
    for (int64_t g = 0; g < num_kv_heads; ++g)
      for (int64_t i = 0; i < G; ++i)
        for (int64_t e = 0; e < d; ++e) qbar.row(t, g)[e] += q.row(t, g * G + i)[e] / G;
  return qbar;
}

inline DepthForward forward(const DepthConfig& c, const DepthInputs& in) {
  const auto& a = c.attn;
  require(a.cu_seqlens_q == a.cu_seqlens_k, "depth: cu_seqlens_k must equal cu_seqlens_q");
  validate_depth_sources(c.sources, c.num_layers);
  const int L = c.num_layers, d = a.head_dim, Hkv = a.num_kv_heads;
  const int64_t N = a.num_tokens_q();
  const std::vector<double> pos = token_positions(a.cu_seqlens_q);
  DepthForward r;
  r.out.resize(L), r.lse.resize(L), r.khat.resize(L), r.vhat.resize(L);
  r.q_rot.resize(L), r.k_rot.resize(L), r.alpha.resize(L);
  for (int l = 0; l < L; ++l) {
    // Token-local steps, in the order of the official SDPA path.
    Tensor q = c.local.qk_norm ? rmsnorm_rows(in.q[l], in.gamma_q[l], c.local.norm_eps) : in.q[l];
    Tensor k = in.k[l];
    if (c.local.rope) {
      q = rope_rows(q, pos, c.local.rope_theta);
      k = rope_rows(k, pos, c.local.rope_theta);
    }
    r.khat[l] = c.local.qk_norm ? rmsnorm_rows(k, in.gamma_k[l], c.local.norm_eps) : k;

    // Depth softmax over (sources ascending, self last), per (token, KV head).
    const auto& src = c.sources[static_cast<size_t>(l)];
    const int n_cand = static_cast<int>(src.size()) + 1;
    const Tensor qbar = depth_group_mean_query(q, Hkv);
    r.vhat[l] = Tensor({N, Hkv, d});
    r.alpha[l] = Tensor({N, Hkv, n_cand});
    std::vector<const double*> kappa(static_cast<size_t>(n_cand)), nu(static_cast<size_t>(n_cand));
    for (int64_t t = 0; t < N; ++t)
      for (int g = 0; g < Hkv; ++g) {
        for (int s = 0; s + 1 < n_cand; ++s) {
          kappa[s] = r.khat[src[s]].row(t, g);
          nu[s] = r.vhat[src[s]].row(t, g);
        }
        kappa[n_cand - 1] = r.khat[l].row(t, g);
        nu[n_cand - 1] = in.v[l].row(t, g);
        depth_softmax_forward(qbar.row(t, g), d, n_cand, kappa.data(), nu.data(),
                              r.alpha[l].row(t, g), r.vhat[l].row(t, g));
      }

    attention_forward(a, q, r.khat[l], r.vhat[l], r.out[l], r.lse[l]);
    r.q_rot[l] = std::move(q);
    r.k_rot[l] = std::move(k);
  }
  return r;
}

inline DepthInputs backward(const DepthConfig& c, const DepthInputs& in, const DepthForward& fwd,
                            const std::vector<Tensor>& dout) {
  const auto& a = c.attn;
  const int L = c.num_layers, d = a.head_dim, Hkv = a.num_kv_heads, G = a.group_size();
  const int64_t N = a.num_tokens_q();
  const std::vector<double> pos = token_positions(a.cu_seqlens_q);
  DepthInputs grad;
  grad.q.resize(L), grad.k.resize(L), grad.v.resize(L);
  if (c.local.qk_norm) grad.gamma_q.resize(L), grad.gamma_k.resize(L);

  // Cross-layer accumulators ∂L/∂k̂_j and ∂L/∂v̂_j, filled by the later layers that read layer j.
  std::vector<Tensor> dkhat_acc, dvhat_acc;
  for (int l = 0; l < L; ++l) {
    dkhat_acc.push_back(zeros_like(fwd.khat[l]));
    dvhat_acc.push_back(zeros_like(fwd.vhat[l]));
  }

  for (int l = L - 1; l >= 0; --l) {
    // Sequence attention: dq (post-RoPE q), dk̂_l, dv̂_l.
    Tensor dq, dkhat, dvhat;
    attention_backward(a, fwd.q_rot[l], fwd.khat[l], fwd.vhat[l], fwd.out[l], fwd.lse[l], dout[l],
                       dq, dkhat, dvhat);
    // Every later layer that mixed k̂_l / v̂_l has already run: the accumulators are complete.
    add_to(dkhat, dkhat_acc[l]);
    add_to(dvhat, dvhat_acc[l]);  // g = ∂L/∂v̂_l

    // Depth softmax backward. Source candidates send their gradients to the accumulators of
    // layer j; the self candidate to this layer's dk̂_l and raw dv_l.
    const auto& src = c.sources[static_cast<size_t>(l)];
    const int n_cand = static_cast<int>(src.size()) + 1;
    const Tensor qbar = depth_group_mean_query(fwd.q_rot[l], Hkv);
    grad.v[l] = zeros_like(in.v[l]);
    std::vector<const double*> kappa(static_cast<size_t>(n_cand)), nu(static_cast<size_t>(n_cand));
    std::vector<double*> dkappa(static_cast<size_t>(n_cand)), dnu(static_cast<size_t>(n_cand));
    std::vector<double> dqbar(static_cast<size_t>(d));
    for (int64_t t = 0; t < N; ++t)
      for (int g = 0; g < Hkv; ++g) {
        for (int s = 0; s + 1 < n_cand; ++s) {
          kappa[s] = fwd.khat[src[s]].row(t, g);
          nu[s] = fwd.vhat[src[s]].row(t, g);
          dkappa[s] = dkhat_acc[src[s]].row(t, g);
          dnu[s] = dvhat_acc[src[s]].row(t, g);
        }
        kappa[n_cand - 1] = fwd.khat[l].row(t, g);
        nu[n_cand - 1] = in.v[l].row(t, g);
        dkappa[n_cand - 1] = dkhat.row(t, g);
        dnu[n_cand - 1] = grad.v[l].row(t, g);
        depth_softmax_backward(qbar.row(t, g), d, n_cand, kappa.data(), nu.data(),
                               fwd.alpha[l].row(t, g), dvhat.row(t, g), dqbar.data(), dkappa.data(),
                               dnu.data());
        // q̄ is the group mean: each query head of the group receives dq̄ / G.
        for (int i = 0; i < G; ++i)
          for (int e = 0; e < d; ++e) dq.row(t, g * G + i)[e] += dqbar[e] / G;
      }

    // Back through k-norm (after RoPE) then RoPE; through RoPE then q-norm for q.
    Tensor dk = dkhat;
    if (c.local.qk_norm) {
      grad.gamma_k[l] = zeros_like(in.gamma_k[l]);
      dk =
          rmsnorm_rows_backward(fwd.k_rot[l], in.gamma_k[l], dk, c.local.norm_eps, grad.gamma_k[l]);
    }
    if (c.local.rope) {
      dk = rope_rows_backward(dk, pos, c.local.rope_theta);
      dq = rope_rows_backward(dq, pos, c.local.rope_theta);
    }
    if (c.local.qk_norm) {
      grad.gamma_q[l] = zeros_like(in.gamma_q[l]);
      dq = rmsnorm_rows_backward(in.q[l], in.gamma_q[l], dq, c.local.norm_eps, grad.gamma_q[l]);
    }
    grad.q[l] = std::move(dq);
    grad.k[l] = std::move(dk);
  }
  return grad;
}

}  // namespace strata::reference
