// The tensor-core flash backward (preprocess, dQ, dK/dV) in the simulator against the fp64
// reference: FlashAttention's rule on every element of dQ, dK and dV, after the kernel forward.
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>

#include "../sim/common.hpp"
#include "flash_harness.hpp"

namespace {

using namespace kernel_test;
using bf16 = __nv_bfloat16;
using fp16 = __half;

template <class T>
BwdErrors run_bwd(const Case& c) {
  switch (c.d) {
    case 64:
      return run_backward<T, 64>(c);
    case 96:
      return run_backward<T, 96>(c);
    case 128:
      return run_backward<T, 128>(c);
  }
  BwdErrors e;
  e.status = "head dim not compiled in the test";
  return e;
}

template <class T>
void expect_pass(const Case& c) {
  const BwdErrors e = run_bwd<T>(c);
  const char* names[3] = {"dQ", "dK", "dV"};
  std::string detail;
  for (int g = 0; g < 3; ++g)
    detail += std::string(" ") + names[g] + " " + std::to_string(e.kernel[g]) + " (naive " +
              std::to_string(e.naive[g]) + ")";
  if (getenv("STRATA_VERBOSE"))
    printf("%s:%s ratio %.3g\n", c.describe().c_str(), detail.c_str(), e.worst_ratio());
  EXPECT_TRUE(e.pass()) << c.describe() << ":" << detail << (e.nan ? " NaN" : "") << " "
                        << e.status;
}

Case fixed(int len, int batch, int h, int h_k, int d, bool causal) {
  Case c;
  c.lens_q.assign(size_t(batch), len);
  c.h = h, c.h_k = h_k, c.d = d, c.causal = causal;
  c.varlen = false;
  return c;
}

TEST(FlashBwd, LengthsThatBreakTiles) {
  for (int len : {1, 2, 17, 127, 128, 129, 257})
    for (bool causal : {false, true}) expect_pass<bf16>(fixed(len, 1, 2, 1, 64, causal));
}

TEST(FlashBwd, HeadDimsAndDtypes) {
  for (int d : {64, 96, 128})
    for (bool causal : {false, true}) {
      expect_pass<bf16>(fixed(129, 1, 2, 1, d, causal));
      expect_pass<fp16>(fixed(129, 1, 2, 1, d, causal));
    }
}

TEST(FlashBwd, GqaRatiosAndMqa) {
  for (int h_k : {8, 4, 2, 1}) expect_pass<bf16>(fixed(65, 1, 8, h_k, 64, true));
}

TEST(FlashBwd, SlidingWindows) {
  for (int w : {0, 1, 63, 64, 100})
    for (bool causal : {false, true}) {
      Case c = fixed(150, 1, 2, 1, 64, causal);
      c.window_left = w;
      expect_pass<bf16>(c);
    }
}

TEST(FlashBwd, VarlenWithEmptySequenceAndFullyMaskedRows) {
  Case c;
  c.lens_q = {17, 0, 100, 1};
  c.h = 4, c.h_k = 2, c.d = 64;
  for (bool causal : {false, true}) {
    c.causal = causal;
    expect_pass<bf16>(c);
    expect_pass<fp16>(c);
  }
  Case m;  // more queries than keys: fully masked rows (their gradients are 0); a sequence without
           // keys
  m.lens_q = {70, 5, 3};
  m.lens_k = {20, 130, 0};
  m.h = 2, m.h_k = 1, m.d = 64, m.causal = true;
  expect_pass<bf16>(m);
  m.window_left = 3;
  expect_pass<bf16>(m);
}

TEST(FlashBwd, LogitsOfTenThousandAndCustomScale) {
  Case c = fixed(80, 1, 2, 1, 64, true);
  c.spread = 100.0;
  expect_pass<bf16>(c);
  c.spread = 1.0, c.scale = 0.3f, c.causal = false;
  expect_pass<fp16>(c);
}

TEST(FlashBwd, AllSchedules) {
  strata_test::SimGuard guard;
  Case c;
  c.lens_q = {70, 0, 33};
  c.lens_k = {70, 5, 40};
  c.h = 4, c.h_k = 2, c.d = 64, c.causal = true, c.window_left = 20;
  for (const auto& s : strata_test::all_schedules()) {
    strata::sim::set_schedule(s);
    expect_pass<bf16>(c);
  }
}

TEST(FlashBwd, DeterministicAcrossRunsWorkersAndSchedules) {
  // every gradient element is summed by one thread in a fixed order: identical bits whatever the
  // block order (workers) or the thread interleaving (schedules)
  strata_test::SimGuard guard;
  Case c;
  c.lens_q = {150, 40};
  c.h = 4, c.h_k = 1, c.d = 64, c.causal = true;
  const BwdErrors first = run_bwd<bf16>(c);
  ASSERT_TRUE(first.pass());
  ASSERT_FALSE(first.raw.empty());
  for (unsigned workers : {1u, 2u, 3u})
    for (const auto& s : strata_test::all_schedules()) {
      strata::sim::set_workers(workers);
      strata::sim::set_schedule(s);
      const BwdErrors again = run_bwd<bf16>(c);
      EXPECT_TRUE(again.raw == first.raw) << workers << " workers, " << s.to_string();
    }
}

TEST(FlashBwd, RandomizedConfigurations) {
  // 200 seeded valid configurations, forward then backward, every gradient checked.
  Rng rng(4242);
  auto pick = [&](int n) { return int(std::fabs(rng.normal()) * 1e6) % n; };
  for (int i = 0; i < 200; ++i) {
    Case c;
    const int batch = 1 + pick(3);
    c.varlen = pick(2) == 0;
    const int fixed_len = 1 + pick(80);
    for (int b = 0; b < batch; ++b) {
      c.lens_q.push_back(c.varlen ? pick(80) : fixed_len);
      if (c.varlen) c.lens_k.push_back(pick(4) == 0 ? pick(80) : c.lens_q.back());
    }
    const int ratios[] = {1, 2, 4};
    c.h_k = 1 + pick(2);
    c.h = c.h_k * ratios[pick(3)];
    const int dims[] = {64, 96, 128};
    c.d = dims[pick(3)];
    c.causal = pick(2) == 0;
    c.window_left = pick(3) == 0 ? pick(40) : -1;
    c.seed = uint64_t(1000 + i);
    if (pick(2) == 0)
      expect_pass<bf16>(c);
    else
      expect_pass<fp16>(c);
  }
}

}  // namespace
