// Tests of the fp64 reference (include/strata/reference/): every gradient of the stack loss
// Σ_l Σ out.l ⊙ dout.l against central finite differences, for every method and option, plus
// exact forward identities between methods and checks of the per-row building blocks.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <string>
#include <vector>

#include "case_util.hpp"

namespace ref = strata::reference;
using ref::Tensor;
using ref::testing::Case;
using ref::testing::make_case;
using ref::testing::stack_loss;

namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

ref::AttentionConfig attn_config(int H, int Hkv, int d, std::vector<int64_t> lens_q,
                                 std::vector<int64_t> lens_k = {}, bool causal = true,
                                 int window_left = -1, double scale = 0.0) {
  ref::AttentionConfig a;
  a.num_heads = H;
  a.num_kv_heads = Hkv;
  a.head_dim = d;
  if (lens_k.empty()) lens_k = lens_q;
  a.cu_seqlens_q = {0};
  a.cu_seqlens_k = {0};
  for (auto n : lens_q) a.cu_seqlens_q.push_back(a.cu_seqlens_q.back() + n);
  for (auto n : lens_k) a.cu_seqlens_k.push_back(a.cu_seqlens_k.back() + n);
  a.causal = causal;
  a.window_left = window_left;
  a.softmax_scale = scale;
  return a;
}

struct GradReport {
  double worst = 0;  // max over tensors of max|fd − analytic| / tensor scale
  std::string worst_tensor;
  int64_t elements = 0;
  int tensors = 0;
  double global_max = 0;
};

// Central differences of the stack loss for every element of every input tensor. A tensor's error
// is measured relative to max(max|its gradient|, 1e-3 · max|any gradient|), so a tensor whose
// gradient is legitimately tiny is still checked, without amplifying FD noise.
template <class Config>
GradReport finite_difference_report(const Case<Config>& c, double corrupt = 0.0) {
  auto fwd = forward(c.cfg, c.inputs);
  auto grad = backward(c.cfg, c.inputs, fwd, c.dout);
  std::map<std::string, Tensor*> analytic;
  GradReport r;
  visit_inputs(c.cfg, grad, [&](const std::string& n, Tensor& t) {
    analytic[n] = &t;
    for (double x : t.data) r.global_max = std::max(r.global_max, std::abs(x));
  });
  if (corrupt != 0.0) {  // self-test of the checker: one wrong element must be caught
    Tensor* t = analytic.begin()->second;
    (*t)[t->numel() / 2] += corrupt * r.global_max;
  }
  auto pert = c.inputs;
  visit_inputs(c.cfg, pert, [&](const std::string& n, Tensor& x) {
    auto it = analytic.find(n);
    EXPECT_NE(it, analytic.end()) << "no gradient for " << n;
    if (it == analytic.end()) return;
    const Tensor& g = *it->second;
    EXPECT_EQ(g.shape, x.shape) << "gradient shape of " << n;
    EXPECT_EQ(g.numel(), x.numel()) << "gradient size of " << n;
    if (g.numel() != x.numel()) return;
    double gmax = 0, err = 0;
    for (double v : g.data) gmax = std::max(gmax, std::abs(v));
    for (int64_t e = 0; e < x.numel(); ++e) {
      const double x0 = x[e], h = 1e-5 * std::max(1.0, std::abs(x0));
      x[e] = x0 + h;
      const double lp = stack_loss(c.cfg, pert, c.dout);
      x[e] = x0 - h;
      const double lm = stack_loss(c.cfg, pert, c.dout);
      x[e] = x0;
      err = std::max(err, std::abs((lp - lm) / (2 * h) - g[e]));
    }
    const double rel = err / std::max({gmax, 1e-3 * r.global_max, 1e-300});
    if (rel > r.worst) r.worst = rel, r.worst_tensor = n;
    r.elements += x.numel();
    ++r.tensors;
  });
  return r;
}

template <class Config>
void expect_gradients_match(const Config& cfg, uint64_t seed = 1) {
  auto c = make_case(cfg, seed);
  GradReport r = finite_difference_report(c);
  EXPECT_GT(r.elements, 0);
  EXPECT_GT(r.global_max, 1e-3) << "degenerate case: all gradients ~0";
  EXPECT_LE(r.worst, 1e-6) << "worst tensor " << r.worst_tensor << " (" << r.tensors << " tensors, "
                           << r.elements << " elements)";
}

void expect_equal(const Tensor& a, const Tensor& b, double tol = 0.0) {
  ASSERT_EQ(a.shape, b.shape);
  for (int64_t e = 0; e < a.numel(); ++e) {
    if (std::isinf(a[e]) || std::isinf(b[e])) {
      EXPECT_EQ(a[e], b[e]) << "at " << e;
    } else {
      EXPECT_NEAR(a[e], b[e], tol) << "at " << e;
    }
  }
}

// ---- the gradient checker can fail
// ---------------------------------------------------------------

TEST(ReferenceChecker, DetectsAWrongGradientElement) {
  ref::VanillaConfig cfg{attn_config(2, 1, 4, {4, 3}), 1};
  auto c = make_case(cfg, 3);
  EXPECT_LE(finite_difference_report(c).worst, 1e-6);
  EXPECT_GT(finite_difference_report(c, 1e-4).worst, 1e-6);
}

// ---- per-row building blocks
// ---------------------------------------------------------------------

// Scalar loss Σ w ⊙ f(x) of a row function, and its FD gradient with respect to x (and a param).
template <class F>
std::vector<double> fd_row(F f, std::vector<double> x, const std::vector<double>& w) {
  std::vector<double> g(x.size()), y(w.size());
  for (size_t i = 0; i < x.size(); ++i) {
    const double x0 = x[i], h = 1e-6;
    double lp = 0, lm = 0;
    x[i] = x0 + h, f(x.data(), y.data());
    for (size_t j = 0; j < y.size(); ++j) lp += w[j] * y[j];
    x[i] = x0 - h, f(x.data(), y.data());
    for (size_t j = 0; j < y.size(); ++j) lm += w[j] * y[j];
    x[i] = x0;
    g[i] = (lp - lm) / (2 * h);
  }
  return g;
}

std::vector<double> randn(ref::testing::Normal& rng, int n, double mean = 0, double sd = 1) {
  std::vector<double> v(static_cast<size_t>(n));
  for (auto& x : v) x = mean + sd * rng();
  return v;
}

void expect_near_vec(const std::vector<double>& a, const std::vector<double>& b, double tol) {
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) EXPECT_NEAR(a[i], b[i], tol) << "at " << i;
}

TEST(ReferenceOps, RmsNormAndGroupNormBackward) {
  ref::testing::Normal rng(11);
  const int n = 8;
  auto x = randn(rng, n), gamma = randn(rng, n, 1, 0.1), beta = randn(rng, n, 0, 0.1),
       dy = randn(rng, n);
  std::vector<double> dx(n), dgamma(n, 0.0), dbeta(n, 0.0);
  ref::rmsnorm_backward(x.data(), gamma.data(), dy.data(), n, 1e-6, dx.data(), dgamma.data());
  expect_near_vec(dx,
                  fd_row([&](const double* xi,
                             double* y) { ref::rmsnorm_forward(xi, gamma.data(), n, 1e-6, y); },
                         x, dy),
                  1e-8);
  expect_near_vec(
      dgamma,
      fd_row([&](const double* gi, double* y) { ref::rmsnorm_forward(x.data(), gi, n, 1e-6, y); },
             gamma, dy),
      1e-8);
  std::fill(dgamma.begin(), dgamma.end(), 0.0);
  ref::group_norm_backward(x.data(), gamma.data(), dy.data(), n, 1e-5, dx.data(), dgamma.data(),
                           dbeta.data());
  expect_near_vec(
      dx,
      fd_row([&](const double* xi,
                 double* y) { ref::group_norm_forward(xi, gamma.data(), beta.data(), n, 1e-5, y); },
             x, dy),
      1e-8);
  expect_near_vec(
      dgamma,
      fd_row([&](const double* gi,
                 double* y) { ref::group_norm_forward(x.data(), gi, beta.data(), n, 1e-5, y); },
             gamma, dy),
      1e-8);
  expect_near_vec(dbeta, dy, 1e-15);
  // Normalised output: zero mean, unit (biased) variance up to eps, before the affine.
  std::vector<double> y(n);
  ref::group_norm_forward(x.data(), nullptr, nullptr, n, 0.0, y.data());
  double m = 0, v = 0;
  for (double e : y) m += e / n;
  for (double e : y) v += (e - m) * (e - m) / n;
  EXPECT_NEAR(m, 0.0, 1e-14);
  EXPECT_NEAR(v, 1.0, 1e-12);
}

TEST(ReferenceOps, RopeIsARotationAndBackwardIsItsAdjoint) {
  ref::testing::Normal rng(12);
  const int d = 8;
  auto x = randn(rng, d), dy = randn(rng, d);
  std::vector<double> y(d), dx(d), back(d);
  ref::rope_forward(x.data(), d, 5.0, 10000.0, y.data());
  double nx = 0, ny = 0;
  for (int i = 0; i < d; ++i) nx += x[i] * x[i], ny += y[i] * y[i];
  EXPECT_NEAR(nx, ny, 1e-12);
  // Position 0 is the identity; pair 0 rotates by exactly pos radians.
  ref::rope_forward(x.data(), d, 0.0, 10000.0, back.data());
  expect_near_vec(back, x, 0.0);
  EXPECT_NEAR(y[0], x[0] * std::cos(5.0) - x[4] * std::sin(5.0), 1e-15);
  ref::rope_backward(dy.data(), d, 5.0, 10000.0, dx.data());
  expect_near_vec(
      dx,
      fd_row([&](const double* xi, double* yo) { ref::rope_forward(xi, d, 5.0, 10000.0, yo); }, x,
             dy),
      1e-8);
  ref::rope_backward(y.data(), d, 5.0, 10000.0, back.data());  // R⁻¹ R x = x
  expect_near_vec(back, x, 1e-14);
}

TEST(ReferenceOps, DepthSoftmaxBackward) {
  ref::testing::Normal rng(13);
  const int d = 6, n = 3;
  auto qbar = randn(rng, d), g = randn(rng, d);
  std::vector<std::vector<double>> kap(n), nu(n);
  for (int c = 0; c < n; ++c) kap[c] = randn(rng, d), nu[c] = randn(rng, d);
  auto run = [&](const double* qb, const std::vector<std::vector<double>>& K,
                 const std::vector<std::vector<double>>& V, double* alpha, double* vhat) {
    std::vector<const double*> kp, vp;
    for (int c = 0; c < n; ++c) kp.push_back(K[c].data()), vp.push_back(V[c].data());
    ref::depth_softmax_forward(qb, d, n, kp.data(), vp.data(), alpha, vhat);
  };
  std::vector<double> alpha(n), vhat(d), dq(d);
  run(qbar.data(), kap, nu, alpha.data(), vhat.data());
  double sum = 0;
  for (double a : alpha) sum += a;
  EXPECT_NEAR(sum, 1.0, 1e-15);
  std::vector<std::vector<double>> dk(n, std::vector<double>(d, 0.0)), dn = dk;
  std::vector<const double*> kp, vp;
  std::vector<double*> dkp, dnp;
  for (int c = 0; c < n; ++c)
    kp.push_back(kap[c].data()), vp.push_back(nu[c].data()), dkp.push_back(dk[c].data()),
        dnp.push_back(dn[c].data());
  ref::depth_softmax_backward(qbar.data(), d, n, kp.data(), vp.data(), alpha.data(), g.data(),
                              dq.data(), dkp.data(), dnp.data());
  std::vector<double> a2(n);
  expect_near_vec(
      dq, fd_row([&](const double* qb, double* y) { run(qb, kap, nu, a2.data(), y); }, qbar, g),
      1e-8);
  for (int c = 0; c < n; ++c) {
    expect_near_vec(dk[c],
                    fd_row(
                        [&](const double* k, double* y) {
                          auto K = kap;
                          K[c].assign(k, k + d);
                          run(qbar.data(), K, nu, a2.data(), y);
                        },
                        kap[c], g),
                    1e-8);
    expect_near_vec(dn[c],
                    fd_row(
                        [&](const double* v, double* y) {
                          auto V = nu;
                          V[c].assign(v, v + d);
                          run(qbar.data(), kap, V, a2.data(), y);
                        },
                        nu[c], g),
                    1e-8);
  }
  EXPECT_NEAR(ref::sigmoid(0.0), 0.5, 0.0);
  EXPECT_NEAR(ref::sigmoid(-800.0), 0.0, 1e-300);
  EXPECT_NEAR(ref::sigmoid(800.0), 1.0, 0.0);
}

// ---- vanilla attention
// ---------------------------------------------------------------------------

TEST(ReferenceVanilla, GradientsCausal) {
  expect_gradients_match(ref::VanillaConfig{attn_config(2, 2, 4, {6, 5}), 2});
}
TEST(ReferenceVanilla, GradientsNonCausalCustomScale) {
  expect_gradients_match(ref::VanillaConfig{attn_config(2, 2, 4, {6, 5}, {}, false, -1, 0.3), 1});
}
TEST(ReferenceVanilla, GradientsSlidingWindow) {
  expect_gradients_match(ref::VanillaConfig{attn_config(2, 1, 4, {9, 3}, {}, true, 2), 1});
  expect_gradients_match(ref::VanillaConfig{attn_config(2, 1, 4, {8}, {}, false, 1), 1});
}
TEST(ReferenceVanilla, GradientsGqaAndMqa) {
  expect_gradients_match(ref::VanillaConfig{attn_config(4, 2, 4, {5, 4}), 1});
  expect_gradients_match(ref::VanillaConfig{attn_config(4, 1, 6, {5, 4}), 1});
}
TEST(ReferenceVanilla, GradientsVarlenWithEmptySequence) {
  expect_gradients_match(ref::VanillaConfig{attn_config(2, 1, 4, {5, 0, 4, 1}), 1});
}
TEST(ReferenceVanilla, GradientsTqNotTkWithFullyMaskedRows) {
  // Sequence 0: Tq 5 > Tk 3, causal bottom-right: queries 0 and 1 see no key.
  // Sequence 1: Tq 2 < Tk 6; sequence 2 has queries but no keys at all.
  expect_gradients_match(ref::VanillaConfig{attn_config(2, 1, 4, {5, 2, 2}, {3, 6, 0}), 1});
  expect_gradients_match(ref::VanillaConfig{attn_config(2, 2, 4, {3, 4}, {6, 2}, false, 1), 1});
}

TEST(ReferenceVanilla, FullyMaskedRowHasZeroOutputMinusInfLseAndNoGradient) {
  ref::VanillaConfig cfg{attn_config(2, 1, 4, {5, 2}, {3, 0}), 1};
  auto c = make_case(cfg, 5);
  auto fwd = forward(cfg, c.inputs);
  auto grad = backward(cfg, c.inputs, fwd, c.dout);
  // Global queries 0, 1 (o = −2) and 5, 6 (no keys) are fully masked; 2..4 are not.
  for (int64_t t : {0, 1, 5, 6})
    for (int h = 0; h < 2; ++h) {
      EXPECT_EQ(fwd.lse[0].at(t, h), -kInf);
      for (int i = 0; i < 4; ++i) {
        EXPECT_EQ(fwd.out[0].row(t, h)[i], 0.0);
        EXPECT_EQ(grad.q[0].row(t, h)[i], 0.0);
      }
    }
  for (int64_t t : {2, 3, 4}) EXPECT_TRUE(std::isfinite(fwd.lse[0].at(t, 0)));
  // Query 2 sees exactly key 0: its output is v[0] and LSE is its single score.
  for (int i = 0; i < 4; ++i)
    EXPECT_NEAR(fwd.out[0].row(2, 0)[i], c.inputs.v[0].row(0, 0)[i], 1e-15);
  EXPECT_NEAR(fwd.lse[0].at(2, 0),
              0.5 * ref::dot(c.inputs.q[0].row(2, 0), c.inputs.k[0].row(0, 0), 4), 1e-15);
}

TEST(ReferenceVanilla, MaskIsBottomRightCausalWithWindow) {
  // q = 0 makes every connected score equal, so O is the plain mean of the connected values. With
  // v[j] = (local key index, 1, 0, 0), O[0] is the mean connected index and O[1] = 1 iff any key
  // is connected. Expected sets written out from CONTRACT.md: key j visible iff
  // (!causal || j <= i + o) && (W < 0 || j >= i + o - W), o = Tk - Tq.
  struct Case {
    int tq, tk;
    bool causal;
    int window;
  };
  for (Case k : {Case{4, 6, true, -1}, Case{6, 3, true, -1}, Case{5, 5, true, 1},
                 Case{4, 6, false, 2}, Case{6, 4, true, 0}, Case{3, 7, false, -1}}) {
    SCOPED_TRACE("Tq=" + std::to_string(k.tq) + " Tk=" + std::to_string(k.tk) +
                 " causal=" + std::to_string(k.causal) + " W=" + std::to_string(k.window));
    ref::VanillaConfig cfg{attn_config(1, 1, 4, {2, k.tq}, {1, k.tk}, k.causal, k.window), 1};
    auto in = ref::allocate_inputs(cfg);
    for (int j = 0; j < k.tk; ++j) in.v[0].row(1 + j, 0)[0] = j, in.v[0].row(1 + j, 0)[1] = 1.0;
    auto fwd = forward(cfg, in);
    const int o = k.tk - k.tq;
    for (int i = 0; i < k.tq; ++i) {
      int lo = k.window < 0 ? 0 : std::max(0, i + o - k.window);
      int hi = k.causal ? std::min(k.tk - 1, i + o) : k.tk - 1;
      const double* out = fwd.out[0].row(2 + i, 0);
      if (hi < lo) {
        EXPECT_EQ(out[1], 0.0) << "query " << i;
        EXPECT_EQ(fwd.lse[0].at(2 + i, 0), -kInf) << "query " << i;
      } else {
        EXPECT_NEAR(out[1], 1.0, 1e-15) << "query " << i;
        EXPECT_NEAR(out[0], 0.5 * (lo + hi), 1e-13) << "query " << i;
        EXPECT_NEAR(fwd.lse[0].at(2 + i, 0), std::log(hi - lo + 1.0), 1e-14) << "query " << i;
      }
    }
  }
}

TEST(ReferenceVanilla, MatchesADirectDenseSoftmax) {
  // One sequence, non-causal, one head: O = softmax(s·QKᵀ) V written as plainly as possible.
  ref::VanillaConfig cfg{attn_config(1, 1, 4, {4}, {}, false), 1};
  auto c = make_case(cfg, 6);
  auto fwd = forward(cfg, c.inputs);
  const auto &q = c.inputs.q[0], &k = c.inputs.k[0], &v = c.inputs.v[0];
  for (int i = 0; i < 4; ++i) {
    double s[4], z = 0;
    for (int j = 0; j < 4; ++j) z += s[j] = std::exp(0.5 * ref::dot(q.row(i, 0), k.row(j, 0), 4));
    for (int e = 0; e < 4; ++e) {
      double o = 0;
      for (int j = 0; j < 4; ++j) o += s[j] / z * v.row(j, 0)[e];
      EXPECT_NEAR(fwd.out[0].row(i, 0)[e], o, 1e-14);
    }
    EXPECT_NEAR(fwd.lse[0].at(i, 0), std::log(z), 1e-14);
  }
}

// ---- Depth-Attention
// -----------------------------------------------------------------------------

ref::DepthConfig depth_config(int L, ref::AttentionConfig a, std::vector<std::vector<int>> src,
                              bool qk_norm = true, bool rope = true) {
  ref::DepthConfig c;
  c.attn = std::move(a);
  c.num_layers = L;
  c.sources = std::move(src);
  c.local.qk_norm = qk_norm;
  c.local.rope = rope;
  return c;
}

TEST(ReferenceDepth, SourceSets) {
  using S = std::vector<std::vector<int>>;
  EXPECT_EQ(ref::depth_sources(6, 2, 1), (S{{}, {0}, {0, 1}, {0, 2}, {0, 2, 3}, {0, 2, 4}}));
  EXPECT_EQ(ref::depth_sources(4, 0, 2), (S{{}, {0}, {0, 1}, {1, 2}}));
  EXPECT_EQ(ref::depth_sources(33, 16, 0)[32], (std::vector<int>{0, 16}));
  EXPECT_EQ(ref::looped_depth_sources(2, 3, 3, 0), (S{{}, {0}, {0}, {0}, {0, 3}, {0, 3}}));
  EXPECT_THROW(ref::validate_depth_sources(S{{}, {1}}, 2), std::invalid_argument);
  EXPECT_THROW(ref::validate_depth_sources(S{{}, {0}, {1, 0}}, 3), std::invalid_argument);
}

TEST(ReferenceDepth, GradientsStride2Recent1) {
  expect_gradients_match(
      depth_config(5, attn_config(4, 2, 4, {4, 0, 5}), ref::depth_sources(5, 2, 1)));
}
TEST(ReferenceDepth, GradientsMhaNoNormNoRope) {
  expect_gradients_match(
      depth_config(4, attn_config(2, 2, 4, {6, 3}), ref::depth_sources(4, 2, 1), false, false));
}
TEST(ReferenceDepth, GradientsExplicitAndLoopedSlots) {
  expect_gradients_match(
      depth_config(5, attn_config(2, 1, 4, {7}), {{}, {0}, {0, 1}, {1}, {0, 2, 3}}));
  expect_gradients_match(depth_config(6, attn_config(2, 2, 4, {4, 3}, {}, true, 1),
                                      ref::looped_depth_sources(2, 3, 3, 1)));
}

TEST(ReferenceDepth, LayerZeroIsPlainAttentionAndStoresRawValue) {
  auto cfg =
      depth_config(3, attn_config(4, 2, 4, {5, 3}), ref::depth_sources(3, 1, 0), false, false);
  auto c = make_case(cfg, 7);
  auto fwd = forward(cfg, c.inputs);
  ref::VanillaConfig v{cfg.attn, 1};
  ref::VanillaInputs vin{{c.inputs.q[0]}, {c.inputs.k[0]}, {c.inputs.v[0]}};
  auto vf = forward(v, vin);
  expect_equal(fwd.out[0], vf.out[0]);
  expect_equal(fwd.lse[0], vf.lse[0]);
  expect_equal(fwd.vhat[0], c.inputs.v[0]);
  expect_equal(fwd.khat[0], c.inputs.k[0]);
  // Layer 1 mixes: its v̂ is a convex combination of v̂_0 and raw v_1, not v_1 itself.
  double diff = 0;
  for (int64_t e = 0; e < fwd.vhat[1].numel(); ++e)
    diff = std::max(diff, std::abs(fwd.vhat[1][e] - c.inputs.v[1][e]));
  EXPECT_GT(diff, 1e-3);
}

TEST(ReferenceDepth, GroupMeanQueryAndHandComputedMix) {
  // MQA, 2 query heads, one token, L = 2: check z, α and v̂_1 against the formulas directly.
  auto cfg = depth_config(2, attn_config(2, 1, 4, {1}), {{}, {0}}, false, false);
  auto c = make_case(cfg, 8);
  auto fwd = forward(cfg, c.inputs);
  double qbar[4], z0 = 0, z1 = 0;
  for (int i = 0; i < 4; ++i)
    qbar[i] = 0.5 * (c.inputs.q[1].row(0, 0)[i] + c.inputs.q[1].row(0, 1)[i]);
  for (int i = 0; i < 4; ++i) {
    z0 += qbar[i] * c.inputs.k[0].row(0, 0)[i] / 2.0;  // source: k̂_0 (= k_0 without norm)
    z1 += qbar[i] * c.inputs.k[1].row(0, 0)[i] / 2.0;  // self: k̂_1
  }
  const double a0 = 1.0 / (1.0 + std::exp(z1 - z0));
  for (int i = 0; i < 4; ++i)
    EXPECT_NEAR(fwd.vhat[1].row(0, 0)[i],
                a0 * c.inputs.v[0].row(0, 0)[i] + (1 - a0) * c.inputs.v[1].row(0, 0)[i], 1e-14);
}

// ---- ResFormer / SVFormer
// ------------------------------------------------------------------------

TEST(ReferenceResFormer, GradientsScalarAndHead) {
  expect_gradients_match(
      ref::ResFormerConfig{attn_config(4, 2, 4, {5, 0, 4}), 4, ref::LambdaGranularity::Scalar});
  expect_gradients_match(
      ref::ResFormerConfig{attn_config(2, 2, 4, {5, 4}), 4, ref::LambdaGranularity::Head});
}

TEST(ReferenceResFormer, IdentityLambdasGiveVanillaAndSVFormerIsTheOtherExtreme) {
  ref::ResFormerConfig cfg{attn_config(4, 2, 4, {5, 4}), 3, ref::LambdaGranularity::Head};
  auto c = make_case(cfg, 9);
  auto in = c.inputs;
  for (int l = 1; l < 3; ++l) {
    std::fill(in.lambda_self[l].data.begin(), in.lambda_self[l].data.end(), 1.0);
    std::fill(in.lambda_first[l].data.begin(), in.lambda_first[l].data.end(), 0.0);
  }
  auto fr = forward(cfg, in);
  auto fv = forward(ref::VanillaConfig{cfg.attn, 3}, ref::VanillaInputs{in.q, in.k, in.v});
  for (int l = 0; l < 3; ++l) expect_equal(fr.out[l], fv.out[l]);

  for (int l = 1; l < 3; ++l) {
    std::fill(in.lambda_self[l].data.begin(), in.lambda_self[l].data.end(), 0.0);
    std::fill(in.lambda_first[l].data.begin(), in.lambda_first[l].data.end(), 1.0);
  }
  fr = forward(cfg, in);
  auto fs = forward(ref::SVFormerConfig{cfg.attn, 3}, ref::SVFormerInputs{in.q, in.k, in.v[0]});
  for (int l = 0; l < 3; ++l) expect_equal(fr.out[l], fs.out[l]);
}

TEST(ReferenceSVFormer, Gradients) {
  expect_gradients_match(ref::SVFormerConfig{attn_config(4, 2, 4, {5, 0, 4}), 4});
}

// ---- ExoFormer
// -----------------------------------------------------------------------------------

ref::ExoFormerConfig exo_config(bool dynamic, ref::LambdaGranularity g, ref::AttentionConfig a,
                                int L = 3) {
  ref::ExoFormerConfig c;
  c.attn = std::move(a);
  c.num_layers = L;
  c.dynamic = dynamic;
  c.granularity = g;
  return c;
}

TEST(ReferenceExoFormer, GradientsStaticAndDynamicAllGranularities) {
  for (bool dynamic : {false, true})
    for (auto g : {ref::LambdaGranularity::Elementwise, ref::LambdaGranularity::Head,
                   ref::LambdaGranularity::Scalar}) {
      SCOPED_TRACE(std::string(dynamic ? "dynamic " : "static ") + ref::to_string(g));
      expect_gradients_match(exo_config(dynamic, g, attn_config(2, 2, 4, {4, 3})));
    }
}
TEST(ReferenceExoFormer, GradientsGqaVarlen) {
  expect_gradients_match(
      exo_config(true, ref::LambdaGranularity::Head, attn_config(4, 2, 4, {4, 0, 3})));
}

TEST(ReferenceExoFormer, NoAnchorEqualsGatedAttention) {
  // λ1 = 0, λ2 = 1 (static): P̃ = P, and ExoFormer is Gated Attention (QK-norm, RoPE, elementwise
  // gate).
  auto cfg =
      exo_config(false, ref::LambdaGranularity::Elementwise, attn_config(4, 2, 4, {5, 3}), 2);
  auto c = make_case(cfg, 10);
  auto in = c.inputs;
  for (int p = 0; p < ref::kExoStreams; ++p)
    for (int l = 0; l < 2; ++l) {
      std::fill(in.lambda1[p][l].data.begin(), in.lambda1[p][l].data.end(), 0.0);
      std::fill(in.lambda2[p][l].data.begin(), in.lambda2[p][l].data.end(), 1.0);
    }
  auto fe = forward(cfg, in);
  ref::GatedConfig gc{
      cfg.attn, 2, ref::GateKind::Elementwise, {true, true, cfg.rope_theta, cfg.norm_eps}};
  ref::GatedInputs gi{in.p[0], in.p[1], in.p[2], in.p[3], in.gamma_q, in.gamma_k};
  auto fg = forward(gc, gi);
  for (int l = 0; l < 2; ++l) expect_equal(fe.out[l], fg.out[l]);
}

// ---- MEA
// -----------------------------------------------------------------------------------------

ref::MeaConfig mea_config(ref::MeaSite site, int Hc, ref::AttentionConfig a, int L = 2) {
  ref::MeaConfig c;
  c.attn = std::move(a);
  c.num_layers = L;
  c.num_component_heads = Hc;
  c.site = site;
  return c;
}

TEST(ReferenceMea, GradientsBothSitesFullAndVirtualHeads) {
  for (auto site : {ref::MeaSite::KeyValue, ref::MeaSite::Output})
    for (int Hc : {4, 2}) {
      SCOPED_TRACE(std::string(ref::to_string(site)) + " H_c=" + std::to_string(Hc));
      expect_gradients_match(mea_config(site, Hc, attn_config(4, 4, 4, {4, 3})));
    }
  expect_gradients_match(mea_config(ref::MeaSite::KeyValue, 3, attn_config(4, 2, 4, {3, 0, 4})));
}

TEST(ReferenceMea, IdentityCompositionIsVanillaBeforeTheOutputNorm) {
  auto cfg = mea_config(ref::MeaSite::Output, 2, attn_config(2, 2, 4, {5, 3}), 1);
  cfg.rope = false;
  auto c = make_case(cfg, 12);
  auto in = c.inputs;
  for (auto* A : {&in.a_k[0], &in.a_v[0]}) *A = Tensor({2, 2}), A->at(0, 0) = A->at(1, 1) = 1.0;
  auto fm = forward(cfg, in);
  auto fv = forward(ref::VanillaConfig{cfg.attn, 1}, ref::VanillaInputs{in.q, in.kc, in.vc});
  expect_equal(fm.attn_out[0], fv.out[0]);
  expect_equal(fm.lse[0], fv.lse[0]);
  expect_equal(fm.out[0],
               ref::group_norm_rows(fv.out[0], in.gn_gamma_o[0], in.gn_beta_o[0], cfg.gn_eps));
}

// ---- Gated Attention
// -----------------------------------------------------------------------------

TEST(ReferenceGated, GradientsElementwiseAndHeadwise) {
  expect_gradients_match(
      ref::GatedConfig{attn_config(4, 2, 4, {4, 0, 5}), 2, ref::GateKind::Elementwise, {}});
  expect_gradients_match(
      ref::GatedConfig{attn_config(4, 2, 4, {4, 5}), 2, ref::GateKind::Headwise, {}});
  expect_gradients_match(ref::GatedConfig{
      attn_config(2, 1, 4, {6}), 1, ref::GateKind::Headwise, {false, false, 1e4, 1e-6}});
}

TEST(ReferenceGated, ZeroGateLogitHalvesVanilla) {
  ref::GatedConfig cfg{
      attn_config(4, 2, 4, {4, 3}), 1, ref::GateKind::Headwise, {false, false, 1e4, 1e-6}};
  auto c = make_case(cfg, 14);
  auto in = c.inputs;
  std::fill(in.g[0].data.begin(), in.g[0].data.end(), 0.0);
  auto fg = forward(cfg, in);
  auto fv = forward(ref::VanillaConfig{cfg.attn, 1}, ref::VanillaInputs{in.q, in.k, in.v});
  for (auto& x : fv.out[0].data) x *= 0.5;
  expect_equal(fg.out[0], fv.out[0]);
}

}  // namespace
