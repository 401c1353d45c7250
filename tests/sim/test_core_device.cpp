// strata/core as device code: the token-local probe kernels (a row of 64 split over 8 lanes,
// reductions by shuffles) executed in the simulator under every schedule, against the same core
// functions run on the host with one thread per row. The two differ only by the order of the
// fp32 sums, so they agree to a couple of units of the storage type's roundoff.
#include "../core/core_device_kernels.cuh"

#include <gtest/gtest.h>

#include <functional>
#include <string>
#include <tuple>
#include <vector>

#include "common.hpp"

namespace {

namespace core = strata::core;
using core_device::kD;
using strata_test::all_schedules;
using strata_test::Rng;
using strata_test::SimGuard;
using T = __nv_bfloat16;

constexpr int kBlockThreads = 128;

std::vector<T> random_bf16(Rng& rng, size_t n, float spread = 1.f, float mean = 0.f) {
  std::vector<T> v(n);
  for (auto& x : v) x = core::from_float<T>(mean + spread * rng.uniform());
  return v;
}
std::vector<float> random_f32(Rng& rng, size_t n, float spread = 1.f, float mean = 0.f) {
  std::vector<float> v(n);
  for (auto& x : v) x = mean + spread * rng.uniform();
  return v;
}
int blocks_for(int rows) {
  return (rows + core_device::kRowsPerBlock - 1) / core_device::kRowsPerBlock;
}

/// Device and host results agree to two roundoffs of the storage type plus fp32 reassociation.
template <class U>
::testing::AssertionResult close(const std::vector<U>& dev, const std::vector<float>& host,
                                 float u) {
  for (size_t i = 0; i < host.size(); ++i) {
    const float d = core::to_float(dev[i]), h = host[i];
    if (!(std::fabs(d - h) <= 2 * u * std::fabs(h) + 1e-5f * (1.f + std::fabs(h))))
      return ::testing::AssertionFailure() << "element " << i << ": device " << d << " host " << h;
  }
  return ::testing::AssertionSuccess();
}

/// Runs `attempt` (launch + compare) under every schedule.
void all_schedules_pass(const std::function<::testing::AssertionResult()>& attempt) {
  SimGuard guard;
  for (const auto& s : all_schedules()) {
    strata::sim::set_schedule(s);
    EXPECT_TRUE(attempt()) << s.to_string();
  }
}

TEST(CoreDevice, QkNormRope) {
  const int tokens = 7, heads = 3, rows = tokens * heads;  // 21 rows: a ragged second block
  Rng rng(1);
  const auto x = random_bf16(rng, size_t(rows) * kD), gamma = random_bf16(rng, kD, 0.2f, 1.f);
  std::vector<float> host(size_t(rows) * kD);
  for (int r = 0; r < rows; ++r) {
    float v[kD], g[kD];
    core::load_row(x.data() + size_t(r) * kD, v);
    core::load_row(gamma.data(), g);
    core::rmsnorm_forward(v, g, kD, 1e-6f, v);
    core::rope_forward(v, float(r / heads), 1e4f);
    for (int i = 0; i < kD; ++i)
      host[size_t(r) * kD + size_t(i)] = core::to_float(core::from_float<T>(v[i]));
  }
  all_schedules_pass([&] {
    std::vector<T> y(host.size(), core::from_float<T>(NAN));
    const auto st =
        strata::launch(core_device::qk_norm_rope<T>, dim3(blocks_for(rows)), dim3(kBlockThreads), 0,
                       0, x.data(), gamma.data(), y.data(), rows, heads, 1e-6f, 1e4f);
    if (!st.ok()) return ::testing::AssertionFailure() << st.message();
    return close(y, host, core::kUnitRoundoff<T>);
  });
}

TEST(CoreDevice, DepthMixForwardAndBackward) {
  for (int G : {1, 4}) {  // MHA and GQA 4
    const int tokens = 5, kv_heads = 2, heads = kv_heads * G, rows = tokens * kv_heads;
    const int n_cand = 3;  // two sources and self
    Rng rng(uint64_t(10 + G));
    const auto q = random_bf16(rng, size_t(tokens) * heads * kD, 2.f);
    std::vector<std::vector<T>> kappa, nu;
    for (int c = 0; c < n_cand; ++c) {
      kappa.push_back(random_bf16(rng, size_t(rows) * kD, 2.f));
      nu.push_back(random_bf16(rng, size_t(rows) * kD));
    }
    const auto g = random_bf16(rng, size_t(rows) * kD);
    // host: one thread per row
    std::vector<float> vhat(size_t(rows) * kD), dq(vhat.size());
    std::vector<std::vector<float>> dk(size_t(n_cand), vhat), dn(size_t(n_cand), vhat);
    for (int r = 0; r < rows; ++r) {
      const int token = r / kv_heads, grp = r % kv_heads;
      float qbar[kD] = {}, gr[kD];
      for (int h = 0; h < G; ++h) {
        float qh[kD];
        core::load_row(q.data() + (size_t(token) * heads + size_t(grp * G + h)) * kD, qh);
        core::depth_query_add(qh, 1.f / float(G), qbar);
      }
      core::load_row(g.data() + size_t(r) * kD, gr);
      core::DepthMix<kD> mix;
      core::DepthMixGrad<core_device::kMaxCandidates> grad;
      for (int c = 0; c < n_cand; ++c) {
        float k[kD], v[kD];
        core::load_row(kappa[size_t(c)].data() + size_t(r) * kD, k);
        core::load_row(nu[size_t(c)].data() + size_t(r) * kD, v);
        mix.add(qbar, k, v, core::depth_scale(kD));
        grad.add(qbar, k, v, gr, core::depth_scale(kD));
      }
      grad.finish();
      float out[kD], dqr[kD] = {};
      mix.finalize(out);
      for (int c = 0; c < n_cand; ++c) {
        float k[kD], dkr[kD], dnr[kD];
        core::load_row(kappa[size_t(c)].data() + size_t(r) * kD, k);
        grad.candidate_grads(c, qbar, k, gr, core::depth_scale(kD), dqr, dkr, dnr);
        for (int i = 0; i < kD; ++i) {
          dk[size_t(c)][size_t(r) * kD + size_t(i)] = dkr[i];
          dn[size_t(c)][size_t(r) * kD + size_t(i)] = dnr[i];
        }
      }
      for (int i = 0; i < kD; ++i) {
        vhat[size_t(r) * kD + size_t(i)] = core::to_float(core::from_float<T>(out[i]));
        dq[size_t(r) * kD + size_t(i)] = dqr[i];
      }
    }
    std::vector<const T*> kp, np;
    for (int c = 0; c < n_cand; ++c)
      kp.push_back(kappa[size_t(c)].data()), np.push_back(nu[size_t(c)].data());
    all_schedules_pass([&] {
      std::vector<T> out(vhat.size(), core::from_float<T>(NAN));
      auto st = strata::launch(core_device::depth_mix<T>, dim3(blocks_for(rows)),
                               dim3(kBlockThreads), 0, 0, q.data(), kp.data(), np.data(), n_cand,
                               out.data(), rows, heads, kv_heads);
      if (!st.ok()) return ::testing::AssertionFailure() << st.message();
      if (auto r = close(out, vhat, core::kUnitRoundoff<T>); !r)
        return r << " (vhat, G " << G << ")";
      std::vector<float> dqd(dq.size(), NAN);
      std::vector<std::vector<float>> dkd(size_t(n_cand), dqd), dnd = dkd;
      std::vector<float*> dkp, dnp;
      for (int c = 0; c < n_cand; ++c)
        dkp.push_back(dkd[size_t(c)].data()), dnp.push_back(dnd[size_t(c)].data());
      st = strata::launch(core_device::depth_mix_backward<T>, dim3(blocks_for(rows)),
                          dim3(kBlockThreads), 0, 0, q.data(), kp.data(), np.data(), n_cand,
                          g.data(), dqd.data(), dkp.data(), dnp.data(), rows, heads, kv_heads);
      if (!st.ok()) return ::testing::AssertionFailure() << st.message();
      if (auto r = close(dqd, dq, 0x1p-24f); !r) return r << " (dqbar)";
      for (int c = 0; c < n_cand; ++c) {
        if (auto r = close(dkd[size_t(c)], dk[size_t(c)], 0x1p-24f); !r)
          return r << " (dkappa " << c << ")";
        if (auto r = close(dnd[size_t(c)], dn[size_t(c)], 0x1p-24f); !r)
          return r << " (dnu " << c << ")";
      }
      return ::testing::AssertionSuccess();
    });
  }
}

TEST(CoreDevice, AnchorMixNormGate) {
  const int tokens = 6, heads = 4, rows = tokens * heads;
  Rng rng(3);
  const auto anchor = random_bf16(rng, size_t(rows) * kD), p = random_bf16(rng, size_t(rows) * kD);
  const auto gl = random_bf16(rng, size_t(rows) * kD, 3.f);
  const auto ga = random_f32(rng, kD, 0.2f, 1.f), gq = random_f32(rng, kD, 0.2f, 1.f);
  const auto l1 = random_f32(rng, size_t(heads) * kD, 0.3f, 0.5f),
             l2 = random_f32(rng, size_t(heads) * kD, 0.3f, 0.5f);
  const auto s = random_f32(rng, size_t(2 * tokens), 0.4f, 0.5f);
  std::vector<float> host(size_t(rows) * kD);
  for (int r = 0; r < rows; ++r) {
    const int token = r / heads, head = r % heads;
    float a[kD], x[kD], ga_r[kD], gq_r[kD], l1r[kD], l2r[kD], g[kD];
    core::load_row(anchor.data() + size_t(r) * kD, a);
    core::load_row(p.data() + size_t(r) * kD, x);
    core::load_row(gl.data() + size_t(r) * kD, g);
    core::load_row(ga.data(), ga_r);
    core::load_row(gq.data(), gq_r);
    core::load_row(l1.data() + size_t(head) * kD, l1r);
    core::load_row(l2.data() + size_t(head) * kD, l2r);
    core::rmsnorm_forward(a, ga_r, kD, 1e-6f, a);
    core::anchor_mix_forward(a, x, l1r, l2r, s[size_t(2 * token)], s[size_t(2 * token + 1)], x);
    core::rmsnorm_forward(x, gq_r, kD, 1e-6f, x);
    core::gate_forward(x, g, x);
    for (int i = 0; i < kD; ++i)
      host[size_t(r) * kD + size_t(i)] = core::to_float(core::from_float<T>(x[i]));
  }
  all_schedules_pass([&] {
    std::vector<T> out(host.size(), core::from_float<T>(NAN));
    const auto st = strata::launch(core_device::anchor_mix_norm_gate<T>, dim3(blocks_for(rows)),
                                   dim3(kBlockThreads), 0, 0, anchor.data(), p.data(), gl.data(),
                                   ga.data(), gq.data(), l1.data(), l2.data(), s.data(), out.data(),
                                   rows, heads, 1e-6f, 1e-6f);
    if (!st.ok()) return ::testing::AssertionFailure() << st.message();
    return close(out, host, core::kUnitRoundoff<T>);
  });
}

TEST(CoreDevice, HeadComposeGroupNorm) {
  for (int components : {4, 2}) {  // H_c = H and H_c = H/2 (virtual heads)
    const int tokens = 5, heads = 4, rows = tokens * heads;
    Rng rng(uint64_t(20 + components));
    const auto kc = random_bf16(rng, size_t(tokens) * components * kD);
    const auto a = random_f32(rng, size_t(components) * heads, 0.7f);
    const auto gamma = random_f32(rng, size_t(heads) * kD, 0.2f, 1.f),
               beta = random_f32(rng, size_t(heads) * kD, 0.1f);
    std::vector<float> host(size_t(rows) * kD);
    for (int r = 0; r < rows; ++r) {
      const int token = r / heads, head = r % heads;
      float comp[8][kD], x[kD], g[kD], b[kD];
      for (int c = 0; c < components; ++c)
        core::load_row(kc.data() + (size_t(token) * components + size_t(c)) * kD, comp[c]);
      core::head_compose_forward(a.data(), heads, components, head, comp, x);
      core::load_row(gamma.data() + size_t(head) * kD, g);
      core::load_row(beta.data() + size_t(head) * kD, b);
      core::group_norm_forward(x, g, b, kD, 1e-5f, x);
      for (int i = 0; i < kD; ++i)
        host[size_t(r) * kD + size_t(i)] = core::to_float(core::from_float<T>(x[i]));
    }
    all_schedules_pass([&] {
      std::vector<T> out(host.size(), core::from_float<T>(NAN));
      const auto st = strata::launch(core_device::compose_group_norm<T, 8>, dim3(blocks_for(rows)),
                                     dim3(kBlockThreads), 0, 0, kc.data(), a.data(), gamma.data(),
                                     beta.data(), out.data(), rows, heads, components, 1e-5f);
      if (!st.ok()) return ::testing::AssertionFailure() << st.message();
      return close(out, host, core::kUnitRoundoff<T>);
    });
  }
}

TEST(CoreDevice, NormAndGateBackwardOnSplitRows) {
  const int rows = 19;  // two blocks, the second ragged
  Rng rng(7);
  const auto x = random_bf16(rng, size_t(rows) * kD, 2.f, 0.3f),
             dy = random_bf16(rng, size_t(rows) * kD);
  const auto gl = random_bf16(rng, size_t(rows), 4.f);
  const auto gamma = random_f32(rng, kD, 0.2f, 1.f);
  const float eps = 1e-5f;
  const size_t n = size_t(rows) * kD;
  std::vector<float> dx_rms(n), dg_rms(n), dx_gn(n), dg_gn(n), db_gn(n), d_o(n),
      dgate(static_cast<size_t>(rows));
  for (int r = 0; r < rows; ++r) {
    const size_t base = size_t(r) * kD;
    float xr[kD], g[kD], dyr[kD], dx[kD], dg[kD] = {}, db[kD] = {};
    core::load_row(x.data() + base, xr);
    core::load_row(gamma.data(), g);
    core::load_row(dy.data() + base, dyr);
    core::rmsnorm_backward(xr, g, dyr, kD, eps, dx, dg);
    std::copy(dx, dx + kD, dx_rms.begin() + long(base));
    std::copy(dg, dg + kD, dg_rms.begin() + long(base));
    std::fill(dg, dg + kD, 0.f);
    core::group_norm_backward(xr, g, dyr, kD, eps, dx, dg, db);
    std::copy(dx, dx + kD, dx_gn.begin() + long(base));
    std::copy(dg, dg + kD, dg_gn.begin() + long(base));
    std::copy(db, db + kD, db_gn.begin() + long(base));
    dgate[size_t(r)] = core::gate_backward(xr, core::to_float(gl[size_t(r)]), dyr, dx);
    std::copy(dx, dx + kD, d_o.begin() + long(base));
  }
  all_schedules_pass([&] {
    std::vector<float> a(n, NAN), b(n, NAN), c(n, NAN), d(n, NAN), e(n, NAN), f(n, NAN),
        gd(size_t(rows), NAN);
    const auto st = strata::launch(core_device::norm_gate_backward<T>, dim3(blocks_for(rows)),
                                   dim3(kBlockThreads), 0, 0, x.data(), gamma.data(), dy.data(),
                                   gl.data(), a.data(), b.data(), c.data(), d.data(), e.data(),
                                   f.data(), gd.data(), rows, eps);
    if (!st.ok()) return ::testing::AssertionFailure() << st.message();
    for (auto [dev, host, what] :
         {std::tuple{&a, &dx_rms, "rmsnorm dx"}, std::tuple{&b, &dg_rms, "rmsnorm dgamma"},
          std::tuple{&c, &dx_gn, "group norm dx"}, std::tuple{&d, &dg_gn, "group norm dgamma"},
          std::tuple{&e, &db_gn, "group norm dbeta"}, std::tuple{&f, &d_o, "gate dO"},
          std::tuple{&gd, &dgate, "headwise gate dg"}})
      if (auto r = close(*dev, *host, 0x1p-22f); !r) return r << " (" << what << ")";
    return ::testing::AssertionSuccess();
  });
}

}  // namespace
