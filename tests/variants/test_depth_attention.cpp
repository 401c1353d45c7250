// Depth-Attention stacks (L >= 4; stride 2 and a recent window of 1, as the issue asks) forward and
// backward through api::DepthStack in the simulator, against the fp64 reference with
// FlashAttention's rule on every layer's O, LSE, dQ, dK, dV, dgamma_q and dgamma_k.
#include <gtest/gtest.h>

#include <functional>
#include <memory>

#include "../common/refusal.hpp"
#include "../sim/common.hpp"
#include "depth_check.hpp"
#include "expect_verdict.hpp"

namespace {

using namespace kernel_test;
using bf16 = __nv_bfloat16;
using fp16 = __half;

template <class T>
void expect_depth(const DepthCase& dc) {
  expect_verdict(
      with_head_dim<T>(dc.attn, [&]<class U, int D>(const Case&) { return run_depth<U, D>(dc); }),
      dc.describe());
}

DepthCase depth_case(std::vector<int> lens, int h, int h_k, int d, bool causal) {
  DepthCase dc;
  dc.attn.lens_q = std::move(lens);
  dc.attn.h = h, dc.attn.h_k = h_k, dc.attn.d = d, dc.attn.causal = causal;
  return dc;
}

TEST(DepthAttention, StrideTwoRecentOneLengthsOneSeventeenRagged) {
  expect_depth<bf16>(depth_case({1, 17, 129}, 2, 1, 64, true));
  DepthCase dc = depth_case({1, 17, 129}, 4, 2, 64, false);
  dc.layers = 6;
  expect_depth<bf16>(dc);
}

TEST(DepthAttention, GqaDimsDtypesEmptySequenceNoNorm) {
  expect_depth<fp16>(depth_case({17, 0, 70}, 8, 2, 128, true));
  expect_depth<bf16>(depth_case({40, 33}, 4, 1, 96, false));
  DepthCase dc = depth_case({50}, 2, 2, 64, true);
  dc.qk_norm_rope = false;
  expect_depth<fp16>(dc);
}

// On an sm_90 device the stack's attention layers run the sm_90a kernels, forward and backward
// (the depth pass writes q_rot, k^ and v^ first; the attention reads them as stored).
TEST(DepthAttention, StackRunsTheSm90KernelsOnHopper) {
  const DepthCase dc = depth_case({70, 1, 130}, 4, 2, 64, true);
  expect_sm90_kernels([&] { expect_depth<bf16>(dc); }, dc.describe());
}

TEST(DepthAttention, AllSchedules) {
  strata_test::SimGuard guard;
  for (const auto& s : strata_test::all_schedules()) {
    strata::sim::set_schedule(s);
    expect_depth<bf16>(depth_case({20, 9}, 4, 2, 64, true));
  }
}

TEST(DepthAttention, RandomizedStacks) {
  Rng rng(99);
  for (int i = 0; i < 12; ++i) {
    bool bf16_case = true;
    Case c = random_case(rng, 40, uint64_t(700 + i), bf16_case);
    c.lens_k.clear();
    DepthCase dc;
    dc.attn = c;
    dc.layers = 4 + i % 3;
    dc.stride = 1 + i % 3;
    dc.recent_window = i % 2;
    if (bf16_case)
      expect_depth<bf16>(dc);
    else
      expect_depth<fp16>(dc);
  }
}

TEST(DepthAttentionApi, EveryFieldIsValidatedAndNothingIsWritten) {
  using Stack = strata::api::DepthStack;
  struct Bad {
    const char* field;
    bool backward;
    std::function<void(Stack&)> spoil;
  };
  const std::vector<Bad> bad = {
      {"layers is empty", false, [](Stack& s) { s.layers.clear(); }},
      {"more than kMaxSources", false,
       [](Stack& s) { s.layers[3].sources = {0, 1, 2, 2, 2, 2, 2, 2, 2}; }},
      {"strictly ascending earlier layers", false,
       [](Stack& s) {
         s.layers[2].sources = {1, 0};
       }},
      {"strictly ascending earlier layers", false, [](Stack& s) { s.layers[1].sources = {1}; }},
      {"layers[2].q is null", false, [](Stack& s) { s.layers[2].q = nullptr; }},
      {"gamma_q / gamma_k is null", false, [](Stack& s) { s.layers[0].gamma_k = nullptr; }},
      {"self-attention over layer 0's tokens", false, [](Stack& s) { s.layers[1].attn.h_k = 1; }},
      {"contiguous", false, [](Stack& s) { s.layers[2].attn.q_row_stride += 8; }},
      {"layers[3].q_rot is null", false, [](Stack& s) { s.layers[3].q_rot = nullptr; }},
      {"layers[1].vhat is null", false, [](Stack& s) { s.layers[1].vhat = nullptr; }},
      {"layers[2].attn.k: the stack points it at layers[2].khat", false,
       [](Stack& s) { s.layers[2].attn.k = s.layers[2].k; }},
      {"dq / dk / dv is null", true, [](Stack& s) { s.layers[1].dv = nullptr; }},
      {"dgamma_q / dgamma_k is null", true, [](Stack& s) { s.layers[3].dgamma_q = nullptr; }},
      {"dkhat_acc / dvhat_acc is null", true, [](Stack& s) { s.layers[0].dvhat_acc = nullptr; }},
      {"workspace is null", true, [](Stack& s) { s.workspace = nullptr; }},
      {"workspace_bytes = 64: less than", true, [](Stack& s) { s.workspace_bytes = 64; }},
      {"must not overwrite it", true, [](Stack& s) { s.layers[2].v = s.layers[2].vhat; }},
      {"must not overwrite them", true, [](Stack& s) { s.layers[1].q = s.layers[1].q_rot; }},
      {"shared with source layer 0", false, [](Stack& s) { s.layers[2].vhat = s.layers[0].vhat; }},
      {"self-attention over layer 0's tokens", false,
       [](Stack& s) { s.layers[3].attn.seqlen_k = 40; }},
  };
  for (const Bad& b : bad) {
    std::vector<std::unique_ptr<Problem<bf16>>> pr;
    const int L = 4, T = 20, H = 4, Hk = 2, D = 64;
    const bf16 nan = core::from_float<bf16>(NAN);
    std::vector<std::vector<bf16>> bufs;
    std::vector<std::vector<float>> accs;
    std::vector<float> g(D, 1.f), work(1024, NAN);
    Stack st;
    st.local.qk_norm = true;  // the norms' fields are checked
    st.workspace = work.data(), st.workspace_bytes = work.size() * sizeof(float);
    for (int l = 0; l < L; ++l) {
      Case c = fixed_case(T, 1, H, Hk, D, true);
      c.seed = uint64_t(l + 1);
      pr.push_back(std::make_unique<Problem<bf16>>(c, D));
    }
    bufs.reserve(size_t(L) * 6);
    accs.reserve(size_t(L) * 4);
    for (int l = 0; l < L; ++l) {
      strata::api::DepthStackLayer y;
      y.attn = pr[size_t(l)]->p;
      for (int i = 0; i < 3; ++i) bufs.emplace_back(size_t(T * H * D) + 8, nan);
      y.attn.q = y.attn.k = y.attn.v = nullptr;
      y.q_rot = bufs[bufs.size() - 3].data(), y.khat = bufs[bufs.size() - 2].data();
      y.vhat = bufs[bufs.size() - 1].data();
      for (int i = 0; i < 3; ++i) bufs.emplace_back(size_t(T * H * D) + 8, nan);
      y.dq = bufs[bufs.size() - 3].data(), y.dk = bufs[bufs.size() - 2].data();
      y.dv = bufs[bufs.size() - 1].data();
      y.q = pr[size_t(l)]->qs.data(), y.k = pr[size_t(l)]->ks.data(),
      y.v = pr[size_t(l)]->vs.data();
      y.gamma_q = y.gamma_k = g.data();
      for (int i = 0; i < 4; ++i) accs.emplace_back(size_t(T * Hk * D), NAN);
      y.dgamma_q = accs[accs.size() - 4].data(), y.dgamma_k = accs[accs.size() - 3].data();
      y.dkhat_acc = accs[accs.size() - 2].data(), y.dvhat_acc = accs[accs.size() - 1].data();
      y.sources = strata::api::depth_sources(L, 2, 1)[size_t(l)];
      st.layers.push_back(y);
    }
    b.spoil(st);
    const strata::Status s = b.backward ? st.backward() : st.forward();
    EXPECT_TRUE(strata_test::refused(s, b.field));
    bool untouched = strata_test::all_nan(bufs, accs, work);
    for (const auto& p : pr) untouched &= strata_test::all_nan(p->o);
    EXPECT_TRUE(untouched) << b.field;
  }
}

}  // namespace
