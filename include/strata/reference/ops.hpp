/// \file
/// strata/reference/ops.hpp — per-row fp64 building blocks of the reference.
///
/// Every function works on one row (one token and head, length d or n) and is written as the
/// textbook formula, in double precision. Backward functions are the hand-derived adjoints of
/// SPEC.md (§1e depth softmax, §3e RMSNorm, §4e GroupNorm); gain/bias gradients are accumulated
/// with += because a gain is shared by every row of a layer, and the caller sums over rows.
///
/// A null gamma (and beta) means "no affine": γ = 1, β = 0; the matching dgamma/dbeta may then be
/// null as well.
#pragma once

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

namespace strata::reference {

inline double sigmoid(double x) {
  // Two branches so that exp never overflows: for x < 0, σ(x) = e^x / (1 + e^x).
  if (x >= 0) return 1.0 / (1.0 + std::exp(-x));
  const double e = std::exp(x);
  return e / (1.0 + e);
}

// ---- RMSNorm over n: y = γ ⊙ x / sqrt(mean(x²) + eps)
// --------------------------------------------

inline double rms_inverse(const double* x, int n, double eps) {
  double ss = 0;
  for (int i = 0; i < n; ++i) ss += x[i] * x[i];
  return 1.0 / std::sqrt(ss / n + eps);
}

inline void rmsnorm_forward(const double* x, const double* gamma, int n, double eps, double* y) {
  const double r = rms_inverse(x, n, eps);
  for (int i = 0; i < n; ++i) y[i] = (gamma ? gamma[i] : 1.0) * x[i] * r;
}

// With x̂ = x·r and u = γ ⊙ dy:  dx = r·(u − x̂·mean(u ⊙ x̂)),  dγ += dy ⊙ x̂   (SPEC §3e).
// dx may alias dy.
inline void rmsnorm_backward(const double* x, const double* gamma, const double* dy, int n,
                             double eps, double* dx, double* dgamma) {
  const double r = rms_inverse(x, n, eps);
  double mean_uxh = 0;
  for (int i = 0; i < n; ++i) mean_uxh += (gamma ? gamma[i] : 1.0) * dy[i] * x[i] * r;
  mean_uxh /= n;
  for (int i = 0; i < n; ++i) {
    const double xh = x[i] * r;
    const double u = (gamma ? gamma[i] : 1.0) * dy[i];
    if (dgamma) dgamma[i] += dy[i] * xh;
    dx[i] = r * (u - xh * mean_uxh);
  }
}

// ---- RoPE, rotate-half: for i < d/2, a = pos·θ^(−2i/d)
// -------------------------------------------
//   y[i] = x[i] cos a − x[i+d/2] sin a,   y[i+d/2] = x[i+d/2] cos a + x[i] sin a.

inline double rope_angle(int i, int d, double pos, double theta) {
  return pos * std::pow(theta, -2.0 * i / d);
}

inline void rope_forward(const double* x, int d, double pos, double theta, double* y) {
  const int half = d / 2;
  for (int i = 0; i < half; ++i) {
    const double a = rope_angle(i, d, pos, theta);
    const double c = std::cos(a), s = std::sin(a);
    const double x0 = x[i], x1 = x[i + half];  // read both first: y may alias x
    y[i] = x0 * c - x1 * s;
    y[i + half] = x1 * c + x0 * s;
  }
}

// The rotation is orthogonal, so its adjoint is the rotation by −a.
inline void rope_backward(const double* dy, int d, double pos, double theta, double* dx) {
  const int half = d / 2;
  for (int i = 0; i < half; ++i) {
    const double a = rope_angle(i, d, pos, theta);
    const double c = std::cos(a), s = std::sin(a);
    const double g0 = dy[i], g1 = dy[i + half];
    dx[i] = g0 * c + g1 * s;
    dx[i + half] = g1 * c - g0 * s;
  }
}

// ---- Head GroupNorm over n (one token, one head): y = γ ⊙ (x − μ)/sqrt(var + eps) + β
// ------------

inline void group_norm_stats(const double* x, int n, double eps, double* mu, double* r) {
  double m = 0;
  for (int i = 0; i < n; ++i) m += x[i];
  m /= n;
  double var = 0;  // biased, as nn.GroupNorm
  for (int i = 0; i < n; ++i) var += (x[i] - m) * (x[i] - m);
  var /= n;
  *mu = m;
  *r = 1.0 / std::sqrt(var + eps);
}

inline void group_norm_forward(const double* x, const double* gamma, const double* beta, int n,
                               double eps, double* y) {
  double mu, r;
  group_norm_stats(x, n, eps, &mu, &r);
  for (int i = 0; i < n; ++i)
    y[i] = (gamma ? gamma[i] : 1.0) * (x[i] - mu) * r + (beta ? beta[i] : 0.0);
}

// With x̂ = (x − μ)·r and u = γ ⊙ dy:  dx = r·(u − mean(u) − x̂·mean(u ⊙ x̂))   (SPEC §4e),
// dγ += dy ⊙ x̂, dβ += dy. dx may alias dy.
inline void group_norm_backward(const double* x, const double* gamma, const double* dy, int n,
                                double eps, double* dx, double* dgamma, double* dbeta) {
  double mu, r;
  group_norm_stats(x, n, eps, &mu, &r);
  double mean_u = 0, mean_uxh = 0;
  for (int i = 0; i < n; ++i) {
    const double u = (gamma ? gamma[i] : 1.0) * dy[i];
    mean_u += u;
    mean_uxh += u * (x[i] - mu) * r;
  }
  mean_u /= n;
  mean_uxh /= n;
  for (int i = 0; i < n; ++i) {
    const double xh = (x[i] - mu) * r;
    const double u = (gamma ? gamma[i] : 1.0) * dy[i];
    if (dgamma) dgamma[i] += dy[i] * xh;
    if (dbeta) dbeta[i] += dy[i];
    dx[i] = r * (u - mean_u - xh * mean_uxh);
  }
}

// ---- Depth softmax (Depth-Attention §1a step 7), one (token, KV head)
// ---------------------------- z_c = q̄·κ_c / sqrt(d), α = softmax_c(z), v̂ = Σ_c α_c ν_c. Candidates
// in the order given (the caller passes sources ascending, then self last).

inline void depth_softmax_forward(const double* qbar, int d, int n_cand, const double* const* kappa,
                                  const double* const* nu, double* alpha, double* vhat) {
  const double scale = 1.0 / std::sqrt(static_cast<double>(d));
  double zmax = -std::numeric_limits<double>::infinity();
  for (int c = 0; c < n_cand; ++c) {
    double z = 0;
    for (int i = 0; i < d; ++i) z += qbar[i] * kappa[c][i];
    alpha[c] = z * scale;
    zmax = std::max(zmax, alpha[c]);
  }
  double sum = 0;
  for (int c = 0; c < n_cand; ++c) {
    alpha[c] = std::exp(alpha[c] - zmax);  // subtract the max: exp never overflows
    sum += alpha[c];
  }
  for (int c = 0; c < n_cand; ++c) alpha[c] /= sum;
  for (int i = 0; i < d; ++i) {
    double acc = 0;
    for (int c = 0; c < n_cand; ++c) acc += alpha[c] * nu[c][i];
    vhat[i] = acc;
  }
}

// SPEC §1e with g = ∂L/∂v̂:  δ_c = g·ν_c, δ̄ = Σ α_c δ_c, dz_c = α_c (δ_c − δ̄),
//   dq̄ = (1/sqrt d) Σ_c dz_c κ_c   (assigned),
//   dκ_c += dz_c q̄ / sqrt d,  dν_c += α_c g   (accumulated: κ_c, ν_c are shared across layers).
inline void depth_softmax_backward(const double* qbar, int d, int n_cand,
                                   const double* const* kappa, const double* const* nu,
                                   const double* alpha, const double* g, double* dqbar,
                                   double* const* dkappa, double* const* dnu) {
  const double scale = 1.0 / std::sqrt(static_cast<double>(d));
  std::vector<double> delta(static_cast<size_t>(n_cand));
  double delta_bar = 0;
  for (int c = 0; c < n_cand; ++c) {
    double s = 0;
    for (int i = 0; i < d; ++i) s += g[i] * nu[c][i];
    delta[static_cast<size_t>(c)] = s;
    delta_bar += alpha[c] * s;
  }
  for (int i = 0; i < d; ++i) dqbar[i] = 0;
  for (int c = 0; c < n_cand; ++c) {
    const double dz = alpha[c] * (delta[static_cast<size_t>(c)] - delta_bar);
    for (int i = 0; i < d; ++i) {
      dqbar[i] += scale * dz * kappa[c][i];
      if (dkappa && dkappa[c]) dkappa[c][i] += scale * dz * qbar[i];
      if (dnu && dnu[c]) dnu[c][i] += alpha[c] * g[i];
    }
  }
}

}  // namespace strata::reference
