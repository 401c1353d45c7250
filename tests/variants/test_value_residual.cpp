// ResFormer and SVFormer stacks (L >= 4) forward and backward in the simulator through
// api::ValueResidualStack, against the fp64 reference (strata/reference/value_residual.hpp) with
// FlashAttention's rule on every element of every layer's O, LSE, dQ, dK, dV, of dV_0 and of
// dlambda: max|kernel - ref64| <= 2 max|naive_same_dtype - ref64| + atol.
#include <gtest/gtest.h>

#include <strata/api/value_residual.hpp>
#include <strata/reference/value_residual.hpp>

#include <functional>
#include <memory>

#include "../common/refusal.hpp"
#include "../sim/common.hpp"
#include "expect_verdict.hpp"
#include "value_residual_check.hpp"

namespace {

using namespace kernel_test;
using strata::api::ValueResidualKind;
using strata::core::MixGranularity;
using bf16 = __nv_bfloat16;
using fp16 = __half;

template <class T>
void expect_stack(const StackCase& sc) {
  expect_verdict(
      with_head_dim<T>(sc.attn, [&]<class U, int D>(const Case&) { return run_stack<U, D>(sc); }),
      sc.describe());
}

StackCase stack_case(ValueResidualKind kind, MixGranularity g, std::vector<int> lens, int h,
                     int h_k, int d, bool causal) {
  StackCase sc;
  sc.kind = kind, sc.granularity = g;
  sc.attn.lens_q = std::move(lens);
  sc.attn.h = h, sc.attn.h_k = h_k, sc.attn.d = d, sc.attn.causal = causal;
  return sc;
}

TEST(ResFormer, StackLengthsOneSeventeenAndRaggedTiles) {
  for (bool causal : {true, false})
    expect_stack<bf16>(stack_case(ValueResidualKind::kResFormer, MixGranularity::kScalar,
                                  {1, 17, 129}, 2, 1, 64, causal));
}

TEST(ResFormer, HeadwiseLambdaGqaDimsDtypes) {
  expect_stack<fp16>(stack_case(ValueResidualKind::kResFormer, MixGranularity::kHeadwise,
                                {17, 0, 70}, 4, 2, 128, true));
  expect_stack<bf16>(stack_case(ValueResidualKind::kResFormer, MixGranularity::kHeadwise, {40, 33},
                                4, 1, 96, false));
  StackCase sc =
      stack_case(ValueResidualKind::kResFormer, MixGranularity::kScalar, {65, 1}, 4, 4, 64, true);
  sc.attn.window_left = 9;
  expect_stack<fp16>(sc);
}

TEST(SVFormer, StackSharesLayerZerosValue) {
  expect_stack<bf16>(stack_case(ValueResidualKind::kSVFormer, MixGranularity::kScalar, {1, 17, 129},
                                4, 2, 64, true));
  expect_stack<fp16>(
      stack_case(ValueResidualKind::kSVFormer, MixGranularity::kScalar, {50, 0}, 4, 1, 128, false));
}

// On an sm_90 device every layer of both stacks runs the sm_90a kernels, forward and backward:
// ResFormer's V' mixed from two TMA tiles, the backward policies' chain rule in their stores.
// No mma.sync anywhere (the sm_80 kernels' instruction), wgmma in every attention launch.
TEST(ValueResidual, StacksRunTheSm90KernelsOnHopper) {
  for (auto kind : {ValueResidualKind::kResFormer, ValueResidualKind::kSVFormer}) {
    StackCase sc = stack_case(kind, MixGranularity::kHeadwise, {70, 1, 130}, 4, 2, 64, true);
    sc.layers = 3;
    expect_sm90_kernels([&] { expect_stack<bf16>(sc); }, sc.describe());
  }
}

TEST(ValueResidual, AllSchedules) {
  strata_test::SimGuard guard;
  for (const auto& s : strata_test::all_schedules()) {
    strata::sim::set_schedule(s);
    expect_stack<bf16>(stack_case(ValueResidualKind::kResFormer, MixGranularity::kHeadwise, {20, 9},
                                  4, 2, 64, true));
  }
}

TEST(ValueResidual, RandomizedStacks) {
  // seeded random valid stacks per method: 1-3 sequences (some empty), GQA 1/2/4, any head dim,
  // causal or not, a window or not, 4-6 layers, either dtype
  Rng rng(777);
  for (int i = 0; i < 24; ++i) {
    bool bf16_case = true;
    Case c = random_case(rng, 40, uint64_t(500 + i), bf16_case);
    c.lens_k.clear();
    if (!c.varlen) c.lens_q.assign(c.lens_q.size(), c.lens_q[0]);
    StackCase sc;
    sc.attn = c;
    sc.layers = 4 + i % 3;
    sc.kind = i % 2 ? ValueResidualKind::kSVFormer : ValueResidualKind::kResFormer;
    sc.granularity = i % 4 < 2 ? MixGranularity::kScalar : MixGranularity::kHeadwise;
    if (bf16_case)
      expect_stack<bf16>(sc);
    else
      expect_stack<fp16>(sc);
  }
}

// ---- validation: every field, a clear Status naming it, and nothing written -----------------

struct ApiFixture {
  static constexpr int L = 4;
  std::vector<std::unique_ptr<Problem<bf16>>> pr;
  std::vector<float> ls, lf, dls, dlf, dv_first, work;
  strata::api::ValueResidualStack st;
  ApiFixture() {
    for (int l = 0; l < L; ++l) {
      Case c = fixed_case(20, 1, 4, 2, 64, true);
      c.seed = uint64_t(l + 3);
      pr.push_back(std::make_unique<Problem<bf16>>(c, 64));
    }
    ls.assign(2, 0.5f), lf.assign(2, 0.5f), dls.assign(2, NAN), dlf.assign(2, NAN);
    dv_first.assign(size_t(20 * 2 * 64), NAN);
    work.assign(
        strata::api::workspace_bytes(pr[0]->p, strata::api::ValueResidualArgs{}) / sizeof(float),
        NAN);
    st.kind = ValueResidualKind::kResFormer;
    st.granularity = MixGranularity::kHeadwise;
    st.dv_first = dv_first.data(), st.workspace = work.data();
    st.workspace_bytes = work.size() * sizeof(float);
    for (int l = 0; l < L; ++l) {
      strata::api::ValueResidualLayer layer;
      layer.attn = pr[size_t(l)]->p;
      layer.lambda_self = ls.data(), layer.lambda_first = lf.data();
      layer.dlambda_self = dls.data(), layer.dlambda_first = dlf.data();
      st.layers.push_back(layer);
    }
  }
  /// Every output of every layer still holds its NaN poison.
  bool untouched() const {
    using strata_test::all_nan;
    for (const auto& p : pr)
      if (!all_nan(p->o, p->dq, p->dk, p->dv, p->lse)) return false;
    return all_nan(dls, dlf, dv_first, work);
  }
};

TEST(ValueResidualApi, EveryFieldIsValidatedAndNothingIsWritten) {
  using Stack = strata::api::ValueResidualStack;
  struct Bad {
    const char* field;
    bool backward;
    std::function<void(Stack&)> spoil;
  };
  const std::vector<Bad> bad = {
      {"layers is empty", false, [](Stack& s) { s.layers.clear(); }},
      {"v is null", false, [](Stack& s) { s.layers[0].attn.v = nullptr; }},  // V_0 of the stack
      {"lambda_self", false, [](Stack& s) { s.layers[2].lambda_self = nullptr; }},
      {"lambda_first", false, [](Stack& s) { s.layers[3].lambda_first = nullptr; }},
      {"granularity", false, [](Stack& s) { s.granularity = MixGranularity::kElementwise; }},
      {"total_k, h_k, d and dtype", false, [](Stack& s) { s.layers[1].attn.d = 128; }},
      {"h_k", false, [](Stack& s) { s.layers[3].attn.h_k = 3; }},
      {"dv_first", true, [](Stack& s) { s.dv_first = nullptr; }},
      {"dlambda_self", true, [](Stack& s) { s.layers[1].dlambda_self = nullptr; }},
      {"dlambda_first", true, [](Stack& s) { s.layers[3].dlambda_first = nullptr; }},
      {"workspace", true, [](Stack& s) { s.workspace = nullptr; }},
      {"workspace is not 16-byte aligned", true, [](Stack& s) { s.workspace += 1; }},
      {"workspace is not 16-byte aligned", false, [](Stack& s) { s.workspace += 1; }},
      {"workspace_bytes = ", true, [](Stack& s) { s.workspace_bytes -= 4; }},
      {"workspace_bytes = 16: less than", false, [](Stack& s) { s.workspace_bytes = 16; }},
      {"dq", true, [](Stack& s) { s.layers[2].attn.dq = nullptr; }},
      {"dsum", true, [](Stack& s) { s.layers[0].attn.dsum = nullptr; }},
  };
  for (const Bad& b : bad) {
    ApiFixture f;
    b.spoil(f.st);
    const strata::Status s = b.backward ? f.st.backward() : f.st.forward();
    EXPECT_TRUE(strata_test::refused(s, b.field));
    EXPECT_TRUE(f.untouched()) << b.field;
  }
}

TEST(ValueResidualApi, PerLayerEntryPointsValidateToo) {
  ApiFixture f;
  strata::api::ValueResidualArgs a = f.st.layer_args(1);
  a.v_first = static_cast<const char*>(a.v_first) + 2;  // misaligned
  strata::Status s = strata::api::resformer_forward(f.st.layers[1].attn, a);
  EXPECT_NE(std::string(s.message()).find("v_first is not 16-byte aligned"), std::string::npos)
      << s.message();
  a = f.st.layer_args(1);
  a.v_first_row_stride = 12;
  s = strata::api::resformer_backward(f.st.layers[1].attn, a);
  EXPECT_NE(std::string(s.message()).find("v_first_row_stride"), std::string::npos) << s.message();
  s = strata::api::svformer_backward(f.st.layers[1].attn, nullptr);
  EXPECT_NE(std::string(s.message()).find("dv_first"), std::string::npos) << s.message();
  EXPECT_TRUE(f.untouched());
}

// ResFormer's forward by its two plans: V formed per tile, or V' written once to the workspace
// and attention run on it. Both attend to the same V' on the same kernel, so their outputs agree
// bitwise, on the sm_90 kernels and on the sm_80 ones.
TEST(ValueResidualApi, ForwardPlansAgreeBitwise) {
  strata_test::SimGuard guard;
  for (int arch : {90, 80}) {
    strata::sim::options().device_arch = arch;
    Case c;
    c.lens_q = {130, 1, 77};
    c.h = 4, c.h_k = 2, c.d = 96, c.causal = true;
    Problem<bf16> v0(c, 96);
    c.seed = 9;
    Problem<bf16> pr(c, 96);
    const std::vector<float> ls = {0.7f, 1.2f}, lf = {0.4f, -0.3f};
    strata::api::ValueResidualArgs a;
    a.workspace_bytes = strata::api::workspace_bytes(pr.p, a);
    Vec<float> work(a.workspace_bytes / sizeof(float), NAN);
    a.v_first = v0.p.v, a.v_first_row_stride = v0.p.v_row_stride;
    a.v_first_head_stride = v0.p.v_head_stride;
    a.lambda_self = ls.data(), a.lambda_first = lf.data();
    a.granularity = MixGranularity::kHeadwise;
    a.workspace = work.data();
    ASSERT_TRUE(strata::api::detail::resformer_forward_plan(pr.p, a, -1, 0).ok());
    EXPECT_TRUE(strata_test::all_nan(work)) << "the per-tile plan wrote the workspace";
    const Vec<bf16> o = pr.o;
    const Vec<float> lse = pr.lse;
    ASSERT_TRUE(strata::api::detail::resformer_forward_plan(pr.p, a, pr.p.total_k, 0).ok());
    for (size_t i = 0; i < o.size(); ++i)
      ASSERT_EQ(std::memcmp(&o[i], &pr.o[i], 2), 0) << "arch " << arch << " O element " << i;
    for (size_t i = 0; i < size_t(pr.nq * c.h); ++i)
      ASSERT_EQ(std::memcmp(&lse[i], &pr.lse[i], 4), 0) << "arch " << arch << " LSE " << i;
  }
}

// Which plan resformer_forward takes: V' written once only on an sm_90 device, with a workspace
// and a K/V extent, where the per-SM model prefers it (long sequences); per tile otherwise, the
// workspace untouched.
TEST(ValueResidualApi, ForwardWritesVWhereTheModelPrefersIt) {
  strata_test::SimGuard guard;
  strata::attention::FlashFwdParams p;
  p.b = 2, p.h = 16, p.h_k = 16, p.d = 128;
  p.seqlen_q = p.seqlen_k = 8192;
  int total_k = 0;
  strata::sim::options().device_arch = 90;
  EXPECT_TRUE(strata::api::detail::resformer_writes_v(p, &total_k));
  EXPECT_EQ(total_k, 2 * 8192);
  p.is_causal = true;
  EXPECT_TRUE(strata::api::detail::resformer_writes_v(p, &total_k));
  p.window_left = 256;  // few query tiles per key tile: forming V per tile is cheaper
  EXPECT_FALSE(strata::api::detail::resformer_writes_v(p, &total_k));
  p.window_left = -1;
  p.seqlen_q = p.seqlen_k = 512;
  EXPECT_FALSE(strata::api::detail::resformer_writes_v(p, &total_k));
  p.seqlen_q = p.seqlen_k = 8192;
  const int cu[3] = {0, 8192, 16384};
  p.cu_seqlens_k = cu;  // packed without the host copy: no extent to size V'
  EXPECT_FALSE(strata::api::detail::resformer_writes_v(p, &total_k));
  p.cu_seqlens_k = nullptr;
  strata::sim::options().device_arch = 80;
  EXPECT_FALSE(strata::api::detail::resformer_writes_v(p, &total_k));
}

}  // namespace
