// strata::core::OnlineSoftmax against fp64 softmax: streamed in tiles, merged in any order,
// fully masked rows, and logits of +-1e4.
#include <strata/core/online_softmax.hpp>

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <vector>

namespace {

using strata::core::kLog2e;
using strata::core::OnlineSoftmax;

struct Row {
  std::vector<float> x;  // natural-unit scores; -inf = masked
  std::vector<float> v;  // one value per score (a 1-wide "V")
};

Row random_row(uint64_t seed, int n, float spread, int masked_every = 0) {
  Row r;
  uint64_t s = seed * 0x9E3779B97F4A7C15ull + 7;
  auto u = [&] {
    s = s * 6364136223846793005ull + 1442695040888963407ull;
    return float(s >> 40) / float(1 << 24) * 2.f - 1.f;
  };
  for (int j = 0; j < n; ++j) {
    r.x.push_back(masked_every && j % masked_every == 0 ? -INFINITY : u() * spread);
    r.v.push_back(u());
  }
  return r;
}

// fp64 reference: output sum_j softmax(x)_j v_j and LSE; 0 and -inf for an empty row
void reference(const Row& r, double& out, double& lse) {
  double m = -INFINITY;
  for (float x : r.x) m = std::max(m, double(x));
  if (m == -INFINITY) {
    out = 0;
    lse = -INFINITY;
    return;
  }
  double l = 0, acc = 0;
  for (size_t j = 0; j < r.x.size(); ++j) {
    const double p = std::exp(double(r.x[j]) - m);
    l += p;
    acc += p * r.v[j];
  }
  out = acc / l;
  lse = m + std::log(l);
}

// Streams r[lo, hi) in tiles of `tile` as a kernel would: tile max, rescale, weights, sum.
OnlineSoftmax stream(const Row& r, size_t lo, size_t hi, size_t tile, float& acc) {
  OnlineSoftmax st;
  acc = 0.f;
  for (size_t t0 = lo; t0 < hi; t0 += tile) {
    const size_t t1 = std::min(hi, t0 + tile);
    float tmax = -INFINITY;
    for (size_t j = t0; j < t1; ++j) tmax = std::max(tmax, r.x[j] * kLog2e);
    acc *= st.raise_max(tmax);
    float psum = 0.f;
    for (size_t j = t0; j < t1; ++j) {
      const float p = st.weight(r.x[j] * kLog2e);
      psum += p;
      acc += p * r.v[j];
    }
    st.add(psum);
  }
  return st;
}

void expect_close(float out, float lse, double ref_out, double ref_lse, const char* what) {
  ASSERT_FALSE(std::isnan(out)) << what;
  ASSERT_FALSE(std::isnan(lse)) << what;
  EXPECT_NEAR(out, ref_out, 2e-6 + 2e-6 * std::fabs(ref_out)) << what;
  if (ref_lse == -INFINITY)
    EXPECT_EQ(lse, -INFINITY) << what;
  else
    EXPECT_NEAR(lse, ref_lse, 4e-6 * std::max(1.0, std::fabs(ref_lse))) << what;
}

TEST(OnlineSoftmax, StreamedTilesMatchFp64) {
  for (int n : {1, 2, 17, 64, 129, 257})
    for (size_t tile : {size_t(1), size_t(16), size_t(64)})
      for (int masked : {0, 3})
        for (float spread : {1.f, 30.f}) {
          const Row r = random_row(uint64_t(n * 131 + int(tile)), n, spread, masked);
          double ro, rl;
          reference(r, ro, rl);
          float acc;
          const OnlineSoftmax st = stream(r, 0, r.x.size(), tile, acc);
          expect_close(acc * st.inv_sum(), st.lse(), ro, rl, "stream");
        }
}

TEST(OnlineSoftmax, FullyMaskedRowGivesZeroAndMinusInfinity) {
  Row r;
  r.x.assign(40, -INFINITY);
  r.v.assign(40, 1.f);
  float acc;
  const OnlineSoftmax st = stream(r, 0, r.x.size(), 16, acc);
  EXPECT_EQ(st.m, -INFINITY);
  EXPECT_EQ(st.l, 0.f);
  EXPECT_EQ(acc * st.inv_sum(), 0.f);
  EXPECT_EQ(st.lse(), -INFINITY);
}

TEST(OnlineSoftmax, LeadingMaskedTilesThenScores) {
  Row r = random_row(5, 80, 5.f);
  for (int j = 0; j < 48; ++j) r.x[size_t(j)] = -INFINITY;  // three masked tiles of 16 first
  double ro, rl;
  reference(r, ro, rl);
  float acc;
  const OnlineSoftmax st = stream(r, 0, r.x.size(), 16, acc);
  expect_close(acc * st.inv_sum(), st.lse(), ro, rl, "leading masked");
}

TEST(OnlineSoftmax, ExtremeLogitsDoNotOverflow) {
  for (float big : {1e4f, -1e4f}) {
    Row r = random_row(9, 100, 1.f);
    for (size_t j = 0; j < r.x.size(); j += 7) r.x[j] = big + float(j);
    double ro, rl;
    reference(r, ro, rl);
    float acc;
    const OnlineSoftmax st = stream(r, 0, r.x.size(), 32, acc);
    ASSERT_TRUE(std::isfinite(st.l));
    expect_close(acc * st.inv_sum(), st.lse(), ro, rl, big > 0 ? "+1e4" : "-1e4");
  }
}

TEST(OnlineSoftmax, MergeOfSplitsMatchesOneStreamInAnyOrder) {
  const Row r = random_row(11, 300, 20.f, 5);
  double ro, rl;
  reference(r, ro, rl);
  const size_t cuts[] = {0, 37, 128, 128, 250, 300};  // includes an empty split
  std::vector<OnlineSoftmax> parts;
  std::vector<float> accs;
  for (int i = 0; i < 5; ++i) {
    float acc;
    parts.push_back(stream(r, cuts[i], cuts[i + 1], 16, acc));
    accs.push_back(acc);
  }
  for (int order = 0; order < 2; ++order) {
    OnlineSoftmax st;
    float acc = 0.f;
    for (int k = 0; k < 5; ++k) {
      const int i = order == 0 ? k : 4 - k;
      float a, b;
      st.merge(parts[size_t(i)], a, b);
      acc = acc * a + accs[size_t(i)] * b;
    }
    expect_close(acc * st.inv_sum(), st.lse(), ro, rl,
                 order == 0 ? "merge forward" : "merge reverse");
  }
  // merging two empty states stays empty without NaN
  OnlineSoftmax e1, e2;
  float a = -1.f, b = -1.f;
  e1.merge(e2, a, b);
  EXPECT_EQ(a, 0.f);
  EXPECT_EQ(b, 0.f);
  EXPECT_EQ(e1.lse(), -INFINITY);
  EXPECT_EQ(e1.inv_sum(), 0.f);
}

TEST(OnlineSoftmax, UpdateOneScoreAtATime) {
  const Row r = random_row(3, 50, 8.f, 4);
  double ro, rl;
  reference(r, ro, rl);
  OnlineSoftmax st;
  float acc = 0.f;
  for (size_t j = 0; j < r.x.size(); ++j) {
    float p;
    acc *= st.update(r.x[j] * kLog2e, p);
    acc += p * r.v[j];
  }
  expect_close(acc * st.inv_sum(), st.lse(), ro, rl, "update");
}

}  // namespace

namespace {

// arch::ex2_ftz as ex2.approx.ftz.f32 behaves (PTX ISA, ex2): -inf gives +0 (so a masked score
// needs no test), results below 2^-126 flush to +0, subnormal inputs count as 0, NaN stays NaN;
// elsewhere exp2f's value (the GPU's is within 2 ulp of it).
TEST(Ex2Ftz, MatchesEx2ApproxFtzSemantics) {
  using strata::arch::ex2_ftz;
  EXPECT_EQ(ex2_ftz(-INFINITY), 0.f);
  EXPECT_FALSE(std::signbit(ex2_ftz(-INFINITY)));
  EXPECT_EQ(ex2_ftz(0.f), 1.f);
  EXPECT_EQ(ex2_ftz(std::ldexp(1.f, -140)), 1.f);  // a subnormal input
  EXPECT_EQ(ex2_ftz(3.f), 8.f);
  EXPECT_EQ(ex2_ftz(-126.f), std::ldexp(1.f, -126));  // the smallest normal survives
  EXPECT_EQ(ex2_ftz(-126.5f), 0.f);                   // a subnormal result does not
  EXPECT_EQ(ex2_ftz(-200.f), 0.f);
  EXPECT_EQ(ex2_ftz(INFINITY), INFINITY);
  EXPECT_TRUE(std::isnan(ex2_ftz(NAN)));
  EXPECT_FLOAT_EQ(ex2_ftz(-1.5f), std::exp2(-1.5f));
}

// What the kernels compute per score: ex2(fma(raw, scale, -offset)) with the row's offset from
// exp_offset(); a row that has seen only masked scores subtracts 0, and its -inf scores weigh 0.
TEST(OnlineSoftmax, ExpOffsetKeepsMaskedRowsFinite) {
  OnlineSoftmax st;
  EXPECT_EQ(st.exp_offset(), 0.f);
  EXPECT_EQ(st.raise_max(-INFINITY), 0.f);
  EXPECT_EQ(st.weight(-INFINITY), 0.f);
  EXPECT_EQ(st.raise_max(2.f), 0.f);  // nothing seen before: l is rescaled by 0
  EXPECT_EQ(st.exp_offset(), 2.f);
  EXPECT_EQ(st.weight(2.f), 1.f);
  EXPECT_EQ(st.weight(-INFINITY), 0.f);
  EXPECT_FLOAT_EQ(st.weight(1.f), 0.5f);
}

}  // namespace
