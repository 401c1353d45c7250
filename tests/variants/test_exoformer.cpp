// ExoFormer stacks (L >= 4; dynamic and static scales, lambda elementwise, headwise and scalar,
// with the elementwise output gate) forward and backward through api::ExoStack in the simulator,
// against the fp64 reference with FlashAttention's rule on every layer's y', LSE, dP of the four
// streams, dlambda1, dlambda2, dgamma_q, dgamma_k, ds, and the stack's d anchor and anchor gains.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <memory>

#include "../common/refusal.hpp"
#include "../sim/common.hpp"
#include "exoformer_check.hpp"
#include "expect_verdict.hpp"

namespace {

using namespace kernel_test;
using bf16 = __nv_bfloat16;
using fp16 = __half;

template <class T>
void expect_exo(const ExoCase& ec) {
  expect_verdict(with_head_dim<T>(
                     ec.attn, [&]<class U, int D>(const Case&) { return run_exoformer<U, D>(ec); }),
                 ec.describe());
}

ExoCase exo_case(std::vector<int> lens, int h, int h_k, int d, bool causal) {
  ExoCase ec;
  ec.attn.lens_q = std::move(lens);
  ec.attn.h = h, ec.attn.h_k = h_k, ec.attn.d = d, ec.attn.causal = causal;
  return ec;
}

TEST(ExoFormer, DynamicElementwiseLengthsOneSeventeenRagged) {
  expect_exo<bf16>(exo_case({1, 17, 129}, 4, 2, 64, true));
  expect_exo<fp16>(exo_case({1, 17, 129}, 2, 2, 64, false));
}

TEST(ExoFormer, GranularitiesStaticGqaDims) {
  ExoCase ec = exo_case({17, 0, 70}, 4, 1, 128, true);  // GQA 4, an empty sequence
  ec.granularity = MixGranularity::kHeadwise;
  expect_exo<fp16>(ec);
  ec = exo_case({40, 33}, 4, 2, 96, false);
  ec.granularity = MixGranularity::kScalar, ec.dynamic = false;
  expect_exo<bf16>(ec);
  ec = exo_case({30, 30}, 2, 1, 64, true);
  ec.attn.varlen = false, ec.rope = false, ec.dynamic = false;
  expect_exo<bf16>(ec);
}

TEST(ExoFormer, OneLayerAndManyBlocks) {
  // L = 1: the only layer writes no accumulator and finalizes d anchor directly; 300 tokens span
  // three blocks of the pass (the parameter gradients' block partials are reduced in order)
  ExoCase ec = exo_case({300}, 2, 1, 64, true);
  ec.layers = 1;
  expect_exo<bf16>(ec);
  ec = exo_case({1, 140, 160}, 2, 2, 64, true);
  ec.granularity = MixGranularity::kScalar;
  expect_exo<fp16>(ec);
  ec = exo_case({0, 0}, 2, 1, 64, true);  // no tokens: the parameter gradients are written, zero
  expect_exo<bf16>(ec);
}

// On an sm_90 device the stack's attention layers run the sm_90a kernels, forward and backward
// (the anchor mix writes the attention's operands first; the output gate acts in store_o).
TEST(ExoFormer, StackRunsTheSm90KernelsOnHopper) {
  const ExoCase ec = exo_case({70, 1, 130}, 4, 2, 64, true);
  expect_sm90_kernels([&] { expect_exo<bf16>(ec); }, ec.describe());
}

TEST(ExoFormer, AllSchedules) {
  strata_test::SimGuard guard;
  for (const auto& s : strata_test::all_schedules()) {
    strata::sim::set_schedule(s);
    ExoCase ec = exo_case({20, 9}, 2, 1, 64, true);
    ec.layers = 2;
    expect_exo<bf16>(ec);
  }
}

TEST(ExoFormer, RandomizedStacks) {
  Rng rng(77);
  for (int i = 0; i < 8; ++i) {
    bool bf16_case = true;
    Case c = random_case(rng, 40, uint64_t(900 + i), bf16_case);
    c.lens_k.clear();
    ExoCase ec;
    ec.attn = c;
    ec.layers = 4 + i % 2;
    ec.dynamic = i % 3 != 2;
    ec.granularity = i % 3 == 0   ? MixGranularity::kElementwise
                     : i % 3 == 1 ? MixGranularity::kHeadwise
                                  : MixGranularity::kScalar;
    ec.rope = i != 5;
    if (bf16_case)
      expect_exo<bf16>(ec);
    else
      expect_exo<fp16>(ec);
  }
}

TEST(ExoFormerApi, EveryFieldIsValidatedAndNothingIsWritten) {
  using Stack = strata::api::ExoStack;
  struct Bad {
    const char* field;
    bool backward;
    std::function<void(Stack&)> spoil;
  };
  const std::vector<Bad> bad = {
      {"layers is empty", false, [](Stack& s) { s.layers.clear(); }},
      {"options.granularity", false, [](Stack& s) { s.options.granularity = MixGranularity(7); }},
      {"options.norm_eps", false, [](Stack& s) { s.options.norm_eps = 0.f; }},
      {"options.anchor_eps", false, [](Stack& s) { s.options.anchor_eps = -1.f; }},
      {"options.rope_theta", false, [](Stack& s) { s.options.rope_theta = 1.f; }},
      {"anchors.k.anchor is null", false, [](Stack& s) { s.anchors.anchor[1].ptr = nullptr; }},
      {"anchors.v.anchor strides", false, [](Stack& s) { s.anchors.anchor[2].head_stride = 8; }},
      {"anchors.g.gamma is null", false, [](Stack& s) { s.anchors.gamma[3] = nullptr; }},
      {"anchors.q.dgamma is null", true, [](Stack& s) { s.anchors.dgamma[0] = nullptr; }},
      {"anchors.k.danchor is null", true, [](Stack& s) { s.anchors.danchor[1].ptr = nullptr; }},
      {"anchors.v.acc", true, [](Stack& s) { s.anchors.acc[2] = nullptr; }},
      {"workspace", true, [](Stack& s) { s.workspace = nullptr; }},
      {"workspace_bytes", true, [](Stack& s) { s.workspace_bytes = 64; }},
      {"options.norm_eps", false, [](Stack& s) { s.options.norm_eps = INFINITY; }},
      {"anchors.q.acc: shared with anchors.g.acc", true,
       [](Stack& s) { s.anchors.acc[0] = s.anchors.acc[3]; }},
      {"overwritten by a gradient", true,
       [](Stack& s) { s.layers[2].mix.dp[1].ptr = const_cast<void*>(s.anchors.anchor[0].ptr); }},
      {"overwritten by a gradient", true,
       [](Stack& s) { s.layers[0].attn.dv = const_cast<void*>(s.layers[0].mix.p[2].ptr); }},
      {"self-attention over layer 0's tokens", false, [](Stack& s) { s.layers[1].attn.h_k = 1; }},
      {"layers[2].mix.out[q] is null", false, [](Stack& s) { s.layers[2].mix.out[0] = nullptr; }},
      {"layers[3].gate.gate: the stack points it at layers[3].mix.out[g]", false,
       [](Stack& s) { s.layers[3].gate.gate = s.layers[3].mix.p[3].ptr; }},
      {"gate.kind", false,
       [](Stack& s) { s.layers[3].gate.kind = strata::core::GateKind::kHeadwise; }},
      {"layers[0].gate: workspace", true, [](Stack& s) { s.layers[0].gate.workspace = nullptr; }},
      {"layers[2].gate: workspace_bytes = 2: less than", true,
       [](Stack& s) { s.layers[2].gate.workspace_bytes = 2; }},
      {"workspace_bytes = 4: less than", true, [](Stack& s) { s.workspace_bytes = 4; }},
      {"layers[1].mix.g is null", false, [](Stack& s) { s.layers[1].mix.p[3].ptr = nullptr; }},
      {"layers[1].mix.v strides", false, [](Stack& s) { s.layers[1].mix.p[2].row_stride = 64; }},
      {"layers[2].mix.k: lambda1 / lambda2 is null", false,
       [](Stack& s) { s.layers[2].mix.lambda2[1] = nullptr; }},
      {"mix.gamma_q / gamma_k is null", false, [](Stack& s) { s.layers[0].mix.gamma_k = nullptr; }},
      {"mix.s is null", false, [](Stack& s) { s.layers[3].mix.s = nullptr; }},
      {"layers[3].mix.q.dp is null", true, [](Stack& s) { s.layers[3].mix.dp[0].ptr = nullptr; }},
      {"layers[0].mix.g: dlambda1 / dlambda2 is null", true,
       [](Stack& s) { s.layers[0].mix.dlambda1[3] = nullptr; }},
      {"mix.dgamma_q / dgamma_k is null", true,
       [](Stack& s) { s.layers[2].mix.dgamma_q = nullptr; }},
      {"mix.ds is null", true, [](Stack& s) { s.layers[1].mix.ds = nullptr; }},
      {"must not overwrite it", true,
       [](Stack& s) { s.layers[2].mix.p[1].ptr = s.layers[2].mix.out[1]; }},
      {"layers[1].mix.out[v]: overwrites anchors.v", false,
       [](Stack& s) { s.layers[1].mix.out[2] = const_cast<void*>(s.anchors.anchor[2].ptr); }},
      {"layers[1].attn: dk is null", true,
       [](Stack& s) { s.layers[1].attn.dk = s.layers[1].attn.dv = nullptr; }},
  };
  for (const Bad& b : bad) {
    ExoCase ec = exo_case({12, 9}, 4, 2, 64, true);
    ExoRun<bf16, 64> r(ec);
    b.spoil(r.st);
    const strata::Status s = b.backward ? r.st.backward() : r.st.forward();
    EXPECT_TRUE(strata_test::refused(s, b.field));
    using strata_test::all_nan;
    bool untouched = all_nan(r.work);
    for (int q = 0; q < 4; ++q) {
      untouched &= all_nan(r.danchor[size_t(q)], r.acc[size_t(q)], r.dganchor[size_t(q)]);
      for (size_t l = 0; l < r.out.size(); ++l)
        untouched &= all_nan(r.out[l][size_t(q)], r.dp[l][size_t(q)], r.dl1[l][size_t(q)],
                             r.dl2[l][size_t(q)]);
    }
    for (size_t l = 0; l < r.out.size(); ++l)
      untouched &= all_nan(r.dgate[l], r.gate_work[l], r.dgq[l], r.dgk[l], r.ds[l], r.pr[l]->o,
                           r.pr[l]->dq, r.pr[l]->dk);
    EXPECT_TRUE(untouched) << b.field;
  }
}

}  // namespace
