// Gated Attention (elementwise and headwise sigmoid output gate at G1) through api::gated_forward
// and api::gated_backward, layer stacks (L = 4, independent layers) in the simulator against the
// fp64 reference (strata/reference/gated.hpp, without QK-norm and RoPE) with FlashAttention's
// rule on every element of y', LSE, dQ, dK, dV and dg.
#include <gtest/gtest.h>

#include <strata/api/output_gate.hpp>
#include <strata/reference/gated.hpp>

#include <functional>
#include <memory>

#include "../common/refusal.hpp"
#include "../sim/common.hpp"
#include "expect_verdict.hpp"
#include "output_gate_check.hpp"

namespace {

using namespace kernel_test;
using strata::core::GateKind;
using bf16 = __nv_bfloat16;
using fp16 = __half;

template <class T>
void expect_gated(const GateCase& gc) {
  expect_verdict(
      with_head_dim<T>(gc.attn, [&]<class U, int D>(const Case&) { return run_gated<U, D>(gc); }),
      gc.describe());
}

GateCase gate_case(GateKind kind, std::vector<int> lens, int h, int h_k, int d, bool causal) {
  GateCase gc;
  gc.kind = kind;
  gc.attn.lens_q = std::move(lens);
  gc.attn.h = h, gc.attn.h_k = h_k, gc.attn.d = d, gc.attn.causal = causal;
  return gc;
}

TEST(GatedAttention, ElementwiseAndHeadwiseLengthsOneSeventeenRagged) {
  for (GateKind k : {GateKind::kElementwise, GateKind::kHeadwise})
    for (bool causal : {true, false})
      expect_gated<bf16>(gate_case(k, {1, 17, 129}, 2, 1, 64, causal));
}

TEST(GatedAttention, GqaDimsDtypesWindowEmptySequence) {
  expect_gated<fp16>(gate_case(GateKind::kElementwise, {17, 0, 70}, 4, 2, 128, true));
  expect_gated<bf16>(gate_case(GateKind::kHeadwise, {40, 33}, 4, 1, 96, false));
  GateCase gc = gate_case(GateKind::kElementwise, {65, 1}, 4, 4, 64, true);
  gc.attn.window_left = 9;
  expect_gated<fp16>(gc);
}

TEST(GatedAttention, SaturatedGates) {
  GateCase gc = gate_case(GateKind::kElementwise, {30}, 2, 1, 64, true);
  gc.gate_spread = 20.0;  // sigma(g) ~ 0 or 1: dg must not lose its relative accuracy
  expect_gated<bf16>(gc);
  gc.kind = GateKind::kHeadwise;
  expect_gated<fp16>(gc);
}

TEST(GatedAttention, QkNormAndRopeQwen3Order) {
  // the token-local pass (RMSNorm over d with gains, then RoPE by position in the sequence) before
  // attention, its backward after, dgamma_q and dgamma_k checked too
  for (GateKind k : {GateKind::kElementwise, GateKind::kHeadwise}) {
    GateCase gc = gate_case(k, {1, 17, 129}, 4, 2, 64, true);
    gc.qk_norm_rope = true;
    expect_gated<bf16>(gc);
  }
  GateCase gc = gate_case(GateKind::kElementwise, {33, 0, 50}, 4, 1, 128, false);
  gc.qk_norm_rope = true;
  expect_gated<fp16>(gc);
  gc = gate_case(GateKind::kHeadwise, {40, 40}, 2, 2, 96, true);
  gc.attn.varlen = false;
  gc.qk_norm_rope = true;
  expect_gated<bf16>(gc);
}

// On an sm_90 device the gated layer runs the sm_90a kernels, forward and backward (the gate
// acts in store_o, its backward in the preprocess).
TEST(GatedAttention, RunsTheSm90KernelsOnHopper) {
  const GateCase gc = gate_case(GateKind::kElementwise, {70, 1, 130}, 4, 2, 64, true);
  expect_sm90_kernels([&] { expect_gated<bf16>(gc); }, gc.describe());
}

TEST(GatedAttention, AllSchedules) {
  strata_test::SimGuard guard;
  for (const auto& s : strata_test::all_schedules()) {
    strata::sim::set_schedule(s);
    expect_gated<bf16>(gate_case(GateKind::kHeadwise, {20, 9}, 4, 2, 64, true));
  }
}

TEST(GatedAttention, RandomizedLayers) {
  Rng rng(4711);
  for (int i = 0; i < 24; ++i) {
    bool bf16_case = true;
    Case c = random_case(rng, 40, uint64_t(900 + i), bf16_case);
    c.lens_k.clear();
    GateCase gc;
    gc.attn = c;
    gc.layers = 1;
    gc.kind = i % 2 ? GateKind::kHeadwise : GateKind::kElementwise;
    gc.qk_norm_rope = i % 4 >= 2;
    if (bf16_case)
      expect_gated<bf16>(gc);
    else
      expect_gated<fp16>(gc);
  }
}

TEST(GatedAttentionApi, EveryFieldIsValidatedAndNothingIsWritten) {
  struct Bad {
    const char* field;
    bool backward;
    std::function<void(strata::api::GateArgs&)> spoil;
  };
  const std::vector<Bad> bad = {
      {"gate is null", false, [](auto& g) { g.gate = nullptr; }},
      {"gate_row_stride", false, [](auto& g) { g.gate_row_stride = 3; }},
      {"gate_head_stride", false, [](auto& g) { g.gate_head_stride = 0; }},
      // heads 2d apart: token t's upper heads would overlap token t + 1
      {"gate_row_stride", false, [](auto& g) { g.gate_head_stride = 128; }},
      {"gate is not 2-byte aligned", false,
       [](auto& g) { g.gate = static_cast<const char*>(g.gate) + 1; }},
      {"kind", false, [](auto& g) { g.kind = static_cast<GateKind>(7); }},
      {"dgate is null", true, [](auto& g) { g.dgate = nullptr; }},
      {"workspace is null: the call needs 10240 bytes", true,
       [](auto& g) { g.workspace = nullptr; }},
      {"workspace_bytes = 10239: less than the 10240 bytes", true,
       [](auto& g) { g.workspace_bytes = 10239; }},
      {"workspace is not 16-byte aligned", true,
       [](auto& g) { g.workspace = static_cast<char*>(g.workspace) + 2; }},
  };
  for (const Bad& b : bad) {
    Problem<bf16> pr(fixed_case(20, 1, 4, 2, 64, true), 64);
    std::vector<bf16> gs(size_t(20 * 4 * 64), core::from_float<bf16>(0.5f));
    std::vector<bf16> dg(gs.size() + 8, core::from_float<bf16>(NAN));
    std::vector<bf16> work(gs.size() + 8, core::from_float<bf16>(NAN));
    strata::api::GateArgs g;
    g.gate = gs.data(), g.gate_row_stride = 4 * 64, g.gate_head_stride = 64;
    g.dgate = dg.data(), g.workspace = work.data(), g.workspace_bytes = work.size() * 2;
    b.spoil(g);
    const strata::Status s =
        b.backward ? strata::api::gated_backward(pr.p, g) : strata::api::gated_forward(pr.p, g);
    EXPECT_TRUE(strata_test::refused(s, b.field));
    EXPECT_TRUE(strata_test::all_nan(pr.o, pr.dq, pr.dk, pr.dv, dg, work)) << b.field;
  }
}

TEST(QkNormRopeApi, EmptySidesAreValidatedAndStillGetTheirDgamma) {
  // k has no rows: its dgamma is still written (zero), so a null one is rejected up front
  const bf16 nan = core::from_float<bf16>(NAN);
  std::vector<bf16> q(size_t(10 * 2 * 64), core::from_float<bf16>(1.f)), y(q.size(), nan), dy(q),
      dx(q.size(), nan);
  std::vector<float> g(64, 1.f), dgq(64, NAN), dgk(64, NAN), work(1024, NAN);
  const std::vector<int> cu = {0, 10};
  strata::api::QkNormRopeParams p;
  p.d = 64, p.options.qk_norm = true;
  auto& s = p.q;
  s.x = q.data(), s.y = y.data(), s.dy = dy.data(), s.dx = dx.data();
  s.x_row_stride = s.y_row_stride = s.dy_row_stride = s.dx_row_stride = 128;
  s.x_head_stride = s.y_head_stride = s.dy_head_stride = s.dx_head_stride = 64;
  s.heads = 2, s.total = 10, s.b = 1, s.cu_seqlens = cu.data(), s.gamma = g.data();
  s.dgamma = dgq.data();
  p.k.heads = 1, p.k.total = 0, p.k.gamma = g.data();
  p.workspace = work.data(), p.workspace_bytes = work.size() * sizeof(float);
  strata::Status st = strata::api::qk_norm_rope_backward(p);
  EXPECT_NE(std::string(st.message()).find("k.dgamma is null"), std::string::npos) << st.message();
  EXPECT_TRUE(std::isnan(dgq[0]) && std::isnan(core::to_float(dx[0])));
  p.k.dgamma = dgk.data();
  p.workspace_bytes = 4;  // the partials of one block of q rows need 256
  st = strata::api::qk_norm_rope_backward(p);
  EXPECT_NE(std::string(st.message()).find("workspace_bytes = 4: less than the 256 bytes"),
            std::string::npos)
      << st.message();
  EXPECT_TRUE(std::isnan(dgq[0]) && std::isnan(core::to_float(dx[0])));
  p.workspace_bytes = work.size() * sizeof(float);
  ASSERT_TRUE(strata::api::qk_norm_rope_backward(p).ok());
  for (float x : dgk) EXPECT_EQ(x, 0.f);
  // no rows anywhere: no workspace is needed
  p.q.total = 0, p.workspace = nullptr;
  EXPECT_TRUE(strata::api::qk_norm_rope_backward(p).ok());
}

}  // namespace
