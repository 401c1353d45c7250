// The Hopper flash backward (attention/flash_bwd_sm90.cuh: TMA producer warp, two consumer
// warpgroups computing S^T, dP^T, dV, dK and dQ on wgmma, dQ through per-block slices or atomics)
// in the simulator against the fp64 reference with FlashAttention's rule on every element of dQ,
// dK and dV (the sm_80 backward's tests, flash_harness.hpp), after the kernel forward, under every
// schedule; the simulator checks every mbarrier, named-barrier, TMA, wgmma and register-pool rule
// the kernel relies on as it runs. Label hopper (select with ctest -R hopper).
#include <gtest/gtest.h>

#include <strata/api/flash.hpp>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "../sim/common.hpp"
#include "flash_harness.hpp"

namespace {

using namespace kernel_test;
using bf16 = __nv_bfloat16;
using fp16 = __half;
namespace api = strata::api;
namespace att = strata::attention;

/// The simulated device is an sm_90 one for every test here; tests that change it restore it
/// with SimGuard.
class Sm90Device : public ::testing::Environment {
 public:
  void SetUp() override { strata::sim::options().device_arch = 90; }
};
const auto* const kSm90Device = ::testing::AddGlobalTestEnvironment(new Sm90Device);

/// Forward, then api::flash_bwd_sm90 with `splits` (0: the default), the accumulator sized for
/// them (poisoned: the launch must zero it).
template <class T>
BwdErrors run_sm90(Problem<T>& pr, int splits) {
  api::FlashBwdSm90Options opt;
  opt.num_splits = splits;
  pr.p.dq_accum_bytes = api::flash_bwd_dq_accum_bytes(pr.p, opt);
  pr.dq_accum.assign(pr.p.dq_accum_bytes / sizeof(float) + 1, NAN);
  pr.p.dq_accum = pr.dq_accum.data();
  return backward_errors(pr, [&](const att::FlashBwdParams& p) {
    strata::sim::reset_counters();
    return api::flash_bwd_sm90(p, 0, opt);
  });
}

template <class T>
BwdErrors run(const Case& c, int splits = 0) {
  return with_head_dim<T>(c, [&]<class U, int D>(const Case& x) {
    Problem<U> pr(x, D);
    return run_sm90(pr, splits);
  });
}

template <class T>
void expect_pass_mode(const Case& c, int splits = 0) {
  const BwdErrors e = run<T>(c, splits);
  const char* names[3] = {"dQ", "dK", "dV"};
  std::string detail;
  for (int g = 0; g < 3; ++g)
    detail += std::string(" ") + names[g] + " " + std::to_string(e.kernel[g]) + " (naive " +
              std::to_string(e.naive[g]) + ")";
  if (getenv("STRATA_VERBOSE"))
    printf("%s splits %d:%s ratio %.3g\n", c.describe().c_str(), splits, detail.c_str(),
           e.worst_ratio());
  EXPECT_TRUE(e.pass()) << c.describe() << " splits " << splits << ":" << detail
                        << (e.nan ? " NaN" : "") << " " << e.status;
}

/// The case in the deterministic and in the fast mode.
template <class T>
void expect_pass(Case c, int splits = 0) {
  for (bool deterministic : {true, false}) {
    c.deterministic = deterministic;
    expect_pass_mode<T>(c, splits);
  }
}

TEST(FlashBwdSm90, TileTable) {
  using T64 = att::FlashBwdSm90Traits<64>;
  using T96 = att::FlashBwdSm90Traits<96>;
  using T128 = att::FlashBwdSm90Traits<128>;
  EXPECT_EQ(T128::kThreads, 384);
  EXPECT_EQ(T128::kBlockN, 128);
  EXPECT_EQ(T128::kBlockM, 64);
  // dQ's columns split on whole column blocks of the K tile: wgmma has no N = 48 for d = 96
  EXPECT_EQ(T64::kDqN0, 32);
  EXPECT_EQ(T64::kDqN1, 32);
  EXPECT_EQ(T96::kDqN0, 64);
  EXPECT_EQ(T96::kDqN1, 32);
  EXPECT_EQ(T128::kDqN0, 64);
  EXPECT_EQ(T128::kDqN1, 64);
  // K, V; two stages of Q and dO; two dS^T buffers; LSE and D per stage; barriers; slack
  EXPECT_EQ(T128::kSmemBytes, size_t(2 * 32768 + 4 * 16384 + 2 * 16384 + 2 * 512 + 8 * 8 + 1024));
  for (size_t b : {T64::kSmemBytes, T96::kSmemBytes, T128::kSmemBytes})
    EXPECT_LE(b, size_t(227 * 1024));
  // splits: twice the SMs' worth of blocks, at most one per key tile and at most 8
  att::FlashBwdParams p;
  p.seqlen_k = 1000, p.h_k = 2, p.b = 1;  // 8 key tiles
  EXPECT_EQ(att::flash_bwd_sm90_splits(p, 132), 8);
  p.seqlen_k = 300;  // 3 key tiles
  EXPECT_EQ(att::flash_bwd_sm90_splits(p, 132), 3);
  p.seqlen_k = 4096, p.h_k = 32, p.b = 8;  // 256 groups already fill 132 SMs twice
  EXPECT_EQ(att::flash_bwd_sm90_splits(p, 132), 2);
  p.b = 16;
  EXPECT_EQ(att::flash_bwd_sm90_splits(p, 132), 1);
}

TEST(FlashBwdSm90, LengthsThatBreakTiles) {
  for (int len : {1, 2, 17, 63, 64, 65, 128, 129, 200})
    for (bool causal : {false, true}) expect_pass<bf16>(fixed_case(len, 2, 2, 1, 64, causal));
}

TEST(FlashBwdSm90, HeadDimsAndDtypes) {
  for (int d : {64, 96, 128})
    for (bool causal : {false, true}) {
      expect_pass<bf16>(fixed_case(150, 1, 2, 1, d, causal));
      expect_pass<fp16>(fixed_case(150, 1, 2, 1, d, causal));
    }
}

TEST(FlashBwdSm90, GqaRatiosAndMqa) {
  for (int h_k : {4, 2, 1}) expect_pass<bf16>(fixed_case(70, 1, 4, h_k, 64, true));
}

TEST(FlashBwdSm90, SlidingWindows) {
  for (int w : {0, 1, 63, 64, 150})
    for (bool causal : {false, true}) {
      Case c = fixed_case(260, 1, 1, 1, 64, causal);
      c.window_left = w;
      expect_pass<bf16>(c);
    }
}

TEST(FlashBwdSm90, VarlenWithEmptySequencesAndFullyMaskedRows) {
  Case c;
  c.lens_q = {17, 0, 150, 1};
  c.h = 2, c.h_k = 1, c.d = 64;
  for (bool causal : {false, true}) {
    c.causal = causal;
    expect_pass<bf16>(c);
    expect_pass<fp16>(c);
  }
  // causal, bottom-right aligned: rows that see no key, key tiles no query sees (dK = dV = 0),
  // a sequence without keys (dQ = 0)
  Case m;
  m.lens_q = {150, 5, 3};
  m.lens_k = {20, 260, 0};
  m.h = 2, m.h_k = 1, m.d = 128, m.causal = true;
  expect_pass<bf16>(m);
  m.window_left = 3;
  expect_pass<bf16>(m);
}

TEST(FlashBwdSm90, LogitsOfTenThousandAndCustomScale) {
  Case c = fixed_case(100, 1, 2, 1, 64, true);
  c.spread = 100.0;  // |q.k| / 8 ~ 1e4
  expect_pass<bf16>(c);
  c.causal = false;
  c.spread = 1.0;
  c.scale = 0.3f;
  expect_pass<fp16>(c);
}

// Every split count: a block walks key tiles s, s + splits, ... (the K/V and Q/dO barriers'
// phases run on across key tiles and heads) and adds dQ into its own slice.
TEST(FlashBwdSm90, EverySplitCount) {
  Case c;
  c.lens_q = {300, 129};
  c.lens_k = {520, 129};
  c.h = 4, c.h_k = 2, c.d = 64, c.causal = true;
  for (int splits : {1, 2, 3, 5, 8}) expect_pass_mode<bf16>(c, splits);
}

// Every gradient element is summed in a fixed order in both its accumulations (dK / dV in
// registers, dQ in the block's slice, the slices in split order): identical bits whatever the
// block order (workers) or the thread interleaving (schedules).
TEST(FlashBwdSm90, DeterministicAcrossRunsWorkersAndSchedules) {
  strata_test::SimGuard guard;
  Case c;
  c.lens_q = {150, 40};
  c.h = 4, c.h_k = 1, c.d = 64, c.causal = true;
  const BwdErrors first = run<bf16>(c);
  ASSERT_TRUE(first.pass()) << first.status;
  ASSERT_FALSE(first.raw.empty());
  for (unsigned workers : {1u, 3u})
    for (const auto& s : strata_test::all_schedules()) {
      strata::sim::set_workers(workers);
      strata::sim::set_schedule(s);
      const BwdErrors again = run<bf16>(c);
      EXPECT_TRUE(again.raw == first.raw) << workers << " workers, " << s.to_string();
    }
}

// The wgmma work is exactly five products per visited (query tile, key tile) pair: the block
// skipping of causal and windowed masks over query tiles, for each query head of the group.
TEST(FlashBwdSm90, WgmmaWorkIsTheVisitedTilePairs) {
  using Tr = att::FlashBwdSm90Traits<64>;
  Case c = fixed_case(520, 2, 4, 2, 64, true);
  c.window_left = 200;
  ASSERT_TRUE(run<bf16>(c).pass());
  const att::Mask m{520, 520, true, 200};
  uint64_t pairs = 0;
  for (int n0 = 0; n0 < 520; n0 += Tr::kBlockN) {
    const int lo = m.query_begin(n0), hi = m.query_end(std::min(n0 + Tr::kBlockN, 520));
    if (hi > lo) pairs += uint64_t((hi + Tr::kBlockM - 1) / Tr::kBlockM - lo / Tr::kBlockM);
  }
  pairs *= 4 * 2;  // query heads x sequences
  const auto ctr = strata::sim::total_counters();
  EXPECT_EQ(ctr.wgmma_flops, pairs * Tr::kFlopsPerTilePair);
  EXPECT_EQ(ctr.mma, 0u);
  EXPECT_GT(ctr.tma_loads, 0u);
}

// Tokens of one sequence stored head-major ([h, tokens, d]) for every operand.
TEST(FlashBwdSm90, HeadMajorOperands) {
  Case c = fixed_case(150, 1, 2, 2, 64, true);
  Problem<bf16> pr(c, 64);
  Vec<bf16> qh(pr.qs.size()), kh(pr.ks.size()), vh(pr.vs.size()), doh(pr.dos.size());
  const int64_t n = pr.nq;
  for (int64_t t = 0; t < n; ++t)
    for (int h = 0; h < 2; ++h)
      for (int e = 0; e < 64; ++e) {
        const size_t bshd = size_t((t * 2 + h) * 64 + e), bhsd = size_t((h * n + t) * 64 + e);
        qh[bhsd] = pr.qs[bshd], kh[bhsd] = pr.ks[bshd], vh[bhsd] = pr.vs[bshd];
        doh[bhsd] = pr.dos[bshd];
      }
  pr.p.q = qh.data(), pr.p.k = kh.data(), pr.p.v = vh.data(), pr.p.dout = doh.data();
  pr.p.q_row_stride = pr.p.k_row_stride = pr.p.v_row_stride = pr.p.do_row_stride = 64;
  pr.p.q_head_stride = pr.p.k_head_stride = pr.p.v_head_stride = pr.p.do_head_stride = n * 64;
  for (int splits : {0, 2}) {
    const BwdErrors e = run_sm90(pr, splits);
    EXPECT_TRUE(e.pass()) << e.status << " dQ " << e.kernel[0] << " dK " << e.kernel[1] << " dV "
                          << e.kernel[2];
  }
}

// Ragged tiles read the next sequence's rows (TMA sees the packed tensors): Q and dO rows in a
// ragged query tile, K and V rows in a ragged key tile. The kernel zeroes them, so an inf there
// does not turn a zero weight into NaN: the first sequence's gradients are bitwise those of a
// run with finite values there.
TEST(FlashBwdSm90, NextSequenceRowsOfRaggedTilesDoNotLeak) {
  Case c;
  c.lens_q = {100, 60};
  c.h = 2, c.h_k = 1, c.d = 64;
  for (bool deterministic : {true, false}) {
    c.deterministic = deterministic;
    Problem<bf16> pr(c, 64);
    ASSERT_TRUE(run_sm90(pr, 0).pass());
    const Vec<bf16> dq = pr.dq, dk = pr.dk, dv = pr.dv;
    const bf16 inf = strata::core::from_float<bf16>(INFINITY);
    for (int64_t t = 100; t < 160; ++t)
      for (int e = 0; e < 64; ++e) {
        pr.ks[size_t(t * 64 + e)] = pr.vs[size_t(t * 64 + e)] = inf;
        for (int h = 0; h < 2; ++h)
          pr.qs[size_t((t * 2 + h) * 64 + e)] = pr.dos[size_t((t * 2 + h) * 64 + e)] = inf;
      }
    ASSERT_TRUE(api::flash_bwd_sm90(pr.p).ok());
    const auto same = [](const Vec<bf16>& a, const Vec<bf16>& b, int64_t n, const char* what) {
      for (int64_t i = 0; i < n; ++i) {
        uint16_t x, y;
        std::memcpy(&x, &a[size_t(i)], 2);
        std::memcpy(&y, &b[size_t(i)], 2);
        if (x != y) {
          ADD_FAILURE() << what << " element " << i << " of the first sequence";
          return;
        }
      }
    };
    if (deterministic) {  // the fast mode's dQ may differ in its last bits from run to run
      same(dq, pr.dq, 100 * 2 * 64, "dQ");
    } else {
      for (int64_t i = 0; i < 100 * 2 * 64; ++i)
        ASSERT_TRUE(std::isfinite(strata::core::to_float(pr.dq[size_t(i)]))) << i;
    }
    same(dk, pr.dk, 100 * 64, "dK");
    same(dv, pr.dv, 100 * 64, "dV");
  }
}

// api::flash_bwd takes the sm_90a backward on an sm_90 device when the caller allocated
// flash_bwd_dq_accum_bytes; the sm_80 kernels without it (a deterministic caller that allocates
// nothing) or on another device, where flash_bwd_sm90 refuses.
TEST(FlashBwdSm90, DispatchPicksTheKernelTheDeviceRuns) {
  strata_test::SimGuard guard;
  Case c;
  c.lens_q = {70, 130};
  c.h = 2, c.h_k = 1, c.d = 64, c.causal = true;
  const auto bwd_counters = [](const att::FlashBwdParams& p, strata::sim::Counters* ctr) {
    strata::sim::reset_counters();
    const strata::Status s = api::flash_bwd(p);
    *ctr = strata::sim::total_counters();
    return s;
  };
  strata::sim::Counters ctr;
  {
    Problem<bf16> pr(c, 64);
    ASSERT_NE(pr.p.dq_accum, nullptr);  // the harness allocates what the API asks for
    EXPECT_TRUE(backward_errors(pr, [&](const att::FlashBwdParams& p) {
                  return bwd_counters(p, &ctr);
                }).pass());
    EXPECT_GT(ctr.wgmma_collectives, 0u);
    EXPECT_EQ(ctr.mma, 0u);
  }
  {
    Problem<bf16> pr(c, 64);
    pr.p.dq_accum = nullptr;  // deterministic without the accumulator: the sm_80 kernels
    EXPECT_TRUE(backward_errors(pr, [&](const att::FlashBwdParams& p) {
                  return bwd_counters(p, &ctr);
                }).pass());
    EXPECT_EQ(ctr.wgmma_collectives, 0u);
    EXPECT_GT(ctr.mma, 0u);
  }
  strata::sim::options().device_arch = 80;
  {
    Problem<bf16> pr(c, 64);
    EXPECT_EQ(api::flash_bwd_dq_accum_bytes(pr.p), 0u);  // deterministic on sm_80: none
    Vec<float> acc(size_t(pr.nq) * 2 * 64 * 8, 0.f);
    pr.p.dq_accum = acc.data();
    pr.p.dq_accum_bytes = acc.size() * sizeof(float);
    EXPECT_EQ(api::flash_bwd_sm90(pr.p).code(), strata::StatusCode::kUnsupported);
    for (const bf16& x : pr.dq) ASSERT_TRUE(std::isnan(strata::core::to_float(x)));
    EXPECT_TRUE(backward_errors(pr, [&](const att::FlashBwdParams& p) {
                  return bwd_counters(p, &ctr);
                }).pass());
    EXPECT_EQ(ctr.wgmma_collectives, 0u);
  }
}

TEST(FlashBwdSm90, AccumulatorBytesFollowTheModeAndSplits) {
  Case c = fixed_case(300, 2, 4, 2, 64, false);
  Problem<bf16> pr(c, 64);
  const size_t slice = size_t(600) * 4 * 64 * sizeof(float);
  pr.p.deterministic = false;
  EXPECT_EQ(api::flash_bwd_dq_accum_bytes(pr.p), slice);
  pr.p.deterministic = true;  // 3 key tiles, 4 groups: min(3, ceil(264 / 4), 8) slices
  EXPECT_EQ(api::flash_bwd_dq_accum_bytes(pr.p), 3 * slice);
  api::FlashBwdSm90Options opt;
  opt.num_splits = 2;
  EXPECT_EQ(api::flash_bwd_dq_accum_bytes(pr.p, opt), 2 * slice);
}

// dq_accum_bytes guards the accumulator: the sm_90 backward runs only where dq_accum holds its
// slices. Not given (0), the fast mode's one slice is assumed: a deterministic caller keeps the
// sm_80 kernels (which need none), a fast one runs the sm_90 kernel on its one slice; a size
// too small is refused by flash_bwd_sm90 and falls back in flash_bwd; the fast mode's own size
// is checked by validate.
TEST(FlashBwdSm90, AccumulatorSizeDecidesTheKernel) {
  Case c;
  c.lens_q = {150, 70};
  c.h = 2, c.h_k = 1, c.d = 64;
  strata::sim::Counters ctr;
  const auto run = [&](Problem<bf16>& pr) {
    return backward_errors(pr, [&](const att::FlashBwdParams& p) {
      strata::sim::reset_counters();
      const strata::Status s = api::flash_bwd(p);
      ctr = strata::sim::total_counters();
      return s;
    });
  };
  for (bool deterministic : {true, false}) {
    c.deterministic = deterministic;
    {
      Problem<bf16> pr(c, 64);
      const size_t need = pr.p.dq_accum_bytes;
      pr.p.dq_accum_bytes = 0;  // not given
      EXPECT_TRUE(run(pr).pass());
      EXPECT_EQ(ctr.mma > 0, deterministic) << "deterministic " << deterministic;
      EXPECT_EQ(ctr.wgmma_collectives > 0, !deterministic);
      const strata::Status s = api::flash_bwd_sm90(pr.p);
      EXPECT_EQ(s.ok(), !deterministic) << s.message();
      pr.p.dq_accum_bytes = need - 4;  // one float short
      const strata::Status short_by_one = api::flash_bwd_sm90(pr.p);
      EXPECT_EQ(short_by_one.code(), strata::StatusCode::kInvalidArgument);
      EXPECT_NE(std::string(short_by_one.message()).find("dq_accum_bytes"), std::string::npos)
          << short_by_one.message();
      if (deterministic) {  // flash_bwd falls back to the sm_80 kernels
        EXPECT_TRUE(run(pr).pass());
        EXPECT_GT(ctr.mma, 0u);
        EXPECT_EQ(ctr.wgmma_collectives, 0u);
      } else {  // the fast mode's own slice is too small: refused before anything runs
        const strata::Status v = api::flash_bwd(pr.p);
        EXPECT_NE(std::string(v.message()).find("dq_accum_bytes"), std::string::npos)
            << v.message();
      }
    }
  }
}

TEST(FlashBwdSm90, RefusalsNameTheFieldAndWriteNothing) {
  Case c;
  c.lens_q = {40, 30};
  c.h = 2, c.h_k = 1, c.d = 64;
  Problem<bf16> pr(c, 64);
  const auto untouched = [&]() {
    for (const bf16& x : pr.dq) ASSERT_TRUE(std::isnan(strata::core::to_float(x)));
    for (size_t i = 0; i < size_t(pr.nk) * 64; ++i)
      ASSERT_TRUE(std::isnan(strata::core::to_float(pr.dk[i])));
  };
  float* accum = pr.p.dq_accum;
  pr.p.dq_accum = nullptr;
  strata::Status s = api::flash_bwd_sm90(pr.p);
  EXPECT_EQ(s.code(), strata::StatusCode::kInvalidArgument);
  EXPECT_NE(std::string(s.message()).find("dq_accum"), std::string::npos) << s.message();
  pr.p.dq_accum = accum;
  pr.p.do_row_stride = 8;  // rows that overlap the heads: no TMA map describes it
  pr.p.do_head_stride = 64;
  s = api::flash_bwd_sm90(pr.p);
  EXPECT_FALSE(s.ok());
  EXPECT_NE(std::string(s.message()).find("do (its TMA map)"), std::string::npos) << s.message();
  pr.p.do_row_stride = 128;
  api::FlashBwdSm90Options opt;
  opt.num_splits = 9;
  s = api::flash_bwd_sm90(pr.p, 0, opt);
  EXPECT_EQ(s.code(), strata::StatusCode::kInvalidArgument);
  EXPECT_NE(std::string(s.message()).find("num_splits"), std::string::npos) << s.message();
  untouched();
}

TEST(FlashBwdSm90, AllSchedules) {
  strata_test::SimGuard guard;
  Case c;
  c.lens_q = {140, 0, 33};
  c.lens_k = {140, 5, 200};
  c.h = 4, c.h_k = 2, c.d = 64, c.causal = true, c.window_left = 100;
  for (const auto& s : strata_test::all_schedules()) {
    strata::sim::set_schedule(s);
    expect_pass<bf16>(c, 2);
  }
}

TEST(FlashBwdSm90, RandomizedConfigurations) {
  // 40 seeded valid configurations (half of them in the fast mode, split counts 0-3).
  Rng rng(2028);
  for (int i = 0; i < 40; ++i) {
    bool bf16_case = true;
    Case c = random_case(rng, 200, uint64_t(500 + i), bf16_case);
    c.deterministic = i % 2 == 0;
    if (bf16_case)
      expect_pass_mode<bf16>(c, i % 4);
    else
      expect_pass_mode<fp16>(c, i % 4);
  }
}

}  // namespace
