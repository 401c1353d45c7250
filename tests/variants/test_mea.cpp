// MEA stacks (L = 4 independent layers, head-level linear composition with GQA and virtual
// heads, the head GroupNorm at the KeyValue or at the Output site) forward and backward through
// api::MeaStack in the simulator, against the fp64 reference with FlashAttention's rule on every
// layer's output, LSE, dQ, dK_c, dV_c, dA^K, dA^V and the GroupNorm's dgamma, dbeta (plus a tight
// check of the token-local pass alone, mea_check.hpp); and the API's validation.
#include <gtest/gtest.h>

#include <cstdio>
#include <cstring>
#include <functional>
#include <memory>

#include "../common/refusal.hpp"
#include "../sim/common.hpp"
#include "expect_verdict.hpp"
#include "mea_check.hpp"

namespace {

using namespace kernel_test;
using bf16 = __nv_bfloat16;
using fp16 = __half;

/// Prints the worst ratio per tensor family at the end of the run (STRATA_VERBOSE).
class FamilyReport : public ::testing::Environment {
 public:
  void TearDown() override {
    if (!std::getenv("STRATA_VERBOSE")) return;
    for (const auto& [family, worst] : mea_family_worst())
      std::printf("mea family %-9s worst %.3f\n", family.c_str(), worst);
  }
};
const auto* const kReport = ::testing::AddGlobalTestEnvironment(new FamilyReport);

template <class T>
void expect_mea(const MeaCase& mc) {
  expect_verdict(
      with_head_dim<T>(mc.attn, [&]<class U, int D>(const Case&) { return run_mea<U, D>(mc); }),
      mc.describe());
}

MeaCase mea_case(std::vector<int> lens, int h, int h_k, int h_c, int d, bool causal,
                 bool output_site = false) {
  MeaCase mc;
  mc.output_site = output_site;
  mc.attn.lens_q = std::move(lens);
  mc.attn.h = h, mc.attn.h_k = h_k, mc.attn.d = d, mc.attn.causal = causal;
  mc.h_c = h_c;
  return mc;
}

TEST(MeaKeyValue, LengthsOneSeventeenRaggedCausalAndNot) {
  expect_mea<bf16>(mea_case({1, 17, 129}, 4, 2, 2, 64, true));
  expect_mea<fp16>(mea_case({1, 17, 129}, 4, 4, 2, 64, false));  // virtual heads
}

TEST(MeaKeyValue, GqaVirtualHeadsDimsDtypesEmptySequence) {
  expect_mea<bf16>(mea_case({33, 0, 20}, 4, 4, 4, 96, true));   // GQA 1, H_c = H_kv
  expect_mea<fp16>(mea_case({17, 0, 40}, 8, 4, 2, 128, true));  // GQA 2, virtual
  expect_mea<bf16>(mea_case({9, 30}, 8, 2, 1, 128, false));     // GQA 4, one component
  expect_mea<fp16>(mea_case({25}, 4, 1, 1, 96, true));          // MQA
  expect_mea<bf16>(mea_case({21, 12}, 2, 2, 3, 64, true));      // H_c > H_kv
  MeaCase fixed = mea_case({24, 24}, 8, 2, 2, 64, false);       // fixed length
  fixed.attn.varlen = false;
  expect_mea<fp16>(fixed);
  MeaCase norope = mea_case({19, 7}, 4, 4, 3, 128, true);
  norope.rope = false;
  expect_mea<bf16>(norope);
}

// On an sm_90 device both sites' attention runs the sm_90a kernels, forward and backward: the
// key-value site composes K' and V' first, the output site's GroupNorm acts in store_o.
TEST(MeaBothSites, StacksRunTheSm90KernelsOnHopper) {
  for (bool output_site : {false, true}) {
    const MeaCase mc = mea_case({70, 1, 40}, 4, 2, 3, 64, true, output_site);
    expect_sm90_kernels([&] { expect_mea<bf16>(mc); }, mc.describe());
  }
}

TEST(MeaKeyValue, AllSchedules) {
  strata_test::SimGuard guard;
  for (const auto& s : strata_test::all_schedules()) {
    strata::sim::set_schedule(s);
    expect_mea<bf16>(mea_case({20, 9}, 8, 4, 2, 64, true));
  }
}

TEST(MeaKeyValue, ParameterGradientsAreBitwiseDeterministic) {
  strata_test::SimGuard guard;
  const MeaCase mc = mea_case({23, 11}, 4, 4, 2, 64, true);
  strata::sim::set_schedule(strata::sim::Schedule::Forward());
  const MeaRun a = run_mea_full<bf16, 64>(mc);
  strata::sim::set_schedule(strata::sim::Schedule::Random(7));
  const MeaRun b = run_mea_full<bf16, 64>(mc);
  ASSERT_EQ(a.param_grads.size(), b.param_grads.size());
  ASSERT_FALSE(a.param_grads.empty());
  EXPECT_EQ(0, std::memcmp(a.param_grads.data(), b.param_grads.data(),
                           a.param_grads.size() * sizeof(float)));
}

TEST(MeaKeyValue, ManyStepsAndBlocks) {  // blocks loop over steps, several blocks' partials
  MeaCase mc = mea_case({300}, 16, 16, 8, 64, true);
  mc.layers = 1;
  const auto g = strata::variants::mea_geometry(300, 16, 8, 64);
  ASSERT_GT(g.steps_per_block, 1);
  ASSERT_GT(g.blocks, 1);
  expect_mea<bf16>(mc);
  mc.output_site = true;  // and the Output site's dgamma_o chunks (256 tokens each)
  expect_mea<fp16>(mc);
}

void randomized(bool output_site, uint64_t seed, int iterations) {
  Rng rng(seed);
  auto pick = [&](int n) { return int(std::fabs(rng.normal()) * 1e6) % n; };
  for (int i = 0; i < iterations; ++i) {
    bool bf16_case = true;
    Case c = random_case(rng, 40, uint64_t(900 + i), bf16_case);
    c.lens_k.clear();
    const int ratios[] = {1, 2, 4}, kv[] = {1, 2, 4};
    c.h_k = kv[pick(3)];
    c.h = c.h_k * ratios[pick(3)];
    MeaCase mc;
    mc.attn = c;
    mc.output_site = output_site;
    mc.h_c = 1 + pick(c.h_k + 1);  // 1 .. H_kv + 1: virtual heads, full, and more components
    mc.rope = pick(4) != 0;
    if (bf16_case)
      expect_mea<bf16>(mc);
    else
      expect_mea<fp16>(mc);
  }
}

TEST(MeaKeyValue, RandomizedStacks) {
  randomized(false, 2026, 12);
}

// A batch without tokens: nothing is read, the parameter gradients are written as zeros.
TEST(MeaBothSites, NoTokens) {
  for (bool output : {false, true}) {
    MeaCase mc = mea_case({0, 0}, 4, 2, 2, 64, true, output);
    mc.layers = 2;
    expect_mea<bf16>(mc);
  }
}

// The documented bounds: H_kv = H_c = 32 at d = 128 fills the 48 KiB of shared memory exactly;
// H_kv = 1 with 32 components shrinks the step to fit (the simulator faults on any overrun).
TEST(MeaBothSites, LargestHeadCounts) {
  for (bool output : {false, true}) {
    MeaCase mc = mea_case({5, 0, 3}, 32, 32, 32, 128, true, output);
    mc.layers = 1;
    expect_mea<bf16>(mc);
    mc = mea_case({6, 9}, 2, 1, 32, 128, false, output);
    mc.layers = 1;
    expect_mea<fp16>(mc);
  }
}

// The Output site: RoPE on the component heads, K' and V' composed inside the attention tiles
// (virtual heads never reach memory), GroupNorm on each head's attention output.
TEST(MeaOutput, LengthsOneSeventeenRaggedCausalAndNot) {
  expect_mea<bf16>(mea_case({1, 17, 129}, 4, 2, 2, 64, true, true));
  expect_mea<fp16>(mea_case({1, 17, 129}, 4, 4, 2, 64, false, true));  // virtual heads
}

TEST(MeaOutput, GqaVirtualHeadsDimsDtypesEmptySequence) {
  expect_mea<bf16>(mea_case({33, 0, 20}, 4, 4, 4, 96, true, true));   // GQA 1, H_c = H_kv
  expect_mea<fp16>(mea_case({17, 0, 40}, 8, 4, 2, 128, true, true));  // GQA 2, virtual
  expect_mea<bf16>(mea_case({9, 30}, 8, 2, 1, 128, false, true));     // GQA 4, one component
  expect_mea<fp16>(mea_case({25}, 4, 1, 1, 96, true, true));          // MQA
  expect_mea<bf16>(mea_case({21, 12}, 2, 2, 3, 64, true, true));      // H_c > H_kv
  MeaCase fixed = mea_case({24, 24}, 8, 2, 2, 64, false, true);       // fixed length
  fixed.attn.varlen = false;
  expect_mea<fp16>(fixed);
  MeaCase norope = mea_case({19, 7}, 4, 4, 3, 128, true, true);
  norope.rope = false;
  expect_mea<bf16>(norope);
}

TEST(MeaOutput, AllSchedulesAndDeterminism) {
  strata_test::SimGuard guard;
  std::vector<float> first;
  for (const auto& s : strata_test::all_schedules()) {
    strata::sim::set_schedule(s);
    const MeaCase mc = mea_case({20, 9}, 8, 4, 2, 64, true, true);
    const MeaRun r = run_mea_full<bf16, 64>(mc);
    expect_verdict(r.verdict, mc.describe());
    if (first.empty()) first = r.param_grads;
    ASSERT_EQ(first.size(), r.param_grads.size());
    EXPECT_EQ(0, std::memcmp(first.data(), r.param_grads.data(), first.size() * sizeof(float)));
  }
}

TEST(MeaOutput, RandomizedStacks) {
  randomized(true, 4052, 12);
}

using Stack = strata::api::MeaStack;
struct Bad {
  const char* field;
  bool backward;
  std::function<void(Stack&)> spoil;
};

/// Builds a valid 4-layer stack at `site`, spoils it, and expects the run to fail with a message
/// containing the field's name and to leave every output and workspace untouched (NaN).
void expect_rejected(strata::core::NormSite site, const std::vector<Bad>& bad) {
  const bool kv = site == strata::core::NormSite::kKeyValue;
  for (const Bad& b : bad) {
    const int L = 4, T = 20, H = 4, Hk = 2, Hc = 2, D = 64;
    const bf16 nan = core::from_float<bf16>(NAN);
    std::vector<std::unique_ptr<Problem<bf16>>> pr;
    std::vector<std::vector<bf16>> bufs;
    std::vector<std::vector<float>> grads;
    std::vector<float> params(size_t(2 * Hc * Hk + 4 * H * D), 1.f);
    std::vector<float> work;
    Stack st;
    st.options.site = site;
    bufs.reserve(size_t(L) * 10);
    grads.reserve(size_t(L) * 6);
    for (int l = 0; l < L; ++l) {
      Case c = fixed_case(T, 1, H, Hk, D, true);
      c.seed = uint64_t(l + 1);
      pr.push_back(std::make_unique<Problem<bf16>>(c, D));
    }
    for (int l = 0; l < L; ++l) {
      strata::api::MeaLayerParams y;
      y.attn = pr[size_t(l)]->p;
      y.h_c = Hc;
      auto buf = [&](int heads) {
        bufs.emplace_back(size_t(T * heads * D) + 8, nan);
        return static_cast<void*>(bufs.back().data());
      };
      y.attn.q = y.attn.k = y.attn.v = nullptr;  // the stack's to set
      y.q_rot = buf(H), y.k_attn = buf(Hk), y.v_attn = buf(Hk);
      y.dq = buf(H), y.dkc = buf(Hc), y.dvc = buf(Hc);
      y.q = pr[size_t(l)]->qs.data();
      y.kc = pr[size_t(l)]->ks.data(), y.vc = pr[size_t(l)]->vs.data();  // [T, 2, D]: H_c = 2
      y.a_k = y.a_v = params.data();
      const float* g = params.data() + 2 * Hc * Hk;
      auto grad = [&](int n) {
        grads.emplace_back(size_t(n), NAN);
        return grads.back().data();
      };
      y.da_k = grad(Hc * Hk), y.da_v = grad(Hc * Hk);
      if (kv) {
        y.gamma_k = y.beta_k = y.gamma_v = y.beta_v = g;
        y.dgamma_k = grad(Hk * D), y.dbeta_k = grad(Hk * D);
        y.dgamma_v = grad(Hk * D), y.dbeta_v = grad(Hk * D);
      } else {
        y.kc_rot = buf(Hc), y.out = buf(H);
        y.gamma_o = y.beta_o = g;
        y.dgamma_o = grad(H * D), y.dbeta_o = grad(H * D);
      }
      st.layers.push_back(y);
    }
    st.workspace_bytes = strata::api::workspace_bytes(st);
    work.assign(st.workspace_bytes / 4, NAN);
    st.workspace = work.data();
    // the unspoiled stack is valid (so every failure below is the spoiled field's)
    ASSERT_TRUE(st.validate(true).ok()) << st.validate(true).message();
    b.spoil(st);
    const strata::Status s = b.backward ? st.backward() : st.forward();
    EXPECT_TRUE(strata_test::refused(s, b.field));
    bool untouched = strata_test::all_nan(bufs, grads, work);
    for (const auto& p : pr) untouched &= strata_test::all_nan(p->o, p->dq, p->dk, p->dsum);
    EXPECT_TRUE(untouched) << b.field;
  }
}

std::vector<Bad> common_bad() {
  static int storage[8] = {};
  void* misaligned = reinterpret_cast<char*>(storage) + 2;
  return {
      {"layers is empty", false, [](Stack& s) { s.layers.clear(); }},
      {"site: not a NormSite value", false,
       [](Stack& s) { s.options.site = static_cast<strata::core::NormSite>(5); }},
      {"layers[1].q_rot is null", false, [](Stack& s) { s.layers[1].q_rot = nullptr; }},
      {"layers[2].attn.v: the stack points it at v_attn", false,
       [](Stack& s) { s.layers[2].attn.v = s.layers[2].vc; }},
      {"layers[2].attn: dq is null", true, [](Stack& s) { s.layers[2].attn.dq = nullptr; }},
      {"attn: d = 80", false, [](Stack& s) { s.layers[0].attn.d = 80; }},
      {"attn: dtype", false,
       [](Stack& s) { s.layers[0].attn.dtype = static_cast<strata::api::Dtype>(7); }},
      {"attn: h_k = 3", false, [](Stack& s) { s.layers[3].attn.h_k = 3; }},
      {"self-attention", false, [](Stack& s) { s.layers[3].attn.seqlen_k = 40; }},
      {"contiguous", false, [](Stack& s) { s.layers[2].attn.q_row_stride += 8; }},
      {"contiguous", true, [](Stack& s) { s.layers[1].attn.dk_row_stride += 8; }},
      {"layers[3].h_c = 0", false, [](Stack& s) { s.layers[3].h_c = 0; }},
      {"kMeaMaxComponentHeads", false, [](Stack& s) { s.layers[0].h_c = 33; }},
      {"kMeaMaxCompositeHeads", false,
       [](Stack& s) { s.layers[0].attn.h_k = 64, s.layers[0].attn.h = 64; }},
      {"gn_eps", false, [](Stack& s) { s.options.gn_eps = 0.f; }},
      {"rope_theta", false, [](Stack& s) { s.options.rope_theta = 1.f; }},
      {"layers[1].q is null", false, [](Stack& s) { s.layers[1].q = nullptr; }},
      {"layers[2].kc is null", false, [](Stack& s) { s.layers[2].kc = nullptr; }},
      {"kc is not 16-byte aligned", false, [misaligned](Stack& s) { s.layers[1].kc = misaligned; }},
      {"a_k is null", false, [](Stack& s) { s.layers[1].a_k = nullptr; }},
      {"a_v is null", false, [](Stack& s) { s.layers[2].a_v = nullptr; }},
      {"a_v is not 4-byte aligned", false,
       [misaligned](Stack& s) { s.layers[0].a_v = static_cast<const float*>(misaligned); }},
      {"layers[1].dq is null", true, [](Stack& s) { s.layers[1].dq = nullptr; }},
      {"dkc is null", true, [](Stack& s) { s.layers[2].dkc = nullptr; }},
      {"dvc is null", true, [](Stack& s) { s.layers[3].dvc = nullptr; }},
      {"da_k is null", true, [](Stack& s) { s.layers[0].da_k = nullptr; }},
      {"da_v is null", true, [](Stack& s) { s.layers[1].da_v = nullptr; }},
      {"dkc / dvc: shared with", true,
       [](Stack& s) { s.layers[2].dvc = const_cast<void*>(s.layers[2].vc); }},
      {"attn.dq / dk / dv: shared with", true,
       [](Stack& s) { s.layers[1].attn.dk = const_cast<void*>(s.layers[1].vc); }},
      {"dkc / dvc: shared with attn.dk / attn.dv", true,
       [](Stack& s) { s.layers[0].dkc = s.layers[0].attn.dv; }},
      {"workspace is null: the call needs", true, [](Stack& s) { s.workspace = nullptr; }},
      {"bytes the call needs (api::workspace_bytes)", true,
       [](Stack& s) { s.workspace_bytes -= 4; }},
  };
}

TEST(MeaApi, EveryFieldIsValidatedAndNothingIsWrittenKeyValue) {
  std::vector<Bad> bad = common_bad();
  const std::vector<Bad> kv = {
      {"vc is null", false, [](Stack& s) { s.layers[0].vc = nullptr; }},
      {"gamma_k is null", false, [](Stack& s) { s.layers[3].gamma_k = nullptr; }},
      {"beta_k is null", false, [](Stack& s) { s.layers[3].beta_k = nullptr; }},
      {"gamma_v is null", false, [](Stack& s) { s.layers[0].gamma_v = nullptr; }},
      {"beta_v is null", false, [](Stack& s) { s.layers[0].beta_v = nullptr; }},
      {"kc / vc: shared with q_rot / k_attn", false,
       [](Stack& s) { s.layers[1].kc = s.layers[1].k_attn; }},
      {"dgamma_k is null", true, [](Stack& s) { s.layers[2].dgamma_k = nullptr; }},
      {"dbeta_k is null", true, [](Stack& s) { s.layers[3].dbeta_k = nullptr; }},
      {"dgamma_v is null", true, [](Stack& s) { s.layers[0].dgamma_v = nullptr; }},
      {"dbeta_v is null", true, [](Stack& s) { s.layers[1].dbeta_v = nullptr; }},
      {"layers[2].v_attn is null", false, [](Stack& s) { s.layers[2].v_attn = nullptr; }},
  };
  bad.insert(bad.end(), kv.begin(), kv.end());
  expect_rejected(strata::core::NormSite::kKeyValue, bad);
}

TEST(MeaApi, EveryFieldIsValidatedAndNothingIsWrittenOutput) {
  std::vector<Bad> bad = common_bad();
  const std::vector<Bad> out = {
      {"vc is null", false, [](Stack& s) { s.layers[0].vc = nullptr; }},
      {"kc_rot is null", false, [](Stack& s) { s.layers[1].kc_rot = nullptr; }},
      {"layers[2].out is null", false, [](Stack& s) { s.layers[2].out = nullptr; }},
      {"gamma_o is null", false, [](Stack& s) { s.layers[3].gamma_o = nullptr; }},
      {"beta_o is null", false, [](Stack& s) { s.layers[0].beta_o = nullptr; }},
      {"dgamma_o is null", true, [](Stack& s) { s.layers[1].dgamma_o = nullptr; }},
      {"dbeta_o is null", true, [](Stack& s) { s.layers[2].dbeta_o = nullptr; }},
      {"out: shared with attn.o", false, [](Stack& s) { s.layers[1].out = s.layers[1].attn.o; }},
      {"kc_rot: shared with", false,
       [](Stack& s) { s.layers[3].kc_rot = const_cast<void*>(s.layers[3].kc); }},
      {"q_rot / out: shared with", false,
       [](Stack& s) { s.layers[2].out = const_cast<void*>(s.layers[2].vc); }},
      {"attn: o is null", false, [](Stack& s) { s.layers[0].attn.o = nullptr; }},
      {"contiguous", false, [](Stack& s) { s.layers[0].attn.o_row_stride += 8; }},
      {"contiguous", true, [](Stack& s) { s.layers[0].attn.do_row_stride += 8; }},
      {"layers[2].v_attn is null", false, [](Stack& s) { s.layers[2].v_attn = nullptr; }},
      {"contiguous", false, [](Stack& s) { s.layers[1].attn.k_row_stride += 8; }},
      {"k_attn / v_attn: shared with", false,
       [](Stack& s) { s.layers[3].k_attn = s.layers[3].kc_rot; }},
      {"k_attn / v_attn: shared with", false,
       [](Stack& s) { s.layers[0].v_attn = const_cast<void*>(s.layers[0].vc); }},
  };
  bad.insert(bad.end(), out.begin(), out.end());
  expect_rejected(strata::core::NormSite::kOutput, bad);
}

}  // namespace
