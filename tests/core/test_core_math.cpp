// strata/core per-token math against the fp64 reference (strata/reference/ops.hpp, or the SPEC
// formula where the operation is a one-line expression), with every storage type: inputs are
// rounded to T, computed in fp32, stored as T, and compared with tolerances derived from T's unit
// roundoff. Every backward is also checked against central finite differences of the fp32
// forward, and the edge cases of each method are pinned down.
#include <strata/core/core.hpp>
#include <strata/reference/attention.hpp>
#include <strata/reference/ops.hpp>

#include <gtest/gtest.h>

#include "core_test_util.hpp"

namespace {

namespace core = strata::core;
namespace ref = strata::reference;
using namespace core_test;

template <class T>
class CoreMath : public ::testing::Test {};
TYPED_TEST_SUITE(CoreMath, StorageTypes);

constexpr int kD = 64;

// ---------------------------------------------------------------------------------------- RMSNorm

template <class T>
void check_rmsnorm(uint64_t seed, double x_spread, float eps) {
  Rng rng(seed);
  const auto x = stored_values<T>(rng, kD, x_spread);
  const auto gamma = stored_values<T>(rng, kD, 0.1, 1.0);
  const auto dy = stored_values<T>(rng, kD);
  float xr[kD], gr[kD], dyr[kD], y[kD], dx[kD], dg[kD] = {};
  to_regs(x, xr);
  to_regs(gamma, gr);
  to_regs(dy, dyr);
  core::rmsnorm_forward(xr, gr, kD, eps, y);
  core::rmsnorm_backward(xr, gr, dyr, kD, eps, dx, dg);
  std::vector<double> ry(kD), rdx(kD), rdg(kD, 0.0);
  ref::rmsnorm_forward(x.data(), gamma.data(), kD, eps, ry.data());
  ref::rmsnorm_backward(x.data(), gamma.data(), dy.data(), kD, eps, rdx.data(), rdg.data());
  // dx = r (gamma dy - x^ mean(gamma dy x^)): its terms are at most ~2 r max|gamma dy|
  double gdy = 0;
  for (int i = 0; i < kD; ++i) gdy = std::max(gdy, std::fabs(gamma[size_t(i)] * dy[size_t(i)]));
  const double ymag = max_abs(ry), dxmag = 2 * ref::rms_inverse(x.data(), kD, eps) * gdy;
  for (int i = 0; i < kD; ++i) {
    EXPECT_NEAR(stored<T>(y[i]), ry[size_t(i)], tolerance<T>(ry[size_t(i)], kD, ymag)) << i;
    EXPECT_NEAR(stored<T>(dx[i]), rdx[size_t(i)], tolerance<T>(rdx[size_t(i)], 2 * kD, dxmag)) << i;
    EXPECT_NEAR(dg[i], rdg[size_t(i)], tolerance<float>(rdg[size_t(i)], kD, ymag * max_abs(dy)))
        << i;
  }
}

TYPED_TEST(CoreMath, RmsNormMatchesReference) {
  for (uint64_t seed = 1; seed <= 4; ++seed) check_rmsnorm<TypeParam>(seed, 1.0, 1e-6f);
  check_rmsnorm<TypeParam>(7, 1e-2, 1e-5f);  // eps no longer negligible against mean(x^2)
}

TEST(CoreEdge, RmsNormOfZeroRowIsZeroWithFiniteGradient) {
  float x[8] = {}, g[8], dy[8], y[8], dx[8], dg[8] = {};
  for (int i = 0; i < 8; ++i) g[i] = 1.f + 0.1f * float(i), dy[i] = 1.f - 0.25f * float(i);
  const float eps = 1e-6f;
  core::rmsnorm_forward(x, g, 8, eps, y);
  core::rmsnorm_backward(x, g, dy, 8, eps, dx, dg);
  for (int i = 0; i < 8; ++i) {
    EXPECT_EQ(y[i], 0.f);
    EXPECT_FLOAT_EQ(dx[i], g[i] * dy[i] / std::sqrt(eps));  // x^ = 0: dx = r gamma dy
    EXPECT_EQ(dg[i], 0.f);
  }
}

TEST(CoreFiniteDifference, RmsNorm) {
  Rng rng(3);
  constexpr int n = 8;
  std::vector<float> in(2 * n);  // x then gamma
  for (int i = 0; i < n; ++i)
    in[size_t(i)] = float(rng.normal()), in[size_t(n + i)] = float(1 + 0.1 * rng.normal());
  float w[n];
  for (auto& v : w) v = float(rng.normal());
  auto loss = [&](const std::vector<float>& p) {
    float x[n], g[n], y[n];
    for (int i = 0; i < n; ++i) x[i] = p[size_t(i)], g[i] = p[size_t(n + i)];
    core::rmsnorm_forward(x, g, n, 1e-5f, y);
    double l = 0;
    for (int i = 0; i < n; ++i) l += double(w[i]) * y[i];
    return l;
  };
  float x[n], g[n], dx[n], dg[n] = {};
  for (int i = 0; i < n; ++i) x[i] = in[size_t(i)], g[i] = in[size_t(n + i)];
  core::rmsnorm_backward(x, g, w, n, 1e-5f, dx, dg);
  std::vector<double> analytic;
  for (float v : dx) analytic.push_back(v);
  for (float v : dg) analytic.push_back(v);
  expect_gradient(analytic, fd_gradient(loss, in, 1e-2f), "rmsnorm");
}

// -------------------------------------------------------------------------------------- GroupNorm

template <class T>
void check_group_norm(uint64_t seed, double mean, double spread, float eps) {
  Rng rng(seed);
  const auto x = stored_values<T>(rng, kD, spread, mean);
  const auto gamma = stored_values<T>(rng, kD, 0.1, 1.0);
  const auto beta = stored_values<T>(rng, kD, 0.1);
  const auto dy = stored_values<T>(rng, kD);
  float xr[kD], gr[kD], br[kD], dyr[kD], y[kD], dx[kD], dg[kD] = {}, db[kD] = {};
  to_regs(x, xr);
  to_regs(gamma, gr);
  to_regs(beta, br);
  to_regs(dy, dyr);
  core::group_norm_forward(xr, gr, br, kD, eps, y);
  core::group_norm_backward(xr, gr, dyr, kD, eps, dx, dg, db);
  std::vector<double> ry(kD), rdx(kD), rdg(kD, 0.0), rdb(kD, 0.0);
  ref::group_norm_forward(x.data(), gamma.data(), beta.data(), kD, eps, ry.data());
  ref::group_norm_backward(x.data(), gamma.data(), dy.data(), kD, eps, rdx.data(), rdg.data(),
                           rdb.data());
  // Subtracting the mean cancels |mean|/spread digits: the fp32 error scales with that ratio.
  const double cancel = 1.0 + std::fabs(mean) / spread;
  const double ymag = max_abs(ry) * cancel, dxmag = max_abs(rdx) * cancel;
  for (int i = 0; i < kD; ++i) {
    EXPECT_NEAR(stored<T>(y[i]), ry[size_t(i)], tolerance<T>(ry[size_t(i)], kD, ymag)) << i;
    EXPECT_NEAR(stored<T>(dx[i]), rdx[size_t(i)],
                tolerance<T>(rdx[size_t(i)], 2 * kD, dxmag + max_abs(dy)))
        << i;
    EXPECT_NEAR(dg[i], rdg[size_t(i)], tolerance<float>(rdg[size_t(i)], kD, ymag * max_abs(dy)))
        << i;
    EXPECT_EQ(db[i], float(dy[size_t(i)]));
  }
}

TYPED_TEST(CoreMath, GroupNormMatchesReference) {
  for (uint64_t seed = 1; seed <= 4; ++seed) check_group_norm<TypeParam>(seed, 0.0, 1.0, 1e-5f);
  check_group_norm<TypeParam>(11, 3.0, 0.5, 1e-5f);  // offset rows: the two-pass variance matters
}

TEST(CoreEdge, GroupNormOfConstantRowIsBetaWithFiniteGradient) {
  float x[8], g[8], b[8], dy[8], y[8], dx[8], dg[8] = {}, db[8] = {};
  for (int i = 0; i < 8; ++i)
    x[i] = 2.5f, g[i] = 1.f + 0.1f * float(i), b[i] = 0.01f * float(i), dy[i] = float(i % 3) - 1.f;
  core::group_norm_forward(x, g, b, 8, 1e-5f, y);
  core::group_norm_backward(x, g, dy, 8, 1e-5f, dx, dg, db);
  float mean_u = 0.f;
  for (int i = 0; i < 8; ++i) mean_u += g[i] * dy[i] / 8.f;
  for (int i = 0; i < 8; ++i) {
    EXPECT_EQ(y[i], b[i]);
    ASSERT_TRUE(std::isfinite(dx[i]));
    EXPECT_NEAR(dx[i], (g[i] * dy[i] - mean_u) / std::sqrt(1e-5f), 1e-3f);
  }
}

TEST(CoreFiniteDifference, GroupNorm) {
  Rng rng(4);
  constexpr int n = 8;
  std::vector<float> in(3 * n);  // x, gamma, beta
  for (int i = 0; i < n; ++i)
    in[size_t(i)] = float(rng.normal()), in[size_t(n + i)] = float(1 + 0.1 * rng.normal()),
    in[size_t(2 * n + i)] = float(0.1 * rng.normal());
  float w[n];
  for (auto& v : w) v = float(rng.normal());
  auto unpack = [&](const std::vector<float>& p, float(&x)[n], float(&g)[n], float(&b)[n]) {
    for (int i = 0; i < n; ++i)
      x[i] = p[size_t(i)], g[i] = p[size_t(n + i)], b[i] = p[size_t(2 * n + i)];
  };
  auto loss = [&](const std::vector<float>& p) {
    float x[n], g[n], b[n], y[n];
    unpack(p, x, g, b);
    core::group_norm_forward(x, g, b, n, 1e-5f, y);
    double l = 0;
    for (int i = 0; i < n; ++i) l += double(w[i]) * y[i];
    return l;
  };
  float x[n], g[n], b[n], dx[n], dg[n] = {}, db[n] = {};
  unpack(in, x, g, b);
  core::group_norm_backward(x, g, w, n, 1e-5f, dx, dg, db);
  std::vector<double> analytic;
  for (float v : dx) analytic.push_back(v);
  for (float v : dg) analytic.push_back(v);
  for (float v : db) analytic.push_back(v);
  expect_gradient(analytic, fd_gradient(loss, in, 1e-2f), "group_norm");
}

// ------------------------------------------------------------------------------------------- RoPE

template <class T>
void check_rope(float pos, float theta) {
  Rng rng(uint64_t(pos) + 17);
  const auto x = stored_values<T>(rng, kD);
  float xr[kD];
  to_regs(x, xr);
  core::rope_forward(xr, pos, theta);
  std::vector<double> ry(kD), rdx(kD);
  ref::rope_forward(x.data(), kD, pos, theta, ry.data());
  // fp32 angle: |a_32 - a| <= a * (a few ulps of powf and the product) -> error <= |x| * that
  const double angle_err = 8.0 * pos * 0x1p-24 + 4 * 0x1p-24;
  const double mag = max_abs(x);
  for (int i = 0; i < kD; ++i)
    EXPECT_NEAR(stored<T>(xr[i]), ry[size_t(i)],
                tolerance<T>(ry[size_t(i)], 2, mag) + 2 * angle_err * mag)
        << "pos " << pos << " i " << i;
  // backward: the transposed rotation, against the reference
  to_regs(x, xr);  // use x as dy
  core::rope_backward(xr, pos, theta);
  ref::rope_backward(x.data(), kD, pos, theta, rdx.data());
  for (int i = 0; i < kD; ++i)
    EXPECT_NEAR(stored<T>(xr[i]), rdx[size_t(i)],
                tolerance<T>(rdx[size_t(i)], 2, mag) + 2 * angle_err * mag)
        << "pos " << pos << " i " << i;
}

TYPED_TEST(CoreMath, RopeMatchesReference) {
  for (float pos : {0.f, 1.f, 17.f, 129.f, 4095.f}) {
    check_rope<TypeParam>(pos, 1e4f);
    check_rope<TypeParam>(pos, 5e5f);  // ExoFormer's base
  }
}

TEST(CoreEdge, RopeAtPositionZeroIsIdentityAndBackwardInvertsForward) {
  float x[kD], y[kD];
  Rng rng(2);
  for (int i = 0; i < kD; ++i) x[i] = y[i] = float(rng.normal());
  core::rope_forward(y, 0.f, 1e4f);
  for (int i = 0; i < kD; ++i) EXPECT_EQ(y[i], x[i]);
  core::rope_forward(y, 300.f, 1e4f);
  core::rope_backward(y, 300.f, 1e4f);  // orthogonal: the transpose is the inverse
  for (int i = 0; i < kD; ++i) EXPECT_NEAR(y[i], x[i], 1e-5f);
}

TEST(CoreFiniteDifference, Rope) {
  Rng rng(5);
  constexpr int n = 8;
  std::vector<float> in(n);
  float w[n];
  for (auto& v : in) v = float(rng.normal());
  for (auto& v : w) v = float(rng.normal());
  auto loss = [&](const std::vector<float>& p) {
    float x[n];
    for (int i = 0; i < n; ++i) x[i] = p[size_t(i)];
    core::rope_forward(x, 7.f, 1e4f);
    double l = 0;
    for (int i = 0; i < n; ++i) l += double(w[i]) * x[i];
    return l;
  };
  float dx[n];
  for (int i = 0; i < n; ++i) dx[i] = w[i];
  core::rope_backward(dx, 7.f, 1e4f);
  std::vector<double> analytic(dx, dx + n);
  expect_gradient(analytic, fd_gradient(loss, in, 1e-2f), "rope");
}

// ---------------------------------------------------------------------------------- Depth softmax

constexpr int kMaxCand = 9;  // kMaxSources = 8, plus self

// Runs the core depth mix (forward and backward) on candidates stored as T; compares with the
// reference's depth_softmax_forward/backward. `logit_boost` multiplies q^ (for +-1e4 logits).
template <class T, int N>
void check_depth(uint64_t seed, int n_cand, double logit_boost = 1.0, int group = 4) {
  Rng rng(seed);
  // the group's query heads, stored as T, and their mean as the reference sees it
  std::vector<std::vector<double>> q(static_cast<size_t>(group));
  for (auto& h : q) h = stored_values<T>(rng, N);
  std::vector<double> qbar(N, 0.0);
  for (int i = 0; i < N; ++i)
    for (int h = 0; h < group; ++h)
      qbar[size_t(i)] += q[size_t(h)][size_t(i)] / group * logit_boost;
  std::vector<std::vector<double>> kappa, nu;
  for (int c = 0; c < n_cand; ++c) {
    kappa.push_back(stored_values<T>(rng, N));
    nu.push_back(stored_values<T>(rng, N));
  }
  const auto g = stored_values<T>(rng, N);

  float qb[N] = {};
  for (int h = 0; h < group; ++h) {
    float qh[N];
    to_regs(q[size_t(h)], qh);
    for (auto& v : qh) v *= float(logit_boost);
    core::depth_query_add(qh, 1.f / float(group), qb);
  }
  const float scale = core::depth_scale(N);
  core::DepthMix<N> mix;
  for (int c = 0; c < n_cand; ++c) {
    float k[N], v[N];
    to_regs(kappa[size_t(c)], k);
    to_regs(nu[size_t(c)], v);
    mix.add(qb, k, v, scale);
  }
  float vhat[N];
  mix.finalize(vhat);

  std::vector<const double*> kp, np;
  for (int c = 0; c < n_cand; ++c)
    kp.push_back(kappa[size_t(c)].data()), np.push_back(nu[size_t(c)].data());
  std::vector<double> alpha(size_t(n_cand) + 1), rv(N, 0.0);
  if (n_cand > 0)
    ref::depth_softmax_forward(qbar.data(), N, n_cand, kp.data(), np.data(), alpha.data(),
                               rv.data());

  // A logit error of e changes alpha by ~ alpha * e: e <= (|q^| |kappa| / sqrt(d)) * N * 2^-22.
  double zmag = 0;
  for (int c = 0; c < n_cand; ++c) {
    double z = 0;
    for (int i = 0; i < N; ++i) z += std::fabs(qbar[size_t(i)] * kappa[size_t(c)][size_t(i)]);
    zmag = std::max(zmag, z / std::sqrt(double(N)));
  }
  double numag = 0;
  for (auto& v : nu) numag = std::max(numag, max_abs(v));
  const double logit_tol = (4.0 * N + 8) * 0x1p-24 * zmag;
  for (int i = 0; i < N; ++i)
    EXPECT_NEAR(stored<T>(vhat[i]), rv[size_t(i)],
                tolerance<T>(rv[size_t(i)], n_cand + 4, numag) + 2 * logit_tol * numag)
        << "vhat " << i << " n_cand " << n_cand;

  // backward
  core::DepthMixGrad<kMaxCand> grad;
  float gr[N];
  to_regs(g, gr);
  for (int c = 0; c < n_cand; ++c) {
    float k[N], v[N];
    to_regs(kappa[size_t(c)], k);
    to_regs(nu[size_t(c)], v);
    grad.add(qb, k, v, gr, scale);
  }
  grad.finish();
  for (int c = 0; c < n_cand; ++c)
    EXPECT_NEAR(grad.a[c], alpha[size_t(c)], 2 * logit_tol + 1e-6) << "alpha " << c;
  std::vector<std::vector<double>> rdk(size_t(n_cand), std::vector<double>(N, 0.0)), rdn = rdk;
  std::vector<double*> rdkp, rdnp;
  for (int c = 0; c < n_cand; ++c)
    rdkp.push_back(rdk[size_t(c)].data()), rdnp.push_back(rdn[size_t(c)].data());
  std::vector<double> rdq(N, 0.0);
  if (n_cand > 0)
    ref::depth_softmax_backward(qbar.data(), N, n_cand, kp.data(), np.data(), alpha.data(),
                                g.data(), rdq.data(), rdkp.data(), rdnp.data());
  float dq[N] = {};
  const double gmag = max_abs(g);
  // dz_c = alpha_c (delta_c - delta_bar): errors of alpha (logit_tol) and of the dot products
  // delta_c = g . nu_c: its terms sum to at most S; alpha carries the logit error
  double S = 0;
  for (auto& v : nu) {
    double sc = 0;
    for (int i = 0; i < N; ++i) sc += std::fabs(g[size_t(i)] * v[size_t(i)]);
    S = std::max(S, sc);
  }
  const double dz_tol = 2 * logit_tol * S + 4.0 * N * 0x1p-24 * S;
  double kmag = 0;
  for (auto& v : kappa) kmag = std::max(kmag, max_abs(v));
  for (int c = 0; c < n_cand; ++c) {
    float k[N], dk[N], dn[N];
    to_regs(kappa[size_t(c)], k);
    grad.candidate_grads(c, qb, k, gr, scale, dq, dk, dn);
    for (int i = 0; i < N; ++i) {
      EXPECT_NEAR(stored<T>(dk[i]), rdk[size_t(c)][size_t(i)],
                  tolerance<T>(rdk[size_t(c)][size_t(i)], 4, 0) + dz_tol * scale * max_abs(qbar))
          << "dkappa c " << c << " i " << i;
      EXPECT_NEAR(stored<T>(dn[i]), rdn[size_t(c)][size_t(i)],
                  tolerance<T>(rdn[size_t(c)][size_t(i)], 2, 0) + 2 * logit_tol * gmag)
          << "dnu c " << c << " i " << i;
    }
  }
  for (int i = 0; i < N; ++i)
    EXPECT_NEAR(stored<T>(dq[i]), rdq[size_t(i)],
                tolerance<T>(rdq[size_t(i)], n_cand, 0) + n_cand * dz_tol * scale * kmag)
        << "dqbar " << i;
}

TYPED_TEST(CoreMath, DepthSoftmaxMatchesReference) {
  for (int n_cand : {1, 2, 3, kMaxCand}) {  // self only (layer 0), one source, two, kMaxSources
    check_depth<TypeParam, kD>(uint64_t(n_cand), n_cand);
    check_depth<TypeParam, 96>(uint64_t(n_cand) + 50, n_cand, 1.0, 1);  // MHA, d = 96
  }
}

TYPED_TEST(CoreMath, DepthSoftmaxWithLargeLogits) {
  // |z| ~ 1e3 from random rows: the online softmax must not overflow
  for (double boost : {1e4, -1e4}) check_depth<TypeParam, 16>(99, 3, boost / 4.0);
}

TEST(CoreEdge, DepthSoftmaxWithLogitsOfPlusMinusTenThousandIsOneHot) {
  // z = q^ . kappa_c / sqrt(16) = (4s, 2s, -4s) with s = +-2500: logits of +-1e4 and 5e3. alpha
  // is exactly one-hot in fp32, so v^ is the winner's value, dz = 0 (no q^ / kappa gradient)
  // and dnu goes to the winner only.
  constexpr int n = 16;
  for (float s : {2500.f, -2500.f}) {
    float qb[n], k[3][n], v[3][n], g[n];
    for (int i = 0; i < n; ++i) {
      qb[i] = s;
      k[0][i] = 1.f, k[1][i] = 0.5f, k[2][i] = -1.f;
      for (int c = 0; c < 3; ++c) v[c][i] = float(10 * c + i);
      g[i] = 1.f + float(i);
    }
    const int winner = s > 0 ? 0 : 2;
    core::DepthMix<n> mix;
    core::DepthMixGrad<> grad;
    for (int c = 0; c < 3; ++c) {
      const float z = mix.add(qb, k[c], v[c], core::depth_scale(n));
      EXPECT_FLOAT_EQ(z / core::kLog2e, (c == 0 ? 4.f : c == 1 ? 2.f : -4.f) * s);
      grad.add(qb, k[c], v[c], g, core::depth_scale(n));
    }
    float vhat[n];
    mix.finalize(vhat);
    grad.finish();
    float dq[n] = {};
    for (int i = 0; i < n; ++i) EXPECT_EQ(vhat[i], v[winner][i]);
    for (int c = 0; c < 3; ++c) {
      float dk[n], dn[n];
      EXPECT_EQ(grad.alpha(c), c == winner ? 1.f : 0.f);
      grad.candidate_grads(c, qb, k[c], g, core::depth_scale(n), dq, dk, dn);
      for (int i = 0; i < n; ++i) {
        EXPECT_EQ(dk[i], 0.f);
        EXPECT_EQ(dn[i], c == winner ? g[i] : 0.f);
      }
    }
    for (int i = 0; i < n; ++i) EXPECT_EQ(dq[i], 0.f);
  }
}

TEST(CoreEdge, DepthSoftmaxSelfOnlyReturnsRawValueAndNoKeyGradient) {
  // layer 0 (zero sources): alpha = 1, v^ = v, dz = 0 so dq^ = dkappa = 0 and dnu = g
  float qb[4] = {1, -2, 3, 0.5f}, k[4] = {0.3f, 1, -1, 2}, v[4] = {4, 5, -6, 7},
        g[4] = {1, 2, 3, 4};
  core::DepthMix<4> mix;
  mix.add(qb, k, v, 0.5f);
  float vhat[4];
  mix.finalize(vhat);
  for (int i = 0; i < 4; ++i) EXPECT_EQ(vhat[i], v[i]);
  core::DepthMixGrad<kMaxCand> grad;
  grad.add(qb, k, v, g, 0.5f);
  grad.finish();
  float dq[4] = {}, dk[4], dn[4];
  grad.candidate_grads(0, qb, k, g, 0.5f, dq, dk, dn);
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(dq[i], 0.f);
    EXPECT_EQ(dk[i], 0.f);
    EXPECT_EQ(dn[i], g[i]);
  }
}

TEST(CoreEdge, DepthSoftmaxWithNoCandidateIsZeroNotNaN) {
  core::DepthMix<4> mix;
  float vhat[4];
  mix.finalize(vhat);
  for (float v : vhat) EXPECT_EQ(v, 0.f);
  core::DepthMixGrad<kMaxCand> grad;
  grad.finish();
  EXPECT_EQ(grad.delta_bar, 0.f);
  for (int c = 0; c < kMaxCand; ++c) {
    EXPECT_EQ(grad.alpha(c), 0.f);
    EXPECT_EQ(grad.dz(c), 0.f);
  }
}

TEST(CoreFiniteDifference, DepthSoftmax) {
  Rng rng(6);
  constexpr int n = 8, C = 3;
  // parameters: q^ (n), kappa (C x n), nu (C x n)
  std::vector<float> in(size_t(n + 2 * C * n));
  for (auto& v : in) v = float(rng.normal());
  float w[n];
  for (auto& v : w) v = float(rng.normal());
  const float scale = core::depth_scale(n);
  auto rows = [&](const std::vector<float>& p, float(&qb)[n], float(&k)[C][n], float(&v)[C][n]) {
    for (int i = 0; i < n; ++i) qb[i] = p[size_t(i)];
    for (int c = 0; c < C; ++c)
      for (int i = 0; i < n; ++i)
        k[c][i] = p[size_t(n + c * n + i)], v[c][i] = p[size_t(n + C * n + c * n + i)];
  };
  auto loss = [&](const std::vector<float>& p) {
    float qb[n], k[C][n], v[C][n], vhat[n];
    rows(p, qb, k, v);
    core::DepthMix<n> mix;
    for (int c = 0; c < C; ++c) mix.add(qb, k[c], v[c], scale);
    mix.finalize(vhat);
    double l = 0;
    for (int i = 0; i < n; ++i) l += double(w[i]) * vhat[i];
    return l;
  };
  float qb[n], k[C][n], v[C][n];
  rows(in, qb, k, v);
  core::DepthMixGrad<kMaxCand> grad;
  for (int c = 0; c < C; ++c) grad.add(qb, k[c], v[c], w, scale);
  grad.finish();
  float dq[n] = {}, dk[C][n], dn[C][n];
  for (int c = 0; c < C; ++c) grad.candidate_grads(c, qb, k[c], w, scale, dq, dk[c], dn[c]);
  std::vector<double> analytic(dq, dq + n);
  for (int c = 0; c < C; ++c) analytic.insert(analytic.end(), dk[c], dk[c] + n);
  for (int c = 0; c < C; ++c) analytic.insert(analytic.end(), dn[c], dn[c] + n);
  expect_gradient(analytic, fd_gradient(loss, in, 1e-2f), "depth softmax");
}

// --------------------------------------------------------------------------------- Value residual

TYPED_TEST(CoreMath, ValueResidualMatchesFormula) {
  using T = TypeParam;
  Rng rng(8);
  const auto v = stored_values<T>(rng, kD), v0 = stored_values<T>(rng, kD),
             g = stored_values<T>(rng, kD);
  for (auto [ls, lf] : {std::pair{0.5f, 0.5f}, std::pair{1.f, 2.f}, std::pair{0.f, 1.f}}) {
    float vr[kD], v0r[kD], gr[kD], out[kD], dv[kD], dv0[kD] = {}, dls = 0, dlf = 0;
    to_regs(v, vr);
    to_regs(v0, v0r);
    to_regs(g, gr);
    core::value_residual_forward(vr, v0r, ls, lf, out);
    core::value_residual_backward(vr, v0r, ls, lf, gr, dv, dv0, dls, dlf);
    double rls = 0, rlf = 0;
    for (int i = 0; i < kD; ++i) {
      const size_t j = size_t(i);
      const double o = ls * v[j] + lf * v0[j];
      EXPECT_NEAR(stored<T>(out[i]), o,
                  tolerance<T>(o, 2, std::fabs(ls * v[j]) + std::fabs(lf * v0[j])));
      EXPECT_NEAR(stored<T>(dv[i]), ls * g[j], tolerance<T>(ls * g[j], 1, 0));
      EXPECT_NEAR(dv0[i], lf * g[j], tolerance<float>(lf * g[j], 1, 0));
      rls += v[j] * g[j];
      rlf += v0[j] * g[j];
    }
    EXPECT_NEAR(dls, rls, tolerance<float>(rls, kD, max_abs(v) * max_abs(g)));
    EXPECT_NEAR(dlf, rlf, tolerance<float>(rlf, kD, max_abs(v0) * max_abs(g)));
  }
}

TEST(CoreEdge, ValueResidualAccumulatesFirstLayerGradientAcrossLayers) {
  // dV_0 is a cross-layer fp32 accumulator: three layers add into it
  float v[2] = {1, 2}, v0[2] = {3, 4}, g[2] = {1, -1}, dv[2], dv0[2] = {10, 20}, dls = 0, dlf = 0;
  for (int layer = 1; layer <= 3; ++layer)
    core::value_residual_backward(v, v0, 0.5f, 0.25f, g, dv, dv0, dls, dlf);
  EXPECT_EQ(dv0[0], 10.f + 3 * 0.25f);
  EXPECT_EQ(dv0[1], 20.f - 3 * 0.25f);
  EXPECT_EQ(dls, 3 * (1.f - 2.f));
  EXPECT_EQ(dlf, 3 * (3.f - 4.f));
}

// ------------------------------------------------------------------------------------- Anchor mix

TYPED_TEST(CoreMath, AnchorMixMatchesFormulaForEveryGranularity) {
  using T = TypeParam;
  constexpr int H = 2, d = 8;
  Rng rng(9);
  const auto anchor_raw = stored_values<T>(rng, H * d), p = stored_values<T>(rng, H * d);
  const auto dy = stored_values<T>(rng, H * d);
  const auto gamma = stored_values<T>(rng, d, 0.1, 1.0);
  const float s1 = 0.3f, s2 = 0.8f;
  for (auto gran : {core::MixGranularity::kElementwise, core::MixGranularity::kHeadwise,
                    core::MixGranularity::kScalar}) {
    const int count = core::lambda_count(gran, H, d);
    const auto l1 = stored_values<T>(rng, count, 0.2, 0.5),
               l2 = stored_values<T>(rng, count, 0.2, 0.5);
    std::vector<double> dl1(size_t(count), 0.0), dl2 = dl1, rdl1 = dl1, rdl2 = dl1;
    double ds1 = 0, ds2 = 0, rds1 = 0, rds2 = 0;
    for (int h = 0; h < H; ++h) {
      // the anchor is RMS-normalized first (ExoFormer's anchor norm, eps 1e-6)
      float a[d], ah[d], g[d], pr[d], l1r[d], l2r[d], out[d], dyr[d], dp[d],
          da[d] = {}, dl1r[d] = {}, dl2r[d] = {};
      to_regs(anchor_raw, a, h * d);
      to_regs(gamma, g);
      core::rmsnorm_forward(a, g, d, 1e-6f, ah);
      std::vector<double> rah(d);
      ref::rmsnorm_forward(anchor_raw.data() + h * d, gamma.data(), d, 1e-6, rah.data());
      to_regs(p, pr, h * d);
      to_regs(dy, dyr, h * d);
      for (int i = 0; i < d; ++i) {
        const int o = core::lambda_offset(gran, h, i, d);
        l1r[i] = float(l1[size_t(o)]);
        l2r[i] = float(l2[size_t(o)]);
      }
      core::anchor_mix_forward(ah, pr, l1r, l2r, s1, s2, out);
      float ds1p = 0, ds2p = 0;
      core::anchor_mix_backward(ah, pr, l1r, l2r, s1, s2, dyr, dp, da, dl1r, dl2r, ds1p, ds2p);
      ds1 += ds1p;
      ds2 += ds2p;
      for (int i = 0; i < d; ++i) {
        const size_t j = size_t(h * d + i);
        const size_t o = size_t(core::lambda_offset(gran, h, i, d));
        const double c1 = l1[o] * s1, c2 = l2[o] * s2;
        const double ref_out = c1 * rah[size_t(i)] + c2 * p[j];
        const double mag = std::fabs(c1 * rah[size_t(i)]) + std::fabs(c2 * p[j]);
        EXPECT_NEAR(stored<T>(out[i]), ref_out, tolerance<T>(ref_out, 3 * d, mag + std::fabs(c1)));
        EXPECT_NEAR(stored<T>(dp[i]), c2 * dy[j], tolerance<T>(c2 * dy[j], 2, 0));
        EXPECT_NEAR(da[i], c1 * dy[j], tolerance<float>(c1 * dy[j], 2, 0));
        dl1[o] += dl1r[i];
        dl2[o] += dl2r[i];
        rdl1[o] += s1 * rah[size_t(i)] * dy[j];
        rdl2[o] += s2 * p[j] * dy[j];
        rds1 += l1[o] * rah[size_t(i)] * dy[j];
        rds2 += l2[o] * p[j] * dy[j];
      }
    }
    const double mag = 4.0 * max_abs(dy) * (max_abs(p) + 4.0);
    for (int o = 0; o < count; ++o) {
      EXPECT_NEAR(dl1[size_t(o)], rdl1[size_t(o)],
                  tolerance<float>(rdl1[size_t(o)], 3 * H * d, mag));
      EXPECT_NEAR(dl2[size_t(o)], rdl2[size_t(o)], tolerance<float>(rdl2[size_t(o)], H * d, mag));
    }
    EXPECT_NEAR(ds1, rds1, tolerance<float>(rds1, 3 * H * d, mag));
    EXPECT_NEAR(ds2, rds2, tolerance<float>(rds2, H * d, mag));
  }
}

TEST(CoreEdge, LambdaLayoutAgreesWithTheReference) {
  // The anchor-mix test expands lambda with core::lambda_offset on both sides, so the layout
  // itself is checked here against the reference's independent lambda_index / lambda_shape.
  const std::pair<core::MixGranularity, ref::LambdaGranularity> kinds[] = {
      {core::MixGranularity::kElementwise, ref::LambdaGranularity::Elementwise},
      {core::MixGranularity::kHeadwise, ref::LambdaGranularity::Head},
      {core::MixGranularity::kScalar, ref::LambdaGranularity::Scalar}};
  for (auto [g, rg] : kinds)
    for (int heads : {1, 3, 16}) {
      const int d = 8;
      int64_t count = 1;
      for (int64_t e : ref::lambda_shape(rg, heads, d)) count *= e;
      EXPECT_EQ(core::lambda_count(g, heads, d), count);
      for (int h = 0; h < heads; ++h)
        for (int i = 0; i < d; ++i)
          EXPECT_EQ(core::lambda_offset(g, h, i, d), ref::lambda_index(rg, h, i, d));
    }
}

TEST(CoreFiniteDifference, AnchorMix) {
  Rng rng(10);
  constexpr int n = 6;
  // anchor, p, lambda1, lambda2 (n each), s1, s2
  std::vector<float> in(size_t(4 * n + 2));
  for (auto& v : in) v = float(rng.normal());
  float w[n];
  for (auto& v : w) v = float(rng.normal());
  auto unpack = [&](const std::vector<float>& q, float(&a)[n], float(&p)[n], float(&l1)[n],
                    float(&l2)[n]) {
    for (int i = 0; i < n; ++i)
      a[i] = q[size_t(i)], p[i] = q[size_t(n + i)], l1[i] = q[size_t(2 * n + i)],
      l2[i] = q[size_t(3 * n + i)];
  };
  auto loss = [&](const std::vector<float>& q) {
    float a[n], p[n], l1[n], l2[n], out[n];
    unpack(q, a, p, l1, l2);
    core::anchor_mix_forward(a, p, l1, l2, q[size_t(4 * n)], q[size_t(4 * n + 1)], out);
    double l = 0;
    for (int i = 0; i < n; ++i) l += double(w[i]) * out[i];
    return l;
  };
  float a[n], p[n], l1[n], l2[n], dp[n], da[n] = {}, dl1[n] = {}, dl2[n] = {}, ds1 = 0, ds2 = 0;
  unpack(in, a, p, l1, l2);
  core::anchor_mix_backward(a, p, l1, l2, in[size_t(4 * n)], in[size_t(4 * n + 1)], w, dp, da, dl1,
                            dl2, ds1, ds2);
  std::vector<double> analytic(da, da + n);
  analytic.insert(analytic.end(), dp, dp + n);
  analytic.insert(analytic.end(), dl1, dl1 + n);
  analytic.insert(analytic.end(), dl2, dl2 + n);
  analytic.push_back(ds1);
  analytic.push_back(ds2);
  expect_gradient(analytic, fd_gradient(loss, in, 1e-2f), "anchor mix");
}

// ---------------------------------------------------------------------- Head linear composition

template <class T>
void check_head_compose(int H, int Hc) {
  constexpr int d = 16;
  Rng rng(uint64_t(H * 100 + Hc));
  std::vector<std::vector<double>> kc;
  for (int c = 0; c < Hc; ++c) kc.push_back(stored_values<T>(rng, d));
  std::vector<double> a(size_t(Hc * H));
  for (auto& x : a) x = rng.normal() / std::sqrt(double(Hc));
  std::vector<float> af(a.begin(), a.end());
  for (size_t i = 0; i < a.size(); ++i) a[i] = double(af[i]);  // A is an fp32 parameter
  float kcr[8][d], dkc[8][d] = {};
  for (int c = 0; c < Hc; ++c) to_regs(kc[size_t(c)], kcr[c]);
  std::vector<float> da(a.size(), 0.f);
  std::vector<double> rdkc(size_t(Hc * d), 0.0), rda(a.size(), 0.0);
  for (int h = 0; h < H; ++h) {
    float out[d], dy[d];
    core::head_compose_forward(af.data(), H, Hc, h, kcr, out);
    const auto dyv = stored_values<T>(rng, d);
    to_regs(dyv, dy);
    float dah[8] = {};  // this head's dA column, as the per-thread partials a kernel keeps
    core::head_compose_backward(af.data(), H, Hc, h, kcr, dy, dkc, dah);
    for (int c = 0; c < Hc; ++c) da[size_t(c * H + h)] += dah[c];
    for (int i = 0; i < d; ++i) {
      double r = 0, mag = 0;
      for (int c = 0; c < Hc; ++c) {
        r += a[size_t(c * H + h)] * kc[size_t(c)][size_t(i)];
        mag += std::fabs(a[size_t(c * H + h)] * kc[size_t(c)][size_t(i)]);
        rdkc[size_t(c * d + i)] += a[size_t(c * H + h)] * dyv[size_t(i)];
        rda[size_t(c * H + h)] += kc[size_t(c)][size_t(i)] * dyv[size_t(i)];
      }
      EXPECT_NEAR(stored<T>(out[i]), r, tolerance<T>(r, Hc, mag)) << "h " << h << " i " << i;
    }
  }
  for (int c = 0; c < Hc; ++c)
    for (int i = 0; i < d; ++i)
      EXPECT_NEAR(dkc[c][i], rdkc[size_t(c * d + i)],
                  tolerance<float>(rdkc[size_t(c * d + i)], H, 4.0 * H));
  for (size_t j = 0; j < a.size(); ++j)
    EXPECT_NEAR(da[j], rda[j], tolerance<float>(rda[j], d, 16.0));
}

TYPED_TEST(CoreMath, HeadComposeMatchesFormula) {
  check_head_compose<TypeParam>(8, 8);  // full MEA: H_c = H
  check_head_compose<TypeParam>(8, 4);  // virtual heads: H_c = H/2
}

TEST(CoreEdge, HeadComposeIdentityInitReproducesComponentHeads) {
  for (int Hc : {4, 2}) {  // H_c = H and H_c = H/2 (identity tiled)
    constexpr int H = 4, d = 3;
    std::vector<float> a(size_t(Hc * H));
    for (int c = 0; c < Hc; ++c)
      for (int h = 0; h < H; ++h) a[size_t(c * H + h)] = core::head_compose_init(Hc, c, h);
    float kc[4][d];
    for (int c = 0; c < Hc; ++c)
      for (int i = 0; i < d; ++i) kc[c][i] = float(10 * c + i);
    for (int h = 0; h < H; ++h) {
      float out[d];
      core::head_compose_forward(a.data(), H, Hc, h, kc, out);
      for (int i = 0; i < d; ++i) EXPECT_EQ(out[i], kc[h % Hc][i]);
    }
  }
}

TEST(CoreFiniteDifference, HeadCompose) {
  Rng rng(12);
  constexpr int H = 4, Hc = 2, d = 4;
  std::vector<float> in(size_t(Hc * d + Hc * H));  // K_c then A
  for (auto& v : in) v = float(rng.normal());
  float w[H][d];
  for (auto& r : w)
    for (auto& v : r) v = float(rng.normal());
  auto loss = [&](const std::vector<float>& p) {
    float kc[Hc][d];
    for (int c = 0; c < Hc; ++c)
      for (int i = 0; i < d; ++i) kc[c][i] = p[size_t(c * d + i)];
    double l = 0;
    for (int h = 0; h < H; ++h) {
      float out[d];
      core::head_compose_forward(p.data() + Hc * d, H, Hc, h, kc, out);
      for (int i = 0; i < d; ++i) l += double(w[h][i]) * out[i];
    }
    return l;
  };
  float kc[Hc][d], dkc[Hc][d] = {};
  for (int c = 0; c < Hc; ++c)
    for (int i = 0; i < d; ++i) kc[c][i] = in[size_t(c * d + i)];
  std::vector<float> da(size_t(Hc * H), 0.f);
  for (int h = 0; h < H; ++h) {
    float dah[Hc] = {};
    core::head_compose_backward(in.data() + Hc * d, H, Hc, h, kc, w[h], dkc, dah);
    for (int c = 0; c < Hc; ++c) da[size_t(c * H + h)] += dah[c];
  }
  std::vector<double> analytic;
  for (auto& r : dkc) analytic.insert(analytic.end(), r, r + d);
  analytic.insert(analytic.end(), da.begin(), da.end());
  expect_gradient(analytic, fd_gradient(loss, in, 1e-2f), "head compose");
}

// ------------------------------------------------------------------------------------------- Gate

TYPED_TEST(CoreMath, GateMatchesFormula) {
  using T = TypeParam;
  Rng rng(13);
  const auto o = stored_values<T>(rng, kD), g = stored_values<T>(rng, kD, 2.0),
             dy = stored_values<T>(rng, kD);
  float orr[kD], gr[kD], dyr[kD], out[kD], d_o[kD], dg[kD];
  to_regs(o, orr);
  to_regs(g, gr);
  to_regs(dy, dyr);
  core::gate_forward(orr, gr, out);
  core::gate_backward(orr, gr, dyr, d_o, dg);
  double dgh = 0;
  for (int i = 0; i < kD; ++i) {
    const size_t j = size_t(i);
    const double s = ref::sigmoid(g[j]);
    EXPECT_NEAR(stored<T>(out[i]), o[j] * s, tolerance<T>(o[j] * s, 4, std::fabs(o[j])));
    EXPECT_NEAR(stored<T>(d_o[i]), dy[j] * s, tolerance<T>(dy[j] * s, 4, std::fabs(dy[j])));
    const double rdg = dy[j] * o[j] * s * (1 - s);
    EXPECT_NEAR(stored<T>(dg[i]), rdg, tolerance<T>(rdg, 8, std::fabs(dy[j] * o[j])));
    dgh += dy[j] * o[j];
  }
  // headwise: one logit for the head
  float hout[kD], hd_o[kD];
  core::gate_forward(orr, gr[0], hout);
  const float hdg = core::gate_backward(orr, gr[0], dyr, hd_o);
  const double s0 = ref::sigmoid(g[0]);
  for (int i = 0; i < kD; ++i)
    EXPECT_NEAR(stored<T>(hout[i]), o[size_t(i)] * s0,
                tolerance<T>(o[size_t(i)] * s0, 4, std::fabs(o[size_t(i)])));
  EXPECT_NEAR(hdg, dgh * s0 * (1 - s0),
              tolerance<float>(dgh * s0 * (1 - s0), kD, max_abs(o) * max_abs(dy)));
}

TEST(CoreEdge, GateSaturatesWithoutNaN) {
  float o[3] = {1.f, -2.f, 3.f}, g[3] = {1e4f, -1e4f, INFINITY}, dy[3] = {1.f, 1.f, 1.f}, out[3],
        d_o[3], dg[3];
  core::gate_forward(o, g, out);
  core::gate_backward(o, g, dy, d_o, dg);
  EXPECT_EQ(out[0], 1.f);
  EXPECT_EQ(out[1], -0.f);
  EXPECT_EQ(out[2], 3.f);
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(dg[i], 0.f);
    EXPECT_FALSE(std::isnan(d_o[i]));
  }
  EXPECT_EQ(core::sigmoid(-INFINITY), 0.f);
}

TEST(CoreFiniteDifference, Gate) {
  Rng rng(14);
  constexpr int n = 6;
  std::vector<float> in(size_t(2 * n + 1));  // o, g (elementwise), g (headwise)
  for (auto& v : in) v = float(rng.normal());
  float w[n];
  for (auto& v : w) v = float(rng.normal());
  auto loss = [&](const std::vector<float>& p) {
    float o[n], g[n], out[n], outh[n];
    for (int i = 0; i < n; ++i) o[i] = p[size_t(i)], g[i] = p[size_t(n + i)];
    core::gate_forward(o, g, out);
    core::gate_forward(o, p[size_t(2 * n)], outh);
    double l = 0;
    for (int i = 0; i < n; ++i) l += double(w[i]) * (out[i] + outh[i]);
    return l;
  };
  float o[n], g[n], d_o[n], dg[n], d_oh[n];
  for (int i = 0; i < n; ++i) o[i] = in[size_t(i)], g[i] = in[size_t(n + i)];
  core::gate_backward(o, g, w, d_o, dg);
  const float dgh = core::gate_backward(o, in[size_t(2 * n)], w, d_oh);
  std::vector<double> analytic;
  for (int i = 0; i < n; ++i) analytic.push_back(double(d_o[i]) + d_oh[i]);
  analytic.insert(analytic.end(), dg, dg + n);
  analytic.push_back(dgh);
  expect_gradient(analytic, fd_gradient(loss, in, 1e-2f), "gate");
}

// ---------------------------------------------------------------------------- Storage round trip

TYPED_TEST(CoreMath, LoadStoreRoundTripAndUnitRoundoff) {
  using T = TypeParam;
  const float xs[4] = {1.f, 1.f + 3 * core::kUnitRoundoff<T>, -3.25f, 1e-3f};
  T buf[4];
  core::store_row(xs, buf);
  float back[4];
  core::load_row(buf, back);
  for (int i = 0; i < 4; ++i)
    EXPECT_NEAR(back[i], xs[i], core::kUnitRoundoff<T> * std::fabs(xs[i]));
  // 1 + u is a tie that rounds to even (1); 1 + 3u rounds to 1 + 4u
  EXPECT_EQ(core::to_float(core::from_float<T>(1.f + core::kUnitRoundoff<T>)), 1.f);
  EXPECT_EQ(back[1], 1.f + 4 * core::kUnitRoundoff<T>);
}

}  // namespace
