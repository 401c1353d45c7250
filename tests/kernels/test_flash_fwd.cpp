// The tensor-core flash forward in the simulator against the fp64 reference, FlashAttention's
// error rule on every element of O and LSE: lengths that break tiles, GQA / MQA, head dims,
// causal, windows, varlen with empty sequences, fully masked rows, logits of +-1e4, every
// schedule, and a randomized sweep.
#include <gtest/gtest.h>

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
Errors run(const Case& c) {
  return with_head_dim<T>(c, []<class U, int D>(const Case& x) { return run_forward<U, D>(x); });
}

template <class T>
void expect_pass(const Case& c) {
  const Errors e = run<T>(c);
  if (getenv("STRATA_VERBOSE"))
    printf("%s: O %.3g (naive %.3g) LSE %.3g (naive %.3g)\n", c.describe().c_str(), e.o_kernel,
           e.o_naive, e.lse_kernel, e.lse_naive);
  EXPECT_TRUE(e.pass()) << c.describe() << ": O " << e.o_kernel << " (naive " << e.o_naive
                        << "), LSE " << e.lse_kernel << " (naive " << e.lse_naive << ")"
                        << (e.nan ? " NaN" : "") << (e.lse_inf_mismatch ? " -inf mismatch" : "")
                        << " " << e.status;
}

TEST(FlashFwd, LengthsThatBreakTiles) {
  for (int len : {1, 2, 17, 127, 128, 129, 257})
    for (bool causal : {false, true}) expect_pass<bf16>(fixed_case(len, 2, 2, 1, 64, causal));
}

TEST(FlashFwd, HeadDimsAndDtypes) {
  for (int d : {64, 96, 128})
    for (bool causal : {false, true}) {
      expect_pass<bf16>(fixed_case(129, 1, 4, 2, d, causal));
      expect_pass<fp16>(fixed_case(129, 1, 4, 2, d, causal));
    }
}

TEST(FlashFwd, GqaRatiosAndMqa) {
  for (int h_k : {8, 4, 2, 1}) expect_pass<bf16>(fixed_case(65, 1, 8, h_k, 64, true));
}

TEST(FlashFwd, SlidingWindows) {
  for (int w : {0, 1, 63, 64, 100})
    for (bool causal : {false, true}) {
      Case c = fixed_case(200, 1, 2, 2, 64, causal);
      c.window_left = w;
      expect_pass<bf16>(c);
    }
}

TEST(FlashFwd, VarlenWithEmptySequence) {
  Case c;
  c.lens_q = {17, 0, 129, 1};
  c.h = 4, c.h_k = 2, c.d = 64;
  for (bool causal : {false, true}) {
    c.causal = causal;
    expect_pass<bf16>(c);
    expect_pass<fp16>(c);
  }
}

TEST(FlashFwd, FewerKeysThanQueriesGiveFullyMaskedRows) {
  // causal, bottom-right aligned: the first tq - tk rows see no key (O = 0, LSE = -inf)
  Case c;
  c.lens_q = {70, 5, 3};
  c.lens_k = {20, 130, 0};
  c.h = 2, c.h_k = 1, c.d = 64, c.causal = true;
  expect_pass<bf16>(c);
  c.window_left = 3;
  expect_pass<bf16>(c);
}

TEST(FlashFwd, LogitsOfTenThousandAndCustomScale) {
  Case c = fixed_case(100, 1, 2, 1, 64, true);
  c.spread = 100.0;  // |q.k| / 8 ~ 1e4
  expect_pass<bf16>(c);
  c.causal = false;
  expect_pass<fp16>(c);
  c.spread = 1.0;
  c.scale = 0.3f;
  expect_pass<bf16>(c);
}

TEST(FlashFwd, AllSchedules) {
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

TEST(FlashFwd, RandomizedConfigurations) {
  // 200 seeded valid configurations: lengths, batch, heads, ratio, head dim, dtype, masks.
  Rng rng(2026);
  for (int i = 0; i < 200; ++i) {
    bool bf16_case = true;
    const Case c = random_case(rng, 90, uint64_t(i), bf16_case);
    if (bf16_case)
      expect_pass<bf16>(c);
    else
      expect_pass<fp16>(c);
  }
}

}  // namespace
