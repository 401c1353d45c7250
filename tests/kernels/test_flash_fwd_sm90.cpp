// The Hopper flash forward (attention/flash_fwd_sm90.cuh: TMA producer warp, two consumer
// warpgroups on wgmma with the intra-warpgroup overlap and the ping-pong ring, a persistent
// scheduler) in the simulator against the fp64 reference with FlashAttention's error rule (the
// sm_80 kernel's tests, flash_harness.hpp), under every schedule; the simulator checks every
// mbarrier, named-barrier, TMA, wgmma and register-pool rule the kernel relies on as it runs.
// Label hopper (select with ctest -R hopper).
#include <gtest/gtest.h>

#include <strata/api/flash.hpp>
#include <strata/variants/value_residual.cuh>

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

/// The simulated device is an sm_90 one for every test here (the API's dispatch and
/// flash_fwd_sm90 ask it); tests that change it restore it with SimGuard.
class Sm90Device : public ::testing::Environment {
 public:
  void SetUp() override { strata::sim::options().device_arch = 90; }
};
const auto* const kSm90Device = ::testing::AddGlobalTestEnvironment(new Sm90Device);

/// The sm_90 launcher on a problem: its Status (and the errors when it ran).
template <class T>
Errors run_sm90(Problem<T>& pr, const Case& c, int num_ctas) {
  api::FlashFwdSm90Options opt;
  opt.num_ctas = num_ctas;
  if (const auto st = api::flash_fwd_sm90(pr.p, 0, opt); !st.ok()) {
    Errors e;
    e.status = st.message();
    return e;
  }
  if (std::string err = sync_device(); !err.empty()) {
    Errors e;
    e.status = err;
    return e;
  }
  return forward_errors(pr, c, c.d);
}

template <class T>
Errors run(const Case& c, int num_ctas = 0) {
  return with_head_dim<T>(c, [&]<class U, int D>(const Case& x) {
    Problem<U> pr(x, D);
    return run_sm90(pr, x, num_ctas);
  });
}

template <class T>
void expect_pass(const Case& c, int num_ctas = 0) {
  const Errors e = run<T>(c, num_ctas);
  if (getenv("STRATA_VERBOSE"))
    printf("%s ctas %d: O %.3g (naive %.3g) LSE %.3g (naive %.3g)\n", c.describe().c_str(),
           num_ctas, e.o_kernel, e.o_naive, e.lse_kernel, e.lse_naive);
  EXPECT_TRUE(e.pass()) << c.describe() << " ctas " << num_ctas << ": O " << e.o_kernel
                        << " (naive " << e.o_naive << "), LSE " << e.lse_kernel << " (naive "
                        << e.lse_naive << ")" << (e.nan ? " NaN" : "")
                        << (e.lse_inf_mismatch ? " -inf mismatch" : "") << " " << e.status;
}

/// Key tiles (of kBlockN) query tile [m0, m1) of a sequence visits: the kernel's block skipping.
int key_tiles(const att::Mask& m, int m0, int m1, int bn) {
  const int lo = m.key_begin(m0), hi = m.key_end(m1);
  return hi > lo ? (hi + bn - 1) / bn - lo / bn : 0;
}

TEST(FlashFwdSm90, TileTable) {
  using T64 = att::FlashFwdSm90Traits<64>;
  using T96 = att::FlashFwdSm90Traits<96>;
  using T128 = att::FlashFwdSm90Traits<128>;
  EXPECT_EQ(T128::kThreads, 384);
  EXPECT_EQ(T128::kBlockM, 128);
  EXPECT_EQ(T128::kBoxes, 2);  // two 64-column boxes of the 128B swizzle per row
  EXPECT_EQ(T96::kBoxes, 3);   // three 32-column boxes of the 64B swizzle
  EXPECT_EQ(T64::kBoxes, 1);
  // 128 x 128 Q, two stages of 128 x 128 K and V, barriers, alignment slack: FA3's d = 128 plan
  EXPECT_EQ(T128::kSmemBytes, size_t(32768 + 4 * 32768 + 8 * 11 + 1024));
  EXPECT_LE(T128::kSmemBytes, size_t(227 * 1024));
}

TEST(FlashFwdSm90, LengthsThatBreakTiles) {
  for (int len : {1, 2, 17, 127, 128, 129, 257})
    for (bool causal : {false, true}) expect_pass<bf16>(fixed_case(len, 2, 2, 1, 64, causal));
}

TEST(FlashFwdSm90, HeadDimsAndDtypes) {
  for (int d : {64, 96, 128})
    for (bool causal : {false, true}) {
      expect_pass<bf16>(fixed_case(200, 1, 2, 1, d, causal));
      expect_pass<fp16>(fixed_case(200, 1, 2, 1, d, causal));
    }
}

TEST(FlashFwdSm90, GqaRatiosAndMqa) {
  for (int h_k : {4, 2, 1}) expect_pass<bf16>(fixed_case(65, 1, 4, h_k, 64, true));
}

TEST(FlashFwdSm90, SlidingWindows) {
  for (int w : {0, 1, 127, 128, 150})
    for (bool causal : {false, true}) {
      Case c = fixed_case(300, 1, 1, 1, 64, causal);
      c.window_left = w;
      expect_pass<bf16>(c);
    }
}

TEST(FlashFwdSm90, VarlenWithEmptySequencesAndFullyMaskedRows) {
  Case c;
  c.lens_q = {17, 0, 200, 1};
  c.h = 2, c.h_k = 1, c.d = 64;
  for (bool causal : {false, true}) {
    c.causal = causal;
    expect_pass<bf16>(c);
    expect_pass<fp16>(c);
  }
  // causal, bottom-right aligned: the first tq - tk rows see no key (O = 0, LSE = -inf); a
  // sequence without keys has tiles with no work at all
  Case m;
  m.lens_q = {150, 5, 3};
  m.lens_k = {20, 260, 0};
  m.h = 2, m.h_k = 1, m.d = 128, m.causal = true;
  expect_pass<bf16>(m);
  m.window_left = 3;
  expect_pass<bf16>(m);
}

TEST(FlashFwdSm90, LogitsOfTenThousandAndCustomScale) {
  Case c = fixed_case(100, 1, 2, 1, 64, true);
  c.spread = 100.0;  // |q.k| / 8 ~ 1e4
  expect_pass<bf16>(c);
  c.causal = false;
  expect_pass<fp16>(c);
  c.spread = 1.0;
  c.scale = 0.3f;
  expect_pass<bf16>(c);
}

// One block walks every tile (the pipeline's stage and phase counters run across tiles and
// sequences), then three blocks share them.
TEST(FlashFwdSm90, PersistentBlocksWalkManyTiles) {
  Case c;
  c.lens_q = {300, 0, 129, 64};
  c.lens_k = {300, 7, 129, 400};
  c.h = 4, c.h_k = 2, c.d = 64, c.causal = true;
  for (int ctas : {1, 3}) expect_pass<bf16>(c, ctas);
  c.causal = false;
  c.window_left = 100;
  expect_pass<fp16>(c, 2);
  // a long key range: the pipeline's steady state, each stage refilled many times while the
  // other is read
  Case l;
  l.lens_q = {64, 130};
  l.lens_k = {1100, 700};
  l.h = 2, l.h_k = 1, l.d = 128;
  expect_pass<bf16>(l, 1);
}

// The wgmma work the kernel did is exactly its tiles' (query tile, key tile) pairs: the block
// skipping of causal and windowed masks, counted by the simulator.
TEST(FlashFwdSm90, WgmmaWorkIsTheVisitedTilePairs) {
  using Tr = att::FlashFwdSm90Traits<64>;
  Case c = fixed_case(520, 2, 2, 1, 64, true);
  c.window_left = 200;
  ASSERT_TRUE(run<bf16>(c).pass());
  const att::Mask m{520, 520, true, 200};
  uint64_t pairs = 0;
  for (int m0 = 0; m0 < 520; m0 += Tr::kBlockM)
    pairs += uint64_t(key_tiles(m, m0, std::min(m0 + Tr::kBlockM, 520), Tr::kBlockN));
  pairs *= 2 * 2;  // heads x sequences
  const auto ctr = strata::sim::last_launch_counters();
  EXPECT_EQ(ctr.wgmma_flops, pairs * Tr::kFlopsPerTilePair);
  EXPECT_GT(ctr.tma_loads, 0u);
}

// Tokens of one sequence stored head-major ([h, tokens, d]): the maps take (d, tokens, heads).
TEST(FlashFwdSm90, HeadMajorOperands) {
  Case c = fixed_case(150, 1, 2, 2, 64, true);
  Problem<bf16> pr(c, 64);
  Vec<bf16> qh(pr.qs.size()), kh(pr.ks.size()), vh(pr.vs.size());
  const int64_t n = pr.nq;
  for (int64_t t = 0; t < n; ++t)
    for (int h = 0; h < 2; ++h)
      for (int e = 0; e < 64; ++e) {
        const size_t bshd = size_t((t * 2 + h) * 64 + e), bhsd = size_t((h * n + t) * 64 + e);
        qh[bhsd] = pr.qs[bshd], kh[bhsd] = pr.ks[bshd], vh[bhsd] = pr.vs[bshd];
      }
  pr.p.q = qh.data(), pr.p.k = kh.data(), pr.p.v = vh.data();
  pr.p.q_row_stride = pr.p.k_row_stride = pr.p.v_row_stride = 64;
  pr.p.q_head_stride = pr.p.k_head_stride = pr.p.v_head_stride = n * 64;
  const Errors e = run_sm90(pr, c, 0);
  EXPECT_TRUE(e.pass()) << e.status << " O " << e.o_kernel << " naive " << e.o_naive;
}

// The ragged last V tile of a sequence reads the next sequence's rows (TMA sees the packed
// tensor); the kernel zeroes them, so an inf there does not turn a zero weight into NaN. The
// first sequence's output is bitwise that of a run with finite values there.
TEST(FlashFwdSm90, NextSequenceRowsOfARaggedTileDoNotLeak) {
  Case c;
  c.lens_q = {100, 60};
  c.h = 2, c.h_k = 1, c.d = 64;
  Problem<bf16> pr(c, 64);
  ASSERT_TRUE(run_sm90(pr, c, 0).pass());
  const Vec<bf16> clean = pr.o;
  const bf16 inf = strata::core::from_float<bf16>(INFINITY);
  for (int64_t t = 100; t < 160; ++t)
    for (int e = 0; e < 64; ++e) pr.vs[size_t(t * 64 + e)] = inf;
  ASSERT_TRUE(api::flash_fwd_sm90(pr.p).ok());
  for (int64_t i = 0; i < 100 * 2 * 64; ++i) {
    uint16_t a, b;
    std::memcpy(&a, &clean[size_t(i)], 2);
    std::memcpy(&b, &pr.o[size_t(i)], 2);
    ASSERT_EQ(a, b) << "output element " << i << " of the first sequence";
  }
}

// api::flash_fwd takes the sm_90a kernel on an sm_90 device, the sm_80 kernel where the TMA
// path cannot describe the problem or the device is not sm_90; flash_fwd_sm90 refuses there.
TEST(FlashFwdSm90, DispatchPicksTheKernelTheDeviceRuns) {
  strata_test::SimGuard guard;
  Case c;
  c.lens_q = {70, 130};
  c.h = 2, c.h_k = 1, c.d = 64, c.causal = true;
  {
    Problem<bf16> pr(c, 64);
    ASSERT_TRUE(api::flash_fwd(pr.p).ok());
    const auto ctr = strata::sim::last_launch_counters();
    EXPECT_GT(ctr.wgmma_collectives, 0u);
    EXPECT_EQ(ctr.mma, 0u);
    EXPECT_TRUE(forward_errors(pr, c, 64).pass());
  }
  {
    Problem<bf16> pr(c, 64);
    pr.p.cu_seqlens_k_host = nullptr;  // no K/V extent for the TMA maps: the sm_80 kernel
    ASSERT_TRUE(api::flash_fwd(pr.p).ok());
    const auto ctr = strata::sim::last_launch_counters();
    EXPECT_EQ(ctr.wgmma_collectives, 0u);
    EXPECT_GT(ctr.mma, 0u);
    EXPECT_TRUE(forward_errors(pr, c, 64).pass());
  }
  strata::sim::options().device_arch = 80;
  {
    Problem<bf16> pr(c, 64);
    EXPECT_EQ(api::flash_fwd_sm90(pr.p).code(), strata::StatusCode::kUnsupported);
    for (const bf16& x : pr.o) ASSERT_TRUE(std::isnan(strata::core::to_float(x)));
    ASSERT_TRUE(api::flash_fwd(pr.p).ok());
    EXPECT_EQ(strata::sim::last_launch_counters().wgmma_collectives, 0u);
    EXPECT_TRUE(forward_errors(pr, c, 64).pass());
  }
}

// Variants that transform tiles on load stay on the sm_80 kernel unless they say otherwise.
struct LoadTransformingVariant : att::VanillaAttention {};
static_assert(att::Sm90Variant<att::VanillaAttention>::value);
static_assert(!att::Sm90Variant<LoadTransformingVariant>::value,
              "a derived variant may override a load hook: not on the TMA path unless it says so");
static_assert(att::Sm90Variant<strata::variants::ValueResidual>::value &&
              att::Sm90VTransform<strata::variants::ValueResidual, bf16>);

// ---------------------------------------------------------------- ResFormer's V' on the sm_90 path
// V'_l = lambda_self V_l + lambda_first V_0 formed by the producer's mixer warps from two TMA
// tiles. Checked two ways: bitwise against the same kernel's vanilla run on V' formed on the host
// with the policy's own mix (the kernel must attend to exactly that V', ragged tails included),
// and that run against the fp64 reference on V'.

/// V_0 and lambda of one ResFormer layer over a problem's keys, and the policy that reads them.
template <class T>
struct ResidualInputs {
  Vec<T> v0;
  Vec<float> ls, lf;
  strata::variants::ValueResidual vr;
  ResidualInputs(const Problem<T>& pr, bool per_head, uint64_t seed) {
    Rng rng(seed);
    v0.resize(pr.vs.size());
    for (auto& x : v0) x = strata::core::from_float<T>(float(rng.normal()));
    for (int i = 0; i < (per_head ? pr.p.h_k : 1); ++i) {
      ls.push_back(float(0.6 + 0.3 * rng.normal()));
      lf.push_back(float(0.4 + 0.3 * rng.normal()));
    }
    vr.v_first = v0.data();
    vr.v_first_row_stride = pr.p.v_row_stride, vr.v_first_head_stride = pr.p.v_head_stride;
    vr.lambda_self = ls.data(), vr.lambda_first = lf.data(), vr.per_head = per_head;
  }
  /// The problem's V (storage and the reference's fp64 view) replaced by V'.
  void mix_into(Problem<T>& pr) const {
    const int hk = pr.p.h_k, d = pr.p.d;
    for (int64_t t = 0; t < pr.nk; ++t)
      for (int h = 0; h < hk; ++h)
        for (int e = 0; e < d; e += 8) {
          const size_t at = size_t((t * hk + h) * d + e);
          uint4 a, b;
          std::memcpy(&a, &pr.vs[at], 16);
          std::memcpy(&b, &v0[at], 16);
          const uint4 m = vr.v_mix(h).template apply<T>(a, b);
          std::memcpy(static_cast<void*>(&pr.vs[at]), &m, 16);
          for (int i = 0; i < 8; ++i)
            pr.v.data[at + size_t(i)] = strata::core::to_float(pr.vs[at + size_t(i)]);
        }
  }
};

template <class T>
bool same_bits(const Vec<T>& a, const Vec<T>& b, size_t n, std::string* where) {
  for (size_t i = 0; i < n; ++i)
    if (std::memcmp(&a[i], &b[i], sizeof(T)) != 0) {
      *where = "element " + std::to_string(i);
      return false;
    }
  return true;
}

/// ResFormer's forward on the sm_90 kernel against its vanilla run on V' (bitwise) and that
/// against fp64; `num_ctas` as expect_pass.
template <class T>
void expect_resformer(const Case& c, bool per_head, int num_ctas = 0) {
  with_head_dim<T>(c, [&]<class U, int D>(const Case& x) {
    Problem<U> pr(x, D);
    const ResidualInputs<U> in(pr, per_head, x.seed + 99);
    api::FlashFwdSm90Options opt;
    opt.num_ctas = num_ctas;
    const strata::Status st = api::flash_fwd_sm90(pr.p, in.vr, 0, opt);
    ASSERT_TRUE(st.ok()) << st.message();
    ASSERT_EQ(sync_device(), "");
    const auto ctr = strata::sim::last_launch_counters();
    EXPECT_GT(ctr.wgmma_collectives, 0u);
    EXPECT_EQ(ctr.mma, 0u);
    const Vec<U> o = pr.o;
    const Vec<float> lse = pr.lse;
    in.mix_into(pr);
    std::fill(pr.o.begin(), pr.o.end(), strata::core::from_float<U>(NAN));
    ASSERT_TRUE(api::flash_fwd_sm90(pr.p, 0, opt).ok());
    std::string where;
    EXPECT_TRUE(same_bits(o, pr.o, o.size(), &where))
        << x.describe() << (per_head ? " headwise" : " scalar") << ": O " << where;
    EXPECT_TRUE(same_bits(lse, pr.lse, size_t(pr.nq * x.h), &where)) << x.describe() << ": LSE";
    const Errors e = forward_errors(pr, x, D);
    EXPECT_TRUE(e.pass()) << x.describe() << ": O " << e.o_kernel << " (naive " << e.o_naive << ")";
  });
}

TEST(FlashFwdSm90ResFormer, TileTable) {
  using T128 = att::FlashFwdSm90Traits<128, 2>;
  EXPECT_EQ(T128::kMixWarps, 3);
  // FA3's d = 128 plan and a second raw V tile per stage: still inside an H100's 227 KiB
  EXPECT_EQ(T128::kSmemBytes, size_t(32768 + 6 * 32768 + 8 * 13 + 1024));
  EXPECT_LE(T128::kSmemBytes, size_t(227 * 1024));
  using T96 = att::FlashFwdSm90Traits<96, 2>;
  EXPECT_EQ(T96::kVAuxOff % 1024, 0u);
}

TEST(FlashFwdSm90ResFormer, HeadDimsDtypesGqaAndRaggedTiles) {
  Case c;
  c.lens_q = {1, 130, 0, 77};
  c.h = 4, c.h_k = 2;
  for (int d : {64, 96, 128}) {
    c.d = d;
    c.causal = d != 96;
    expect_resformer<bf16>(c, true);
    expect_resformer<fp16>(c, d == 64);
  }
}

TEST(FlashFwdSm90ResFormer, PersistentBlocksWindowsAndLongKeys) {
  Case c;
  c.lens_q = {64, 300, 129};
  c.lens_k = {700, 300, 5};
  c.h = 2, c.h_k = 1, c.d = 64, c.causal = true, c.window_left = 200;
  for (int ctas : {1, 3}) expect_resformer<bf16>(c, false, ctas);
}

// V_0's rows of the next sequence hold inf: the mixer zeroes a ragged tile's rows past the
// sequence instead of mixing them, so the first sequence's output is bitwise a clean run's.
TEST(FlashFwdSm90ResFormer, NextSequenceRowsOfARaggedTileDoNotLeak) {
  Case c;
  c.lens_q = {100, 60};
  c.h = 2, c.h_k = 1, c.d = 64;
  Problem<bf16> pr(c, 64);
  ResidualInputs<bf16> in(pr, false, 5);
  ASSERT_TRUE(api::flash_fwd_sm90(pr.p, in.vr).ok());
  const Vec<bf16> clean = pr.o;
  const bf16 inf = strata::core::from_float<bf16>(INFINITY);
  for (int64_t t = 100; t < 160; ++t)
    for (int e = 0; e < 64; ++e) in.v0[size_t(t * 64 + e)] = pr.vs[size_t(t * 64 + e)] = inf;
  ASSERT_TRUE(api::flash_fwd_sm90(pr.p, in.vr).ok());
  std::string where;
  EXPECT_TRUE(same_bits(clean, pr.o, size_t(100 * 2 * 64), &where)) << where;
}

// api::flash_fwd puts ResFormer on the sm_90 kernel; a V_0 no TMA map describes falls back to
// the sm_80 kernel, and flash_fwd_sm90 refuses it naming v_first.
TEST(FlashFwdSm90ResFormer, DispatchAndRefusals) {
  Case c;
  c.lens_q = {70, 130};
  c.h = 2, c.h_k = 1, c.d = 64, c.causal = true;
  Problem<bf16> pr(c, 64);
  ResidualInputs<bf16> in(pr, false, 8);
  ASSERT_TRUE(api::flash_fwd(pr.p, in.vr).ok());
  EXPECT_GT(strata::sim::last_launch_counters().wgmma_collectives, 0u);
  const Vec<bf16> sm90 = pr.o;
  in.vr.v_first_row_stride = 8;  // rows that overlap: no map describes V_0
  in.vr.v_first_head_stride = 64;
  strata::Status s = api::flash_fwd_sm90(pr.p, in.vr);
  EXPECT_EQ(s.code(), strata::StatusCode::kInvalidArgument);
  EXPECT_NE(std::string(s.message()).find("v_first (its TMA map)"), std::string::npos)
      << s.message();
  in.vr.v_first = nullptr;
  s = api::flash_fwd_sm90(pr.p, in.vr);
  EXPECT_NE(std::string(s.message()).find("v_first is null"), std::string::npos) << s.message();
  for (size_t i = 0; i < sm90.size(); ++i) ASSERT_EQ(std::memcmp(&sm90[i], &pr.o[i], 2), 0);
  // where the TMA path cannot describe the problem, the sm_80 kernel's mix (checked against
  // fp64 on V')
  in.vr.v_first = in.v0.data();
  in.vr.v_first_row_stride = pr.p.v_row_stride, in.vr.v_first_head_stride = pr.p.v_head_stride;
  pr.p.cu_seqlens_k_host = nullptr;  // no K/V extent for the TMA maps: the sm_80 kernel
  std::fill(pr.o.begin(), pr.o.end(), strata::core::from_float<bf16>(NAN));
  ASSERT_TRUE(api::flash_fwd(pr.p, in.vr).ok());
  const auto ctr = strata::sim::last_launch_counters();
  EXPECT_EQ(ctr.wgmma_collectives, 0u);
  EXPECT_GT(ctr.mma, 0u);
  in.mix_into(pr);
  EXPECT_TRUE(forward_errors(pr, c, 64).pass());
}

TEST(FlashFwdSm90ResFormer, AllSchedules) {
  strata_test::SimGuard guard;
  Case c;
  c.lens_q = {140, 0, 33};
  c.lens_k = {140, 5, 300};
  c.h = 2, c.h_k = 2, c.d = 64, c.causal = true;
  for (const auto& s : strata_test::all_schedules()) {
    strata::sim::set_schedule(s);
    expect_resformer<bf16>(c, true, 2);
  }
}

TEST(FlashFwdSm90, RefusalsNameTheFieldAndWriteNothing) {
  Case c;
  c.lens_q = {40, 30};
  c.h = 2, c.h_k = 1, c.d = 64;
  Problem<bf16> pr(c, 64);
  pr.p.cu_seqlens_k_host = nullptr;
  strata::Status s = api::flash_fwd_sm90(pr.p);
  EXPECT_EQ(s.code(), strata::StatusCode::kInvalidArgument);
  EXPECT_NE(std::string(s.message()).find("cu_seqlens_k_host"), std::string::npos) << s.message();
  pr.p.cu_seqlens_k_host = pr.cuk.data();
  pr.p.q_row_stride = 8;  // rows that overlap the heads: no TMA map describes it
  pr.p.q_head_stride = 64;
  s = api::flash_fwd_sm90(pr.p);
  EXPECT_FALSE(s.ok());
  EXPECT_NE(std::string(s.message()).find("q (its TMA map)"), std::string::npos) << s.message();
  api::FlashFwdSm90Options opt;
  opt.num_ctas = -1;
  pr.p.q_row_stride = 128;
  EXPECT_EQ(api::flash_fwd_sm90(pr.p, 0, opt).code(), strata::StatusCode::kInvalidArgument);
  for (const bf16& x : pr.o) ASSERT_TRUE(std::isnan(strata::core::to_float(x)));
}

TEST(FlashFwdSm90, AllSchedules) {
  strata_test::SimGuard guard;
  Case c;
  c.lens_q = {140, 0, 33};
  c.lens_k = {140, 5, 300};
  c.h = 2, c.h_k = 1, c.d = 64, c.causal = true, c.window_left = 150;
  for (const auto& s : strata_test::all_schedules()) {
    strata::sim::set_schedule(s);
    expect_pass<bf16>(c, 2);
  }
}

TEST(FlashFwdSm90, RandomizedConfigurations) {
  // 40 seeded valid configurations: lengths, batch, heads, ratio, head dim, dtype, masks.
  Rng rng(2027);
  for (int i = 0; i < 40; ++i) {
    bool bf16_case = true;
    Case c = random_case(rng, 300, uint64_t(i), bf16_case);
    if (bf16_case)
      expect_pass<bf16>(c, 1 + i % 3);
    else
      expect_pass<fp16>(c, 1 + i % 3);
  }
}

}  // namespace
