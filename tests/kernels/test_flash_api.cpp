// The public forward API: a valid problem runs; every Params field with a bad value gives an
// InvalidArgument Status whose message names the field, and neither O nor LSE is touched.
#include <strata/api/flash.hpp>

#include <gtest/gtest.h>

#include <climits>

#include <cmath>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "../common/refusal.hpp"

namespace {

using strata_test::Spoil;

namespace att = strata::attention;
using bf16 = __nv_bfloat16;

/// A small valid varlen problem: b = 2 (5 and 3 tokens), h = 2, h_k = 1, d = 64.
struct Problem {
  std::vector<bf16> q, k, v, o;
  std::vector<float> lse;
  std::vector<int> cuq{0, 5, 8}, cuk{0, 5, 8}, cuq_host{0, 5, 8}, cuk_host{0, 5, 8};
  att::FlashFwdParams p;

  Problem() {
    const int N = 8, h = 2, h_k = 1, d = 64;
    q.assign(size_t(N * h * d), strata::core::from_float<bf16>(0.5f));
    k.assign(size_t(N * h_k * d), strata::core::from_float<bf16>(0.25f));
    v = k;
    o.assign(q.size(), strata::core::from_float<bf16>(-7.f));  // sentinel: must survive errors
    lse.assign(size_t(N * h), -7.f);
    p.q = q.data(), p.k = k.data(), p.v = v.data(), p.o = o.data(), p.lse = lse.data();
    p.cu_seqlens_q = cuq.data(), p.cu_seqlens_k = cuk.data();
    p.cu_seqlens_q_host = cuq_host.data(), p.cu_seqlens_k_host = cuk_host.data();
    p.dtype = att::Dtype::kBf16;
    p.b = 2, p.h = h, p.h_k = h_k, p.d = d, p.seqlen_q = 5, p.seqlen_k = 5, p.total_q = N;
    p.q_row_stride = h * d, p.q_head_stride = d, p.o_row_stride = h * d, p.o_head_stride = d;
    p.k_row_stride = h_k * d, p.k_head_stride = d, p.v_row_stride = h_k * d, p.v_head_stride = d;
    p.softmax_scale = 0.125f;
    p.is_causal = true;
  }
  bool outputs_untouched() const {
    for (const bf16& x : o)
      if (strata::core::to_float(x) != -7.f) return false;
    for (float x : lse)
      if (x != -7.f) return false;
    return true;
  }
};

TEST(FlashApi, ValidProblemRunsAndWrites) {
  Problem pr;
  ASSERT_TRUE(strata::api::validate(pr.p).ok());
  const auto st = strata::api::flash_fwd(pr.p);
  ASSERT_TRUE(st.ok()) << st.message();
  EXPECT_FALSE(pr.outputs_untouched());
  // all keys equal: the output is the (equal) value row
  EXPECT_NEAR(strata::core::to_float(pr.o[0]), 0.25f, 1e-3f);
}

TEST(FlashApi, EmptyProblemIsOkAndWritesNothing) {
  Problem pr;
  pr.p.cu_seqlens_q = pr.p.cu_seqlens_k = nullptr;
  pr.p.cu_seqlens_q_host = pr.p.cu_seqlens_k_host = nullptr;
  pr.p.seqlen_q = pr.p.seqlen_k = 0, pr.p.total_q = 0;
  pr.p.q = nullptr;  // not read
  EXPECT_TRUE(strata::api::flash_fwd(pr.p).ok());
  EXPECT_TRUE(pr.outputs_untouched());
}

TEST(FlashApi, EveryFieldIsValidatedAndNothingIsWritten) {
  const std::vector<Spoil<Problem>> cases = {
      {"q is null", [](Problem& x) { x.p.q = nullptr; }},
      {"k is null", [](Problem& x) { x.p.k = nullptr; }},
      {"v is null", [](Problem& x) { x.p.v = nullptr; }},
      {"o is null", [](Problem& x) { x.p.o = nullptr; }},
      {"lse is null", [](Problem& x) { x.p.lse = nullptr; }},
      {"q is not 16-byte aligned", [](Problem& x) { x.p.q = x.q.data() + 1; }},
      {"v is not 16-byte aligned", [](Problem& x) { x.p.v = x.v.data() + 4; }},
      {"o is not 16-byte aligned", [](Problem& x) { x.p.o = x.o.data() + 2; }},
      {"q_row_stride", [](Problem& x) { x.p.q_row_stride = 100; }},
      {"q_head_stride", [](Problem& x) { x.p.q_head_stride = 0; }},
      {"k_row_stride", [](Problem& x) { x.p.k_row_stride = -64; }},
      {"k_head_stride", [](Problem& x) { x.p.k_head_stride = 4; }},
      {"v_row_stride", [](Problem& x) { x.p.v_row_stride = 65; }},
      {"v_head_stride", [](Problem& x) { x.p.v_head_stride = 12; }},
      {"o_row_stride", [](Problem& x) { x.p.o_row_stride = 0; }},
      {"o_head_stride", [](Problem& x) { x.p.o_head_stride = 3; }},
      {"dtype", [](Problem& x) { x.p.dtype = static_cast<att::Dtype>(7); }},
      {"d = 80 is not a compiled head dimension", [](Problem& x) { x.p.d = 80; }},
      {"d = 256", [](Problem& x) { x.p.d = 256; }},
      {"b = 0", [](Problem& x) { x.p.b = 0; }},
      {"b = 70000", [](Problem& x) { x.p.b = 70000; }},
      {"h = 0", [](Problem& x) { x.p.h = 0; }},
      {"h = 70000", [](Problem& x) { x.p.h = 70000, x.p.h_k = 1; }},
      {"h_k = 3: must divide h", [](Problem& x) { x.p.h_k = 3; }},
      {"h_k = 0", [](Problem& x) { x.p.h_k = 0; }},
      {"seqlen_q is negative", [](Problem& x) { x.p.seqlen_q = -1; }},
      {"seqlen_k is negative", [](Problem& x) { x.p.seqlen_k = -1; }},
      {"total_q is negative", [](Problem& x) { x.p.total_q = -1; }},
      {"softmax_scale", [](Problem& x) { x.p.softmax_scale = NAN; }},
      {"softmax_scale", [](Problem& x) { x.p.softmax_scale = INFINITY; }},
      {"softmax_scale", [](Problem& x) { x.p.softmax_scale = 0.f; }},
      {"window_left = -2", [](Problem& x) { x.p.window_left = -2; }},
      {"cu_seqlens_k is null", [](Problem& x) { x.p.cu_seqlens_k = nullptr; }},
      {"cu_seqlens_q is null", [](Problem& x) { x.p.cu_seqlens_q = nullptr; }},
      {"cu_seqlens_q[0] = 1", [](Problem& x) { x.cuq_host[0] = 1; }},
      {"cu_seqlens_q decreases", [](Problem& x) { x.cuq_host[2] = 4; }},
      {"more than seqlen_q", [](Problem& x) { x.p.seqlen_q = 4; }},
      {"more than seqlen_k", [](Problem& x) { x.p.seqlen_k = 4; }},
      {"cu_seqlens_k decreases", [](Problem& x) { x.cuk_host[2] = 4; }},
      {"differs from total_q", [](Problem& x) { x.p.total_q = 9; }},
      {"a fixed-length batch needs b * seqlen_q",
       [](Problem& x) {
         x.p.cu_seqlens_q = x.p.cu_seqlens_k = nullptr;
         x.p.total_q = 7;  // b * seqlen_q = 10
       }},
      // int32 extents of the kernels' tile, mask and row arithmetic
      {"seqlen_q = 2147483600: more than 2^31 - 129",
       [](Problem& x) { x.p.seqlen_q = INT_MAX - 47; }},
      {"seqlen_k = 2147483520", [](Problem& x) { x.p.seqlen_k = INT_MAX - 127; }},
      {"window_left = 2147483647: window_left + the sequence length overflows int32",
       [](Problem& x) { x.p.window_left = INT_MAX; }},
      {"window_left = 2147483643", [](Problem& x) { x.p.window_left = INT_MAX - 4; }},
      {"total_q * h = 2147483648: more than 2^31 - 257 rows",
       [](Problem& x) { x.p.total_q = 1 << 30; }},
  };
  strata_test::expect_refusals(
      cases, [] { return Problem(); },
      [](Problem& x) {
        const strata::Status st = strata::api::flash_fwd(x.p);
        EXPECT_STREQ(st.message(), strata::api::validate(x.p).message());
        return st;
      },
      [](const Problem& x) { return x.outputs_untouched(); });
}

/// The longest window the int32 mask arithmetic allows (window_left + seqlen = INT_MAX) is no
/// window: the same bits as window_left = -1.
TEST(FlashApi, TheLongestWindowIsNoWindow) {
  Problem windowed, unlimited;
  windowed.p.window_left = INT_MAX - 5;  // seqlen_q = seqlen_k = 5
  windowed.p.is_causal = unlimited.p.is_causal = false;
  ASSERT_TRUE(strata::api::flash_fwd(windowed.p).ok());
  ASSERT_TRUE(strata::api::flash_fwd(unlimited.p).ok());
  for (size_t i = 0; i < windowed.o.size(); ++i)
    ASSERT_EQ(strata::core::to_float(windowed.o[i]), strata::core::to_float(unlimited.o[i])) << i;
  EXPECT_EQ(windowed.lse, unlimited.lse);
}

/// The forward problem plus what the backward needs.
struct BwdProblem : Problem {
  std::vector<bf16> dout, dq, dk, dv;
  std::vector<float> dsum;
  att::FlashBwdParams b;
  BwdProblem() {
    dout = q;
    dq.assign(q.size(), strata::core::from_float<bf16>(-7.f));
    dk.assign(k.size(), strata::core::from_float<bf16>(-7.f));
    dv = dk;
    EXPECT_TRUE(strata::api::flash_fwd(p).ok());
    static_cast<att::FlashFwdParams&>(b) = p;
    dsum.assign(strata::api::flash_bwd_workspace_bytes(b) / sizeof(float), -7.f);
    b.dout = dout.data(), b.dq = dq.data(), b.dk = dk.data(), b.dv = dv.data(),
    b.dsum = dsum.data();
    b.total_k = 8;
    b.do_row_stride = b.dq_row_stride = p.q_row_stride,
    b.do_head_stride = b.dq_head_stride = p.q_head_stride;
    b.dk_row_stride = b.dv_row_stride = p.k_row_stride,
    b.dk_head_stride = b.dv_head_stride = p.k_head_stride;
  }
  bool gradients_untouched() const {
    for (const auto* t : {&dq, &dk, &dv})
      for (const bf16& x : *t)
        if (strata::core::to_float(x) != -7.f) return false;
    for (float x : dsum)
      if (x != -7.f) return false;
    return true;
  }
};

TEST(FlashApi, BackwardFieldsAreValidatedAndNothingIsWritten) {
  {
    BwdProblem pr;
    EXPECT_EQ(strata::api::flash_bwd_workspace_bytes(pr.b), size_t(2 * 8) * sizeof(float));
    const auto st = strata::api::flash_bwd(pr.b);
    ASSERT_TRUE(st.ok()) << st.message();
    EXPECT_FALSE(pr.gradients_untouched());
  }
  const std::vector<Spoil<BwdProblem>> cases = {
      {"do is null", [](BwdProblem& x) { x.b.dout = nullptr; }},
      {"dq is null", [](BwdProblem& x) { x.b.dq = nullptr; }},
      {"dk is null", [](BwdProblem& x) { x.b.dk = nullptr; }},
      {"dv is null", [](BwdProblem& x) { x.b.dv = nullptr; }},
      {"dsum", [](BwdProblem& x) { x.b.dsum = nullptr; }},
      {"dq is not 16-byte aligned", [](BwdProblem& x) { x.b.dq = x.dq.data() + 1; }},
      {"do_row_stride", [](BwdProblem& x) { x.b.do_row_stride = 7; }},
      {"dk_head_stride", [](BwdProblem& x) { x.b.dk_head_stride = 0; }},
      {"dv_row_stride", [](BwdProblem& x) { x.b.dv_row_stride = -8; }},
      {"total_k is negative", [](BwdProblem& x) { x.b.total_k = -1; }},
      {"differs from total_k", [](BwdProblem& x) { x.b.total_k = 9; }},
      {"more than b * seqlen_k",  // device-only offsets: total_k is bounded by the longest length
       [](BwdProblem& x) {
         x.b.cu_seqlens_q_host = x.b.cu_seqlens_k_host = nullptr;
         x.b.total_k = int64_t(x.b.b) * x.b.seqlen_k + 1;
       }},
      {"lse is null", [](BwdProblem& x) { x.b.lse = nullptr; }},
      {"d = 80", [](BwdProblem& x) { x.b.d = 80; }},
      {"total_k * h_k = 2147483392: more than 2^31 - 257 rows",
       [](BwdProblem& x) {
         x.b.cu_seqlens_q_host = x.b.cu_seqlens_k_host = nullptr;
         x.b.total_k = INT_MAX - 255;
       }},
  };
  strata_test::expect_refusals(
      cases, [] { return BwdProblem(); }, [](BwdProblem& x) { return strata::api::flash_bwd(x.b); },
      [](const BwdProblem& x) { return x.gradients_untouched(); });
}

}  // namespace
