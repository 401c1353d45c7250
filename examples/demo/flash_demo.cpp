// Strata demo: the kernel zoo's flash-attention forward (examples/zoo/zoo.cuh), executed by the
// SIMT simulator on the CPU, checked against an fp64 reference, with the simulator's counters.
//
//   STRATA_SIM_SCHEDULE=reverse|random:SEED and STRATA_SIM_WORKERS=N change how it runs.
#include <strata/strata.cuh>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <vector>

#include "zoo/zoo.cuh"

namespace {

constexpr int kD = 64;

struct Problem {
  int BH, S;
  std::vector<float> Q, K, V;
};

Problem make_problem(int BH, int S) {
  Problem p{BH, S, {}, {}, {}};
  const size_t n = size_t(BH) * S * kD;
  uint64_t s = 12345;
  auto next = [&] {
    s = s * 6364136223846793005ull + 1442695040888963407ull;
    return float(uint32_t(s >> 40)) / float(1 << 24) * 2.f - 1.f;
  };
  for (auto* v : {&p.Q, &p.K, &p.V}) {
    v->resize(n);
    for (auto& x : *v) x = next();
  }
  return p;
}

// O and LSE in fp64, causal.
void reference(const Problem& p, float scale, std::vector<double>& O, std::vector<double>& lse) {
  O.assign(p.Q.size(), 0.0);
  lse.assign(size_t(p.BH) * p.S, 0.0);
  std::vector<double> w(size_t(p.S));
  for (int b = 0; b < p.BH; ++b)
    for (int i = 0; i < p.S; ++i) {
      const float* q = &p.Q[(size_t(b) * p.S + i) * kD];
      double mx = -INFINITY;
      for (int j = 0; j <= i; ++j) {
        const float* k = &p.K[(size_t(b) * p.S + j) * kD];
        double dot = 0;
        for (int c = 0; c < kD; ++c) dot += double(q[c]) * k[c];
        w[size_t(j)] = dot * scale;
        mx = std::max(mx, w[size_t(j)]);
      }
      double sum = 0;
      for (int j = 0; j <= i; ++j) sum += w[size_t(j)] = std::exp(w[size_t(j)] - mx);
      lse[size_t(b) * p.S + i] = mx + std::log(sum);
      for (int j = 0; j <= i; ++j)
        for (int c = 0; c < kD; ++c)
          O[(size_t(b) * p.S + i) * kD + c] +=
              w[size_t(j)] / sum * p.V[(size_t(b) * p.S + j) * kD + c];
    }
}

}  // namespace

int main() {
  const int BH = 4, S = 200;
  const float scale = 1.f / std::sqrt(float(kD));
  Problem p = make_problem(BH, S);
  std::vector<float> O(p.Q.size(), NAN), lse(size_t(BH) * S, NAN);

  const auto t0 = std::chrono::steady_clock::now();
  const strata::Status st =
      strata::launch(zoo::flash_fwd_simt<kD, /*causal=*/true>, dim3((S + 15) / 16, BH), dim3(128),
                     0, 0, p.Q.data(), p.K.data(), p.V.data(), O.data(), lse.data(), S, scale);
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (!st.ok()) {
    std::fprintf(stderr, "launch failed: %s\n", st.message());
    return 1;
  }
  std::vector<double> Oref, lse_ref;
  reference(p, scale, Oref, lse_ref);
  double err_o = 0, err_lse = 0;
  for (size_t i = 0; i < O.size(); ++i) err_o = std::max(err_o, std::fabs(O[i] - Oref[i]));
  for (size_t i = 0; i < lse.size(); ++i)
    err_lse = std::max(err_lse, std::fabs(lse[i] - lse_ref[i]));
  const double flops = 4.0 * BH * double(S) * S * kD / 2;  // FlashAttention convention, causal

  const auto c = strata::sim::last_launch_counters();
  const auto& o = strata::sim::options();
  std::printf(
      "Strata demo: causal flash-attention forward (f32, BH=%d, S=%d, D=%d) in the SIMT "
      "simulator\n",
      BH, S, kD);
  std::printf("  schedule %s, %u worker(s), %.3f s, %.1f MFLOP/s\n", o.schedule.to_string().c_str(),
              o.workers, secs, flops / secs / 1e6);
  std::printf("  max |O - O_fp64|     = %.3e   (tolerance 2e-5)\n", err_o);
  std::printf("  max |LSE - LSE_fp64| = %.3e   (tolerance 2e-5)\n", err_lse);
  std::printf(
      "  counters: %llu blocks, %llu threads, %llu barriers (%llu arrivals), %llu warp collectives "
      "(%llu shuffles), %llu fiber switches\n",
      (unsigned long long)c.blocks, (unsigned long long)c.threads, (unsigned long long)c.barriers,
      (unsigned long long)c.barrier_arrivals, (unsigned long long)c.warp_collectives,
      (unsigned long long)c.shuffles, (unsigned long long)c.fiber_switches);
  const bool ok = err_o <= 2e-5 && err_lse <= 2e-5;
  std::printf("%s\n", ok ? "PASS" : "FAIL");
  return ok ? 0 : 1;
}
