// The access profile of the flash kernels (strata/sim/access_model.hpp): shared-memory bank
// conflicts, global sector efficiency and special-function operations of the forward and
// backward (both modes) at d = 64, 96 and 128, causal and not, measured by the simulator in a
// traffic build.
// The properties the kernels promise: no bank conflict in any shared access, every cp.async
// sector fully used, at least half of every global store sector used, one exp2 per unmasked
// score. (benchmarks/perf_model.cpp measures the same counters for the performance model.)
#include "common.hpp"

#include <strata/api/flash.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <new>
#include <vector>

static_assert(strata::sim::traffic::kEnabled, "tests/traffic must be compiled as a traffic build");

namespace {

using strata::attention::FlashFwdTraits;

namespace att = strata::attention;
namespace traffic = strata::sim::traffic;
using bf16 = __nv_bfloat16;
using strata::sim::Counters;

/// A tensor on a 128-byte boundary, as cudaMalloc's are (sector counts depend on alignment).
template <class T>
struct Tensor {
  T* p;
  size_t n;
  explicit Tensor(size_t count, float fill = 0.f)
      : p(static_cast<T*>(::operator new(count * sizeof(T), std::align_val_t(128)))), n(count) {
    for (size_t i = 0; i < n; ++i) p[i] = strata::core::from_float<T>(fill + 0.01f * float(i % 17));
    traffic::watch(p, n * sizeof(T));
  }
  ~Tensor() { ::operator delete(p, std::align_val_t(128)); }
  Tensor(const Tensor&) = delete;
};

struct Shape {
  int T, d;
  bool causal;
};

void print(const char* what, const Shape& s, const Counters& c) {
  std::printf(
      "%s T=%d d=%d%s: ldmatrix %llu, smem ld %llu req %llu wf %llu conflicts, smem st %llu req "
      "%llu wf %llu conflicts, cp.async %llu req %.3f sector eff, gmem ld %llu req %.3f eff, "
      "gmem st %llu req %.3f eff, mma %llu, sfu %llu\n",
      what, s.T, s.d, s.causal ? " causal" : "", (unsigned long long)c.ldmatrix,
      (unsigned long long)c.smem_load.requests, (unsigned long long)c.smem_load.wavefronts,
      (unsigned long long)c.smem_load.conflicts, (unsigned long long)c.smem_store.requests,
      (unsigned long long)c.smem_store.wavefronts, (unsigned long long)c.smem_store.conflicts,
      (unsigned long long)c.gmem_cp_async.requests, c.gmem_cp_async.sector_efficiency(),
      (unsigned long long)c.gmem_load.requests, c.gmem_load.sector_efficiency(),
      (unsigned long long)c.gmem_store.requests, c.gmem_store.sector_efficiency(),
      (unsigned long long)c.mma, (unsigned long long)c.sfu);
}

struct KernelAccess : ::testing::TestWithParam<Shape> {
  strata_test::SimGuard guard;
  void SetUp() override {
    traffic::clear();
    strata::sim::options().access_profile = true;
  }
  void TearDown() override { traffic::clear(); }
};

TEST_P(KernelAccess, FlashForwardAndBackward) {
  const Shape s = GetParam();
  const int h = 2, h_k = 1, T = s.T, d = s.d;
  const size_t nq = size_t(T) * h * d, nk = size_t(T) * h_k * d;
  Tensor<bf16> q(nq, -0.05f), k(nk, 0.02f), v(nk, 0.1f), o(nq), dout(nq, -0.1f), dq(nq), dk(nk),
      dv(nk);
  Tensor<float> lse(size_t(T) * h), dsum(size_t(T) * h), dq_accum(nq);
  att::FlashBwdParams p;
  p.q = q.p, p.k = k.p, p.v = v.p, p.o = o.p, p.lse = lse.p;
  p.dout = dout.p, p.dq = dq.p, p.dk = dk.p, p.dv = dv.p, p.dsum = dsum.p;
  p.dtype = att::Dtype::kBf16;
  p.b = 1, p.h = h, p.h_k = h_k, p.d = d, p.seqlen_q = p.seqlen_k = p.total_q = p.total_k = T;
  p.q_row_stride = p.o_row_stride = p.do_row_stride = p.dq_row_stride = int64_t(h) * d;
  p.q_head_stride = p.o_head_stride = p.do_head_stride = p.dq_head_stride = d;
  p.k_row_stride = p.v_row_stride = p.dk_row_stride = p.dv_row_stride = int64_t(h_k) * d;
  p.k_head_stride = p.v_head_stride = p.dk_head_stride = p.dv_head_stride = d;
  p.softmax_scale = 1.f / std::sqrt(float(d));
  p.is_causal = s.causal;

  strata::sim::reset_counters();
  const strata::Status fwd = strata::api::flash_fwd(p);
  ASSERT_TRUE(fwd.ok()) << fwd.message();
  const Counters f = strata::sim::total_counters();
  print("forward ", s, f);
  strata::sim::reset_counters();
  const strata::Status bwd = strata::api::flash_bwd(p);
  ASSERT_TRUE(bwd.ok()) << bwd.message();
  const Counters b = strata::sim::total_counters();
  print("backward", s, b);
  p.deterministic = false;  // the fast mode: atomic dQ (4-byte atomics: half of each sector)
  p.dq_accum = dq_accum.p;
  strata::sim::reset_counters();
  const strata::Status fast = strata::api::flash_bwd(p);
  ASSERT_TRUE(fast.ok()) << fast.message();
  const Counters bf = strata::sim::total_counters();
  print("bwd fast", s, bf);

  for (const Counters* c : {&f, &b, &bf}) {
    EXPECT_GT(c->ldmatrix, 0u);
    EXPECT_EQ(c->smem_load.conflicts, 0u);  // ldmatrix and plain loads alike
    EXPECT_EQ(c->smem_store.conflicts, 0u);
    EXPECT_GT(c->gmem_cp_async.requests, 0u);
    EXPECT_EQ(c->gmem_cp_async.sector_efficiency(), 1.0);
    // fragment rows leave as column pairs (core::store_pair): at least half of each sector used
    EXPECT_GE(c->gmem_store.sector_efficiency(), 0.5);
  }
  // ldmatrix moves 512 bytes in 4 wavefronts, the conflict-free minimum
  EXPECT_EQ(f.smem_load.wavefronts, 4 * f.ldmatrix);

  // The forward's exponentials: one exp2 per score of every key tile its block visits, masked
  // or not (a masked score is -inf and ex2.approx.ftz(-inf) = 0, so no score is tested: a causal
  // block visits the tiles of its last row), per row one rescale of the running sum by each of
  // its quad's 4 lanes at every tile after the first, and one log2 for the LSE.
  const int bm = s.d == 64   ? FlashFwdTraits<64>::kBlockM
                 : s.d == 96 ? FlashFwdTraits<96>::kBlockM
                             : FlashFwdTraits<128>::kBlockM;
  const int bn = s.d == 64   ? FlashFwdTraits<64>::kBlockN
                 : s.d == 96 ? FlashFwdTraits<96>::kBlockN
                             : FlashFwdTraits<128>::kBlockN;
  uint64_t want = 0;
  for (int r = 0; r < T; ++r) {
    const int block_keys = s.causal ? std::min(T, (r / bm + 1) * bm) : T;
    const int tiles = (block_keys + bn - 1) / bn;
    want += uint64_t(h) * (uint64_t(tiles) * bn + 4 * uint64_t(tiles - 1) + 1);
  }
  EXPECT_EQ(f.sfu, want);
}

INSTANTIATE_TEST_SUITE_P(Shapes, KernelAccess,
                         ::testing::Values(Shape{128, 64, false}, Shape{128, 64, true},
                                           Shape{128, 96, false}, Shape{128, 96, true},
                                           Shape{128, 128, false}, Shape{128, 128, true}));

}  // namespace
