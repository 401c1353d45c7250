// api/builders.hpp: the Params builders of the common layouts against Params filled by hand
// field by field, the default scale against FlashAttention's, and a forward and backward launched
// from built Params bitwise equal to the hand-filled harness's (flash_harness.hpp).
#include <gtest/gtest.h>

#include <strata/api/builders.hpp>
#include <strata/api/flash.hpp>

#include <cmath>
#include <cstring>

#include "flash_harness.hpp"

namespace {

using namespace kernel_test;
namespace api = strata::api;
using att::FlashBwdParams;
using bf16 = __nv_bfloat16;

// constexpr: a contiguous problem's Params at compile time
constexpr FlashBwdParams kBuilt =
    api::contiguous_params(2, 100, 300, {.h = 8, .h_k = 2, .d = 128}, {}, {.causal = true});
static_assert(kBuilt.q_row_stride == 8 * 128 && kBuilt.k_row_stride == 2 * 128);
static_assert(kBuilt.total_q == 200 && kBuilt.total_k == 600 && kBuilt.is_causal);
static_assert(api::default_softmax_scale(64) == 0.125f && api::default_softmax_scale(0) == 0.f);
static_assert(api::contiguous_params(1, 1, 1, {.h = 4, .d = 64}, {}).h_k == 4, "h_k 0 is h");

/// Every field of two Params, by name (a builder that forgets one fails here).
void expect_same(const FlashBwdParams& a, const FlashBwdParams& b) {
#define STRATA_SAME(f) EXPECT_EQ(a.f, b.f) << #f
  STRATA_SAME(q);
  STRATA_SAME(k);
  STRATA_SAME(v);
  STRATA_SAME(o);
  STRATA_SAME(lse);
  STRATA_SAME(cu_seqlens_q);
  STRATA_SAME(cu_seqlens_k);
  STRATA_SAME(cu_seqlens_q_host);
  STRATA_SAME(cu_seqlens_k_host);
  STRATA_SAME(dtype);
  STRATA_SAME(b);
  STRATA_SAME(h);
  STRATA_SAME(h_k);
  STRATA_SAME(d);
  STRATA_SAME(seqlen_q);
  STRATA_SAME(seqlen_k);
  STRATA_SAME(total_q);
  STRATA_SAME(total_k);
  STRATA_SAME(q_row_stride);
  STRATA_SAME(q_head_stride);
  STRATA_SAME(k_row_stride);
  STRATA_SAME(k_head_stride);
  STRATA_SAME(v_row_stride);
  STRATA_SAME(v_head_stride);
  STRATA_SAME(o_row_stride);
  STRATA_SAME(o_head_stride);
  STRATA_SAME(softmax_scale);
  STRATA_SAME(is_causal);
  STRATA_SAME(window_left);
  STRATA_SAME(deterministic);
  STRATA_SAME(dq_accum);
  STRATA_SAME(dq_accum_bytes);
  STRATA_SAME(dout);
  STRATA_SAME(dq);
  STRATA_SAME(dk);
  STRATA_SAME(dv);
  STRATA_SAME(dsum);
  STRATA_SAME(do_row_stride);
  STRATA_SAME(do_head_stride);
  STRATA_SAME(dq_row_stride);
  STRATA_SAME(dq_head_stride);
  STRATA_SAME(dk_row_stride);
  STRATA_SAME(dk_head_stride);
  STRATA_SAME(dv_row_stride);
  STRATA_SAME(dv_head_stride);
#undef STRATA_SAME
}

// FlashAttention's Python wrappers compute d ** -0.5 in double; the float division differs in
// the last bit for about a quarter of the head dimensions, which is why the default is stated.
TEST(Builders, DefaultScaleIsFlashAttentions) {
  int float_convention_differs = 0;
  for (int d = 1; d <= 4096; ++d) {
    ASSERT_EQ(api::default_softmax_scale(d), float(1.0 / std::sqrt(double(d)))) << d;
    float_convention_differs += api::default_softmax_scale(d) != 1.f / std::sqrt(float(d));
  }
  EXPECT_GT(float_convention_differs, 0);
}

TEST(Builders, ContiguousEqualsHandFilled) {
  alignas(16) int x[16][4];  // distinct 16-byte aligned addresses for every buffer
  alignas(16) float f[4][4];
  const api::FlashBuffers buf{.q = x[0],
                              .k = x[1],
                              .v = x[2],
                              .o = x[3],
                              .lse = f[0],
                              .dout = x[4],
                              .dq = x[5],
                              .dk = x[6],
                              .dv = x[7],
                              .dsum = f[1],
                              .dq_accum = f[2],
                              .dq_accum_bytes = 483840};
  const FlashBwdParams built = api::contiguous_params(
      3, 70, 90, {.h = 6, .h_k = 3, .d = 96, .dtype = att::Dtype::kFp16}, buf,
      {.causal = true, .window_left = 20, .softmax_scale = 0.25f, .deterministic = false});
  FlashBwdParams p;
  p.q = x[0], p.k = x[1], p.v = x[2], p.o = x[3], p.lse = f[0];
  p.dout = x[4], p.dq = x[5], p.dk = x[6], p.dv = x[7], p.dsum = f[1];
  p.dq_accum = f[2], p.dq_accum_bytes = 483840;  // the fast mode's [210, 6, 96] fp32
  p.dtype = att::Dtype::kFp16;
  p.b = 3, p.h = 6, p.h_k = 3, p.d = 96;
  p.seqlen_q = 70, p.seqlen_k = 90, p.total_q = 210, p.total_k = 270;
  p.q_row_stride = p.o_row_stride = p.do_row_stride = p.dq_row_stride = 6 * 96;
  p.k_row_stride = p.v_row_stride = p.dk_row_stride = p.dv_row_stride = 3 * 96;
  p.q_head_stride = p.o_head_stride = p.do_head_stride = p.dq_head_stride = 96;
  p.k_head_stride = p.v_head_stride = p.dk_head_stride = p.dv_head_stride = 96;
  p.softmax_scale = 0.25f, p.is_causal = true, p.window_left = 20, p.deterministic = false;
  expect_same(built, p);
  EXPECT_TRUE(api::validate(built).ok()) << api::validate(built).message();
}

TEST(Builders, PackedEqualsHandFilled) {
  const api::PackedBatch self = api::PackedBatch::of({17, 0, 130, 1});
  EXPECT_EQ(self.cu_q, (std::vector<int>{0, 17, 17, 147, 148}));
  EXPECT_EQ(self.cu_k, self.cu_q);
  EXPECT_EQ(self.total_q, 148);
  EXPECT_EQ(self.max_k, 130);
  api::PackedBatch cross;
  ASSERT_TRUE(api::PackedBatch::of({5, 60}, {300, 2}, &cross).ok());
  const int dev_q[3] = {0, 5, 65}, dev_k[3] = {0, 300, 302};
  alignas(16) int x[8][4];
  alignas(16) float f[2][4];
  const FlashBwdParams built =
      api::packed_params(cross, dev_q, dev_k, {.h = 4, .h_k = 1, .d = 64},
                         {.q = x[0], .k = x[1], .v = x[2], .o = x[3], .lse = f[0]});
  FlashBwdParams p;
  p.q = x[0], p.k = x[1], p.v = x[2], p.o = x[3], p.lse = f[0];
  p.cu_seqlens_q = dev_q, p.cu_seqlens_k = dev_k;
  p.cu_seqlens_q_host = cross.cu_q.data(), p.cu_seqlens_k_host = cross.cu_k.data();
  p.b = 2, p.h = 4, p.h_k = 1, p.d = 64;
  p.seqlen_q = 60, p.seqlen_k = 300, p.total_q = 65, p.total_k = 302;
  p.q_row_stride = p.o_row_stride = p.do_row_stride = p.dq_row_stride = 4 * 64;
  p.k_row_stride = p.v_row_stride = p.dk_row_stride = p.dv_row_stride = 64;
  p.q_head_stride = p.o_head_stride = p.do_head_stride = p.dq_head_stride = 64;
  p.k_head_stride = p.v_head_stride = p.dk_head_stride = p.dv_head_stride = 64;
  p.softmax_scale = 0.125f;
  expect_same(built, p);
  EXPECT_TRUE(api::validate_forward(built).ok());
  // lists of different lengths are refused by name, the batch untouched
  const strata::Status s = api::PackedBatch::of({5, 60}, {300}, &cross);
  EXPECT_NE(std::string(s.message()).find("lens_k"), std::string::npos) << s.message();
  EXPECT_EQ(cross.total_k, 302);
  // a negative length reaches validation, which names the offsets
  const api::PackedBatch bad = api::PackedBatch::of({4, -2});
  const FlashBwdParams pb =
      api::packed_params(bad, bad.cu_q.data(), bad.cu_k.data(), {.h = 1, .d = 64},
                         {.q = x[0], .k = x[1], .v = x[2], .o = x[3], .lse = f[0]});
  EXPECT_NE(std::string(api::validate_forward(pb).message()).find("cu_seqlens_q"),
            std::string::npos);
}

// Forward-only callers name the forward's checks: a FlashBwdParams (what the builders return)
// without the backward's buffers passes validate_forward and is refused by validate_backward,
// which the overloaded validate picks for its static type.
TEST(Builders, ForwardAndBackwardChecksHaveTheirOwnNames) {
  alignas(16) int x[4][4];
  alignas(16) float f[4];
  const FlashBwdParams p = api::contiguous_params(
      2, 40, 40, {.h = 2, .d = 64}, {.q = x[0], .k = x[1], .v = x[2], .o = x[3], .lse = f});
  EXPECT_TRUE(api::validate_forward(p).ok()) << api::validate_forward(p).message();
  const strata::Status s = api::validate_backward(p);
  EXPECT_NE(std::string(s.message()).find("do"), std::string::npos) << s.message();
  EXPECT_EQ(std::string(api::validate(p).message()), std::string(s.message()));
}

// Built Params launch the same kernels on the same data as the harness's hand-filled ones: the
// forward's O and LSE and the backward's gradients are bitwise equal.
TEST(Builders, BuiltParamsRunLikeHandFilled) {
  Case c;
  c.lens_q = {33, 1, 130};
  c.h = 4, c.h_k = 2, c.d = 64, c.causal = true;
  Problem<bf16> hand(c, 64), built(c, 64);
  ASSERT_TRUE(api::flash_fwd(hand.p).ok());
  ASSERT_TRUE(api::flash_bwd(hand.p).ok());
  const api::PackedBatch batch = api::PackedBatch::of(c.lens_q);
  const FlashBwdParams p =
      api::packed_params(batch, batch.cu_q.data(), batch.cu_k.data(), {.h = 4, .h_k = 2, .d = 64},
                         {.q = built.qs.data(),
                          .k = built.ks.data(),
                          .v = built.vs.data(),
                          .o = built.o.data(),
                          .lse = built.lse.data(),
                          .dout = built.dos.data(),
                          .dq = built.dq.data(),
                          .dk = built.dk.data(),
                          .dv = built.dv.data(),
                          .dsum = built.dsum.data(),
                          .dq_accum = built.p.dq_accum,
                          .dq_accum_bytes = built.p.dq_accum_bytes},
                         {.causal = true});
  ASSERT_TRUE(api::flash_fwd(p).ok());
  ASSERT_TRUE(api::flash_bwd(p).ok());
  const auto same = [](const auto& a, const auto& b, size_t n, const char* what) {
    for (size_t i = 0; i < n; ++i)
      ASSERT_EQ(std::memcmp(&a[i], &b[i], sizeof(a[i])), 0) << what << " element " << i;
  };
  same(hand.o, built.o, hand.qs.size(), "O");
  same(hand.lse, built.lse, size_t(hand.nq * c.h), "LSE");
  same(hand.dq, built.dq, hand.qs.size(), "dQ");
  same(hand.dk, built.dk, hand.ks.size(), "dK");
  same(hand.dv, built.dv, hand.ks.size(), "dV");
}

}  // namespace
