// The tensor-core flash backward (preprocess, dQ, dK/dV) in the simulator against the fp64
// reference: FlashAttention's rule on every element of dQ, dK and dV, after the kernel forward.
// Every case runs in both modes: deterministic (the default) and fast (atomic dQ).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>

#include "../sim/common.hpp"
#include "flash_harness.hpp"

namespace {

using namespace kernel_test;
using bf16 = __nv_bfloat16;
using fp16 = __half;

/// Runs the case with the instantiation of its head dim.
template <class T>
BwdErrors run_bwd(const Case& c) {
  return with_head_dim<T>(c, []<class U, int D>(const Case& x) { return run_backward<U, D>(x); });
}

template <class T>
void expect_pass_mode(const Case& c) {
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

/// The case in the deterministic and in the fast mode.
template <class T>
void expect_pass(Case c) {
  for (bool deterministic : {true, false}) {
    c.deterministic = deterministic;
    expect_pass_mode<T>(c);
  }
}

TEST(FlashBwd, LengthsThatBreakTiles) {
  for (int len : {1, 2, 17, 127, 128, 129, 257})
    for (bool causal : {false, true}) expect_pass<bf16>(fixed_case(len, 1, 2, 1, 64, causal));
}

TEST(FlashBwd, HeadDimsAndDtypes) {
  for (int d : {64, 96, 128})
    for (bool causal : {false, true}) {
      expect_pass<bf16>(fixed_case(129, 1, 2, 1, d, causal));
      expect_pass<fp16>(fixed_case(129, 1, 2, 1, d, causal));
    }
}

TEST(FlashBwd, GqaRatiosAndMqa) {
  for (int h_k : {8, 4, 2, 1}) expect_pass<bf16>(fixed_case(65, 1, 8, h_k, 64, true));
}

TEST(FlashBwd, SlidingWindows) {
  for (int w : {0, 1, 63, 64, 100})
    for (bool causal : {false, true}) {
      Case c = fixed_case(150, 1, 2, 1, 64, causal);
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
  Case c = fixed_case(80, 1, 2, 1, 64, true);
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

TEST(FlashBwd, FastModeNeedsItsAccumulator) {
  Case c = fixed_case(20, 1, 2, 1, 64, false);
  c.deterministic = false;
  Problem<bf16> pr(c, 64);
  pr.p.dq_accum = nullptr;
  const auto st = strata::api::flash_bwd(pr.p);
  ASSERT_FALSE(st.ok());
  EXPECT_NE(std::string(st.message()).find("dq_accum"), std::string::npos) << st.message();
  for (const bf16& x : pr.dq) EXPECT_TRUE(std::isnan(float(strata::core::to_float(x))));
  pr.p.total_q = 0;  // nothing to accumulate: no workspace needed
  EXPECT_EQ(strata::api::flash_bwd_dq_accum_bytes(pr.p), 0u);
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
  for (int i = 0; i < 200; ++i) {
    bool bf16_case = true;
    Case c = random_case(rng, 80, uint64_t(1000 + i), bf16_case);
    c.deterministic = i % 2 == 0;  // half of them in the fast mode
    if (bf16_case)
      expect_pass_mode<bf16>(c);
    else
      expect_pass_mode<fp16>(c);
  }
}

}  // namespace
