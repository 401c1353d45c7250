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
    work.assign(strata::api::value_residual_workspace_bytes(pr[0]->p) / sizeof(float), NAN);
    st.kind = ValueResidualKind::kResFormer;
    st.granularity = MixGranularity::kHeadwise;
    st.dv_first = dv_first.data(), st.workspace = work.data();
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

}  // namespace
